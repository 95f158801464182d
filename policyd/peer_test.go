package policyd

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/banner-mta/banner/internal/testenv"
)

// dialTCPEnv makes the test binary a TCP policy client: it opens
// POLICYD_TEST_CONNS connections (default 1) to the address, sends one
// request on each, keeps them all open and prints one line per reply.
const dialTCPEnv = "POLICYD_TEST_DIAL_TCP"

func dialTCPClient(addr string) {
	n, _ := strconv.Atoi(os.Getenv("POLICYD_TEST_CONNS"))
	var conns []net.Conn
	for i := 0; i < max(n, 1); i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Println("dial:", err)
			continue
		}
		conns = append(conns, c)
		fmt.Fprint(c, "request=smtpd_access_policy\nn=1\n\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			fmt.Println("refused")
			continue
		}
		fmt.Print(line)
	}
	runtime.KeepAlive(conns) // held open until all replies are read
	os.Exit(0)
}

// clientCopy copies the test binary where another user can run it.
func clientCopy(t *testing.T) (dir, client string) {
	dir, err := os.MkdirTemp("", "policyd-peer-")
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
	client = filepath.Join(dir, "client")
	if err := os.WriteFile(client, self, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, client
}

func runClient(t *testing.T, client string, uid uint32, env ...string) string {
	t.Helper()
	cmd := exec.Command(client, "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client uid %d: %v: %s", uid, err, out)
	}
	return string(out)
}

func startServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	addrs := cfg.Listen // may have port 0, which Validate refuses and Listen takes
	cfg.Listen = nil
	s, err := New(cfg, echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(addrs...); err != nil {
		t.Fatal(err)
	}
	go s.Serve(t.Context())
	return s
}

// TestPeerUserTCP: on the loopback TCP listener a socket of a user not in
// peer_users is refused at accept; root's and listed users' get answers.
func TestPeerUserTCP(t *testing.T) {
	testenv.RequireRoot(t)
	_, client := clientCopy(t)
	for _, tt := range []struct {
		name  string
		users []string
		uid   uint32
		want  string
	}{
		{"default refuses uid 4242", DefaultPeerUsers(), 4242, "refused"},
		{"listed uid 4242", []string{"root", "4242"}, 4242, "action="},
		{"star", []string{"*"}, 4242, "action="},
		{"root", DefaultPeerUsers(), 0, "action="},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Listen = []string{"127.0.0.1:0"}
			cfg.PeerUsers = tt.users
			s := startServer(t, cfg)
			out := runClient(t, client, tt.uid, dialTCPEnv+"="+s.Addrs()[0].String())
			if !strings.HasPrefix(out, tt.want) {
				t.Fatalf("got %q, want %q", out, tt.want)
			}
			if got, want := s.Stats().RefusedPeerUser, uint64(map[bool]int{true: 1}[tt.want == "refused"]); got != want {
				t.Errorf("refused_peer_user %d, want %d", got, want)
			}
		})
	}
}

// TestPeerUserCap: a listed user other than root and postfix gets
// max_connections_per_user connections; root is not capped.
func TestPeerUserCap(t *testing.T) {
	testenv.RequireRoot(t)
	_, client := clientCopy(t)
	cfg := DefaultConfig()
	cfg.Listen = []string{"127.0.0.1:0"}
	cfg.PeerUsers = []string{"root", "4242"}
	cfg.MaxConnsPerUser = 2
	s := startServer(t, cfg)
	addr := s.Addrs()[0].String()
	for _, tt := range []struct {
		uid  uint32
		want string
	}{
		{4242, "action=ok\naction=ok\nrefused\n"},
		{0, "action=ok\naction=ok\naction=ok\n"},
	} {
		out := runClient(t, client, tt.uid, dialTCPEnv+"="+addr, "POLICYD_TEST_CONNS=3")
		if !sameShape(out, tt.want) {
			t.Errorf("uid %d: %q, want %q", tt.uid, out, tt.want)
		}
	}
	if st := s.Stats(); st.RefusedUserCap != 1 {
		t.Errorf("refused_user_cap %d, want 1", st.RefusedUserCap)
	}
}

// sameShape compares client output line by line on the "action=" or
// "refused" prefix only (the echo handler's text does not matter).
func sameShape(got, want string) bool {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	if len(g) != len(w) {
		return false
	}
	for i := range g {
		if strings.HasPrefix(g[i], "action=") != strings.HasPrefix(w[i], "action=") {
			return false
		}
	}
	return true
}

// TestPeerUserUnix: on a unix socket open to everyone, SO_PEERCRED keeps
// users out of peer_users away.
func TestPeerUserUnix(t *testing.T) {
	testenv.RequireRoot(t)
	dir, client := clientCopy(t)
	for _, tt := range []struct {
		users []string
		want  string
	}{
		{DefaultPeerUsers(), "read:"},
		{[]string{"root", "4242"}, "action="},
	} {
		path := filepath.Join(dir, "policy.sock")
		cfg := DefaultConfig()
		cfg.Listen = []string{"unix:" + path}
		cfg.SocketMode = 0o666
		cfg.PeerUsers = tt.users
		s := startServer(t, cfg)
		cmd := exec.Command(client, "-test.run=^$")
		cmd.Env = append(os.Environ(), dialEnv+"="+path)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 4242, Gid: 4242}}
		out, _ := cmd.CombinedOutput()
		if !strings.HasPrefix(string(out), tt.want) {
			t.Errorf("peer_users %q: %q, want %q", tt.users, out, tt.want)
		}
		s.hardClose()
	}
}

func TestPeerUsersValidation(t *testing.T) {
	defer func(f func(string) (*user.User, error)) { lookupUser = f }(lookupUser)
	lookupUser = func(name string) (*user.User, error) {
		if name == "root" {
			return &user.User{Uid: "0", Username: "root"}, nil
		}
		return nil, user.UnknownUserError(name)
	}
	for _, tt := range []struct {
		users   []string
		wantErr string
		missing int
	}{
		{DefaultPeerUsers(), "", 1},
		{[]string{"*"}, "", 0},
		{[]string{"root", "1000"}, "", 0},
		{[]string{}, "empty", 0},
		{[]string{"postfix"}, "postfix", 0},
		{[]string{"root", "no-such-user"}, "no-such-user", 0},
		{[]string{"*", "root"}, "only entry", 0},
	} {
		p, err := resolvePeerUsers(tt.users)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("%q: %v, want error %q", tt.users, err, tt.wantErr)
		}
		if len(p.missing) != tt.missing {
			t.Errorf("%q: missing %q", tt.users, p.missing)
		}
	}
}

// TestPeerUIDLookups: both ways to find a TCP socket's owner agree on a
// real loopback connection, and a peer that is gone is not found.
func TestPeerUIDLookups(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	peer := sc.RemoteAddr().(*net.TCPAddr).AddrPort()
	us := sc.LocalAddr().(*net.TCPAddr).AddrPort()
	var d sockDiag
	defer d.close()
	uid, err := d.lookup(peer, us)
	if err != nil || uid != uint32(os.Getuid()) {
		t.Errorf("sock_diag: %d, %v; want %d", uid, err, os.Getuid())
	}
	uid, err = procTCPOwner(peer, us)
	if err != nil || uid != uint32(os.Getuid()) {
		t.Errorf("/proc/net/tcp: %d, %v; want %d", uid, err, os.Getuid())
	}
	c.Close() // the peer's socket ends in TIME_WAIT or FIN_WAIT, without owner
	for _, f := range []func(netip.AddrPort, netip.AddrPort) (uint32, error){d.lookup, procTCPOwner} {
		if uid, err := f(peer, us); err == nil {
			t.Errorf("closed peer: uid %d, want errNoPeerUID", uid)
		}
	}
}

// TestSocketSymlinkSwap: a symlink swapped in at the socket path after
// bind is refused and never followed: the target keeps its mode and owner.
func TestSocketSymlinkSwap(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "shadow")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "policy.sock")
	afterBind = func(p string) {
		os.Remove(p)
		if err := os.Symlink(target, p); err != nil {
			t.Error(err)
		}
	}
	defer func() { afterBind = nil }()
	cfg := DefaultConfig()
	cfg.SocketGroup = "0"
	s, err := New(cfg, echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen("unix:" + path); err == nil || !strings.Contains(err.Error(), "replaced") &&
		!strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("Listen: %v, want a refusal", err)
	}
	fi, err := os.Stat(target)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("target mode %v, want 0600", fi.Mode().Perm())
	}
}

// TestSocketModeAtBind: the socket has its mode from the start.
func TestSocketModeAtBind(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.sock")
	var atBind os.FileMode
	afterBind = func(p string) {
		if fi, err := os.Lstat(p); err == nil {
			atBind = fi.Mode().Perm()
		}
	}
	defer func() { afterBind = nil }()
	cfg := DefaultConfig()
	cfg.SocketMode = 0o640
	s2, err := New(cfg, echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Listen("unix:" + path); err != nil {
		t.Fatal(err)
	}
	defer s2.hardClose()
	if atBind != 0o640 {
		t.Errorf("mode right after bind %v, want 0640", atBind)
	}
}

func TestSocketDirWritable(t *testing.T) {
	for _, tt := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o755, true},
		{0o700, true},
		{0o777, false},
		{0o757, false},
		{0o1777, true},
	} {
		dir := filepath.Join(t.TempDir(), "d")
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		mode := tt.mode.Perm()
		if tt.mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		s, err := New(DefaultConfig(), echoHandler)
		if err != nil {
			t.Fatal(err)
		}
		err = s.Listen("unix:" + filepath.Join(dir, "policy.sock"))
		if (err == nil) != tt.ok {
			t.Errorf("directory mode %#o: %v, want ok=%v", tt.mode, err, tt.ok)
		}
		s.hardClose()
	}
}

func FuzzParseProcNetTCP(f *testing.F) {
	for _, seed := range []string{
		"  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n" +
			"   0: 0100007F:9C40 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  4242        0 123456 1 0000000000000000 20 4 30 10 -1\n",
		"   1: 0100007F:9C40 0100007F:1F90 06 00000000:00000000 03:00000D3F 00000000     0        0 0 3 0000000000000000\n",
		"   0: 00000000000000000000000001000000:9C40 00000000000000000000000001000000:1F90 01 00000000:00000000 00:00000000 00000000  0 0 1 1\n",
		"   0: 0000000000000000FFFF00000100007F:9C40 0000000000000000FFFF00000100007F:1F90 01 0:0 0:0 0 7 0 9\n",
		"garbage",
	} {
		f.Add(seed)
	}
	peer := netip.MustParseAddrPort("127.0.0.1:40000")
	us := netip.MustParseAddrPort("127.0.0.1:8080")
	f.Fuzz(func(t *testing.T, s string) {
		uid, found, err := parseProcNetTCP(strings.NewReader(s), peer, us)
		if err != nil && found || !found && uid != 0 {
			t.Fatalf("uid %d found %v err %v", uid, found, err)
		}
	})
}

func BenchmarkPeerUID(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	sc, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	defer sc.Close()
	peer := sc.RemoteAddr().(*net.TCPAddr).AddrPort()
	us := sc.LocalAddr().(*net.TCPAddr).AddrPort()
	b.Run("sock_diag", func(b *testing.B) {
		var d sockDiag
		defer d.close()
		for b.Loop() {
			if _, err := d.lookup(peer, us); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("proc", func(b *testing.B) {
		for b.Loop() {
			if _, err := procTCPOwner(peer, us); err != nil {
				b.Fatal(err)
			}
		}
	})
}
