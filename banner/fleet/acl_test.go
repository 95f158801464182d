package fleet

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/banner-mta/banner/internal/testenv"
)

// TestREADMEACLWorks: the Redis ACL README gives for banner's user is
// enough for everything a node does, on the real redis-server: two nodes
// with that user share a ban, a third joins by snapshot, expired bans are
// pruned; and a Redis away and back loses nothing.
func TestREADMEACLWorks(t *testing.T) {
	_, err := exec.LookPath("redis-server")
	testenv.Require(t, err == nil, "redis-server not installed (apt-get install redis-server)")
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var acl []string
	for _, line := range strings.Split(string(readme), "\n") {
		if rest, ok := strings.CutPrefix(line, "ACL SETUSER banner "); ok {
			acl = strings.Fields(rest)
		}
	}
	if len(acl) == 0 {
		t.Fatal("README has no ACL SETUSER banner line")
	}
	addr := testenv.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	srv := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", "")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	admin := redis.NewClient(&redis.Options{Addr: addr})
	defer admin.Close()
	testenv.WaitFor(t, "redis-server", func() bool { return admin.Ping(context.Background()).Err() == nil })
	args := []any{"ACL", "SETUSER", "banner"}
	for _, a := range acl {
		if a == ">SECRET" {
			a = ">s3cret"
		}
		args = append(args, a)
	}
	if err := admin.Do(context.Background(), args...).Err(); err != nil {
		t.Fatalf("ACL SETUSER: %v", err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	start := func(name string, r *recorder) *Node {
		n, err := New(Config{URL: "redis://" + addr + "/0", User: "banner", PasswordFile: pw, Node: name, PollTimeout: 50 * time.Millisecond}, Cursor{})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { n.Run(t.Context(), r); close(done) }()
		t.Cleanup(func() { <-done; n.Close() })
		waitFor(t, name+" connects", func() bool { return n.Stats().Connected })
		return n
	}
	ra, rb := &recorder{}, &recorder{}
	a := start("mx1", ra)
	start("mx2", rb)
	old := ban("192.0.2.1/32", time.Hour)
	old.Since, old.Until = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	a.Publish(BanMessage(old, ""))
	a.Publish(BanMessage(ban("192.0.2.2/32", time.Hour), ""))
	a.Publish(Message{Op: OpUnban, Prefix: netip.MustParsePrefix("192.0.2.9/32")})
	waitFor(t, "mx2 hears mx1", func() bool { m, _ := rb.got(); return len(m) == 3 })
	rc := &recorder{}
	start("mx3", rc)
	waitFor(t, "mx3 snapshot", func() bool { m, _ := rc.got(); return len(m) == 1 })
	a.prune(context.Background())
	if got := admin.ZCard(context.Background(), "banner:bans").Val(); got != 1 {
		t.Errorf("%d live bans after prune, want 1", got)
	}
	if s := a.Stats(); s.LastError != "" || s.SendErrs != 0 {
		t.Errorf("mx1: %+v", s)
	}

	// Redis away (stopped with SIGSTOP: its clients time out, its data
	// stays), then back: what mx1 decided meanwhile waited in its queue
	// and reaches mx2, in order, without a republish.
	srv.Process.Signal(syscall.SIGSTOP)
	notice := time.Now()
	waitFor(t, "mx1 notices", func() bool { return !a.Stats().Connected })
	t.Logf("mx1 noticed Redis was away after %v", time.Since(notice).Round(time.Millisecond))
	a.Publish(BanMessage(ban("192.0.2.7/32", time.Hour), ""))
	a.Publish(Message{Op: OpUnban, Prefix: netip.MustParsePrefix("192.0.2.7/32")})
	srv.Process.Signal(syscall.SIGCONT)
	deadline := time.Now().Add(30 * time.Second)
	for {
		m, _ := rb.got()
		if len(m) >= 5 {
			if m[3].Op != OpBan || m[4].Op != OpUnban || m[3].Prefix.String() != "192.0.2.7/32" {
				t.Errorf("after the outage mx2 heard %+v", m[3:])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mx2 heard %d messages; mx1 %+v", len(m), a.Stats())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s := a.Stats(); s.Dropped != 0 || s.Resyncs != 1 {
		t.Errorf("mx1 %+v: want nothing dropped and no resync after the outage", s)
	}
}
