package policyd

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/banner-mta/banner/internal/testenv"
)

// dialEnv makes the test binary a one-shot policy client: it sends one
// request to the unix socket named there and prints the reply. The owner
// test runs it as another user, as smtpd runs as postfix.
const dialEnv = "POLICYD_TEST_DIAL"

func TestMain(m *testing.M) {
	if addr := os.Getenv(dialTCPEnv); addr != "" {
		dialTCPClient(addr)
	}
	if path := os.Getenv(dialEnv); path != "" {
		c, err := net.Dial("unix", path)
		if err != nil {
			fmt.Println("dial:", err)
			os.Exit(1)
		}
		fmt.Fprint(c, "request=smtpd_access_policy\nn=1\n\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Println("read:", err)
			os.Exit(1)
		}
		fmt.Print(line)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestUnixSocketOwner: with socket_user/socket_group the socket belongs to
// them, so an unprivileged client in that group gets in and others do not.
func TestUnixSocketOwner(t *testing.T) {
	testenv.RequireRoot(t)
	const nobody = 65534
	// Not t.TempDir: its parent is 0700, and the client must reach the
	// socket and a copy of this binary.
	dir, err := os.MkdirTemp("", "policyd-owner-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	client := filepath.Join(dir, "client")
	if err := os.WriteFile(client, self, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.sock")
	cfg := DefaultConfig()
	cfg.Listen = []string{"unix:" + path}
	cfg.SocketGroup = fmt.Sprint(nobody)
	cfg.PeerUsers = []string{"root", "4242"} // the client below
	var s *Server
	s, err = New(cfg, echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(cfg.Listen...); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	go s.Serve(ctx)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 0 || st.Gid != nobody || fi.Mode().Perm() != 0o660 {
		t.Fatalf("socket owner %d:%d mode %v, want 0:%d 0660", st.Uid, st.Gid, fi.Mode().Perm(), nobody)
	}
	for _, tt := range []struct {
		name     string
		uid, gid uint32
		want     string
	}{
		{"in the socket's group", 4242, nobody, "action="},
		{"outside it", 4242, 4242, "permission denied"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command(client, "-test.run=^$")
			cmd.Env = append(os.Environ(), dialEnv+"="+path)
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: tt.uid, Gid: tt.gid}}
			out, err := cmd.CombinedOutput()
			if !strings.Contains(string(out), tt.want) {
				t.Errorf("client uid %d gid %d: %q (%v), want %q", tt.uid, tt.gid, out, err, tt.want)
			}
		})
	}
}

func TestSocketOwnerValidation(t *testing.T) {
	for _, tt := range []struct{ user, group, want string }{
		{"no-such-user-banner", "", "socket_user"},
		{"", "no-such-group-banner", "socket_group"},
		{"-1", "", "socket_user"},
	} {
		cfg := DefaultConfig()
		cfg.SocketUser, cfg.SocketGroup = tt.user, tt.group
		if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("user %q group %q: %v, want a %s error", tt.user, tt.group, err, tt.want)
		}
	}
	cfg := DefaultConfig()
	cfg.SocketUser, cfg.SocketGroup = "root", "0"
	if err := cfg.Validate(); err != nil {
		t.Errorf("root/0: %v", err)
	}
}
