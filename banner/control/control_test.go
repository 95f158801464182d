package control

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// recordingHandler stands in for the daemon: these tests are about the
// socket protocol, and the daemon's own behaviour is tested with the engine.
type recordingHandler struct {
	bans   map[netip.Prefix]BanInfo
	forgot []netip.Prefix
}

func (h *recordingHandler) Ban(_ context.Context, p netip.Prefix, d time.Duration, reason string) (BanInfo, error) {
	if d == 0 {
		d = time.Hour
	}
	b := BanInfo{Prefix: p.String(), Since: time.Unix(0, 0).UTC(), Until: time.Unix(0, 0).UTC().Add(d), Count: 1, Reason: reason, Source: "cli"}
	h.bans[p] = b
	return b, nil
}

func (h *recordingHandler) Unban(_ context.Context, p netip.Prefix) error {
	if _, ok := h.bans[p]; !ok {
		return errors.New(p.String() + " is not banned")
	}
	delete(h.bans, p)
	return nil
}

func (h *recordingHandler) Forget(_ context.Context, p netip.Prefix) (int, error) {
	h.forgot = append(h.forgot, p)
	return 1, nil
}

func (h *recordingHandler) UnbanAll(context.Context) (int, error) {
	n := len(h.bans)
	h.bans = map[netip.Prefix]BanInfo{}
	return n, nil
}

func (h *recordingHandler) List(context.Context) []BanInfo {
	var out []BanInfo
	for _, b := range h.bans {
		out = append(out, b)
	}
	return out
}

func (h *recordingHandler) Status(context.Context) any { return map[string]int{"bans": len(h.bans)} }

func startServer(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "banner.sock")
	s, err := Listen(path, &recordingHandler{bans: map[netip.Prefix]BanInfo{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return path
}

func TestRoundTrip(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the control socket only answers root; run as root")
	}
	path := startServer(t)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	ctx := context.Background()
	steps := []struct {
		req     Request
		wantErr string
		check   func(Response) bool
	}{
		{req: Request{Cmd: CmdBan, Prefix: "203.0.113.0/24", For: "24h0m0s", Reason: "by hand"},
			check: func(r Response) bool { return r.Ban != nil && r.Ban.Prefix == "203.0.113.0/24" }},
		{req: Request{Cmd: CmdBan, Prefix: "not-an-ip"}, wantErr: "not-an-ip"},
		{req: Request{Cmd: CmdBan, Prefix: "192.0.2.1", For: "-5s"}, wantErr: "invalid ban duration"},
		{req: Request{Cmd: CmdList}, check: func(r Response) bool { return len(r.Bans) == 1 }},
		{req: Request{Cmd: CmdStatus}, check: func(r Response) bool { return string(r.Status) == `{"bans":1}` }},
		{req: Request{Cmd: CmdUnban, Prefix: "192.0.2.1"}, wantErr: "is not banned"},
		{req: Request{Cmd: CmdUnban, Prefix: "203.0.113.0/24"}},
		{req: Request{Cmd: CmdUnbanAll}, check: func(r Response) bool { return r.Count == 0 }},
		{req: Request{Cmd: CmdForget, Prefix: "203.0.113.0/24"}, check: func(r Response) bool { return r.OK && r.Count == 1 }},
		{req: Request{Cmd: CmdForget, Prefix: "nonsense"}, wantErr: "nonsense"},
		{req: Request{Cmd: "reboot"}, wantErr: "unknown command"},
	}
	for _, st := range steps {
		resp, err := Do(ctx, path, st.req)
		if st.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), st.wantErr) {
				t.Errorf("%+v: error %v, want %q", st.req, err, st.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", st.req, err)
			continue
		}
		if st.check != nil && !st.check(resp) {
			t.Errorf("%+v: unexpected response %+v", st.req, resp)
		}
	}
}

func TestMalformedRequests(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the control socket only answers root; run as root")
	}
	path := startServer(t)
	for _, raw := range []string{"garbage\n", "{\"cmd\":\n", strings.Repeat("x", maxRequest+10)} {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Write([]byte(raw))
		buf := make([]byte, 4096)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _ := c.Read(buf)
		c.Close()
		if n > 0 && !strings.Contains(string(buf[:n]), `"ok":false`) {
			t.Errorf("%.20q: answer %q", raw, buf[:n])
		}
	}
	// The server still answers after hostile input.
	if _, err := Do(context.Background(), path, Request{Cmd: CmdList}); err != nil {
		t.Fatal(err)
	}
}

func TestDaemonNotRunning(t *testing.T) {
	_, err := Do(context.Background(), filepath.Join(t.TempDir(), "none.sock"), Request{Cmd: CmdList})
	if !errors.Is(err, ErrDaemonNotRunning) {
		t.Fatalf("error %v, want ErrDaemonNotRunning", err)
	}
}

func TestSecondDaemonRefused(t *testing.T) {
	path := startServer(t)
	if _, err := Listen(path, &recordingHandler{}, nil); err == nil || !strings.Contains(err.Error(), "another banner daemon") {
		t.Fatalf("second Listen: %v", err)
	}
}

// TestListenDoesNotBuildTrees: the socket's own directory is created, a
// missing grandparent (a typo) is an error.
func TestListenDoesNotBuildTrees(t *testing.T) {
	dir := t.TempDir()
	s, err := Listen(filepath.Join(dir, "run", "banner.sock"), &recordingHandler{}, nil)
	if err != nil {
		t.Fatalf("socket in a new directory under an existing one: %v", err)
	}
	s.Close()
	if _, err := Listen(filepath.Join(dir, "typo", "run", "banner.sock"), &recordingHandler{}, nil); err == nil {
		t.Error("Listen built a directory tree for a mistyped path")
	}
	if _, err := os.Stat(filepath.Join(dir, "typo")); err == nil {
		t.Error("directory created for a mistyped path")
	}
}
