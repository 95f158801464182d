// Package vethtest joins the test's private network namespace to a second,
// client namespace by a veth pair, so a test can send real packets to a
// listener in its own namespace from chosen client addresses. It refuses to
// run in the host's network namespace: use it after testenv.RunInNetNS.
package vethtest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banner-mta/banner/internal/testenv"
)

// Interface names of the pair, server side (this namespace) and client side.
const (
	ServerIf = "bnrsrv0"
	ClientIf = "bnrcli0"
)

// Pair is a veth pair between this namespace and a client namespace held
// open by a child `unshare -n sleep` process.
type Pair struct {
	ClientPID int // pid of the process holding the client namespace
}

// PrivateNetNS reports whether this process may safely change the network
// configuration: it was re-executed by testenv.RunInNetNS, or it sees no
// interface but loopback (a fresh `unshare -n`). Comparing /proc/self/ns/net
// with pid 1's is not reliable: in containers pid 1 may be in another
// namespace or unreadable.
func PrivateNetNS() bool {
	if testenv.InNetNS() {
		return true
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return false
	}
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			return false
		}
	}
	return true
}

// New creates the client namespace and the pair, puts server on ServerIf here
// and clients on ClientIf there, and brings both up. Everything is removed in
// t.Cleanup.
func New(t testing.TB, server netip.Prefix, clients ...netip.Prefix) *Pair {
	t.Helper()
	if !PrivateNetNS() {
		t.Fatal("vethtest: refusing to run in the host's network namespace (use testenv.RunInNetNS)")
	}
	ctx, cancel := context.WithCancel(context.Background())
	holder := exec.CommandContext(ctx, "unshare", "-n", "sleep", "600")
	if err := holder.Start(); err != nil {
		cancel()
		t.Fatalf("vethtest: starting namespace holder: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = holder.Wait()
	})
	pid := holder.Process.Pid
	self, _ := os.Readlink("/proc/self/ns/net")
	for deadline := time.Now().Add(5 * time.Second); ; {
		ns, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net")
		if err == nil && ns != self {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vethtest: child %d never entered a new network namespace", pid)
		}
		time.Sleep(5 * time.Millisecond)
	}
	p := &Pair{ClientPID: pid}
	run(t, "ip", "link", "add", ServerIf, "type", "veth", "peer", "name", ClientIf, "netns", strconv.Itoa(pid))
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", ServerIf).Run() })
	run(t, "ip", "addr", "add", server.String(), "dev", ServerIf)
	run(t, "ip", "link", "set", ServerIf, "up")
	for _, c := range clients {
		p.InClient(t, "ip", "addr", "add", c.String(), "dev", ClientIf)
	}
	p.InClient(t, "ip", "link", "set", "lo", "up")
	p.InClient(t, "ip", "link", "set", ClientIf, "up")
	return p
}

// InClient runs a command inside the client namespace and fails the test if
// it fails.
func (p *Pair) InClient(t testing.TB, name string, args ...string) {
	t.Helper()
	run(t, "nsenter", append([]string{"-t", strconv.Itoa(p.ClientPID), "-n", name}, args...)...)
}

// Dial opens a TCP connection from src (an address of the client namespace)
// to dst and closes it at once. It returns nil if the handshake completed
// within timeout. The socket is made on a thread that enters the client
// namespace and is then discarded.
func (p *Pair) Dial(src netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	res := make(chan error, 1)
	go func() {
		// Never unlocked: the goroutine's thread, now in another namespace,
		// exits with it.
		runtime.LockOSThread()
		fd, err := unix.Open("/proc/"+strconv.Itoa(p.ClientPID)+"/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			res <- fmt.Errorf("opening client namespace: %w", err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			res <- fmt.Errorf("entering client namespace: %w", err)
			return
		}
		d := net.Dialer{Timeout: timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, err := d.Dial("tcp", dst.String())
		if err != nil {
			res <- err
			return
		}
		res <- c.Close()
	}()
	return <-res
}

func run(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("vethtest: %s %v: %v: %s", name, args, err, out)
	}
}
