package firewall

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banner-mta/banner/internal/testenv"
	"github.com/banner-mta/banner/internal/vethtest"
)

// listen runs a line echo server on addr until the test ends: every
// connection gets back what it sends.
func listen(t *testing.T, addr string) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
}

// dialClient opens a TCP connection from src in the client namespace of p to
// dst and keeps it open (vethtest.Pair.Dial closes at once). The socket is
// made on a thread that enters the client namespace and is then discarded;
// the socket stays in that namespace.
func dialClient(p *vethtest.Pair, src netip.Addr, dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		// Never unlocked: the thread, now in another namespace, exits with
		// the goroutine.
		runtime.LockOSThread()
		fd, err := unix.Open("/proc/"+strconv.Itoa(p.ClientPID)+"/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			res <- result{err: fmt.Errorf("opening client namespace: %w", err)}
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			res <- result{err: fmt.Errorf("entering client namespace: %w", err)}
			return
		}
		d := net.Dialer{Timeout: timeout, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
		c, err := d.Dial("tcp", dst.String())
		res <- result{c, err}
	}()
	r := <-res
	return r.c, r.err
}

// echo sends line on c and waits up to timeout for it to come back.
func echo(c net.Conn, line string, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return fmt.Errorf("echo returned %q, want %q", got, line+"\n")
	}
	return nil
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return err != nil && errors.As(err, &ne) && ne.Timeout()
}

// TestPacketDrop sends real TCP packets over a veth pair from a second
// namespace: a banned client loses port 25 only, and only for itself. With
// drop = "new" a session it opened before the ban still works (only new
// connections are refused); with drop = "all" that session stops too.
func TestPacketDrop(t *testing.T) {
	if testenv.RunInNetNS(t, append(fwCommands, "nsenter")...) {
		return
	}
	server := netip.MustParsePrefix("10.200.0.1/24")
	banned, other := netip.MustParseAddr("10.200.0.2"), netip.MustParseAddr("10.200.0.3")
	pair := vethtest.New(t, server, netip.PrefixFrom(banned, 24), netip.PrefixFrom(other, 24))
	listen(t, "10.200.0.1:25")
	listen(t, "10.200.0.1:2525")
	smtp := netip.MustParseAddrPort("10.200.0.1:25")
	alt := netip.MustParseAddrPort("10.200.0.1:2525")
	// Handshakes over the veth pair take well under a millisecond, but a
	// connect that must succeed gets long on a loaded CI machine; one that
	// must be dropped is declared dropped after dropTimeout.
	const okTimeout = 10 * time.Second
	const dropTimeout = time.Second

	// Before any ban both clients reach both ports.
	for _, src := range []netip.Addr{banned, other} {
		for _, dst := range []netip.AddrPort{smtp, alt} {
			if err := pair.Dial(src, dst, okTimeout); err != nil {
				t.Fatalf("before ban, %s -> %s: %v", src, dst, err)
			}
		}
	}
	ctx := context.Background()
	for _, tc := range []struct{ backend, drop string }{
		{BackendIPSet, DropNew}, {BackendIPTables, DropNew},
		{BackendIPSet, DropAll}, {BackendIPTables, DropAll},
	} {
		backend := tc.backend
		t.Run(backend+"/drop="+tc.drop, func(t *testing.T) {
			b := newBackend(t, backend, func(c *Config) { c.Drop = tc.drop })
			if err := b.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if _, err := b.Teardown(ctx); err != nil {
					t.Error(err)
				}
			})
			// A session the banned client opened before its ban, as when
			// the policy service bans on the second RCPT.
			est, err := dialClient(pair, banned, smtp, okTimeout)
			if err != nil {
				t.Fatalf("before ban, %s -> %s: %v", banned, smtp, err)
			}
			defer est.Close()
			if err := echo(est, "RCPT TO:<a@example.org>", okTimeout); err != nil {
				t.Fatalf("before ban, established session: %v", err)
			}
			if err := b.Add(ctx, []Entry{{Prefix: netip.PrefixFrom(banned, 32), Timeout: time.Hour}}); err != nil {
				t.Fatal(err)
			}
			t.Run("established session", func(t *testing.T) {
				timeout := okTimeout
				if tc.drop == DropAll {
					timeout = dropTimeout
				}
				err := echo(est, "QUIT", timeout)
				switch {
				case tc.drop == DropNew && err != nil:
					t.Errorf("drop=new: a session open before the ban failed after it: %v", err)
				case tc.drop == DropAll && !isTimeout(err):
					t.Errorf("drop=all: a session open before the ban got %v after it, want a timeout (packets dropped)", err)
				}
			})
			tests := []struct {
				src     netip.Addr
				dst     netip.AddrPort
				dropped bool
			}{
				{banned, smtp, true},
				{banned, alt, false},
				{other, smtp, false},
				{other, alt, false},
			}
			for _, tt := range tests {
				t.Run(tt.src.String()+"->"+tt.dst.String(), func(t *testing.T) {
					timeout := okTimeout
					if tt.dropped {
						timeout = dropTimeout
					}
					err := pair.Dial(tt.src, tt.dst, timeout)
					if !tt.dropped {
						if err != nil {
							t.Errorf("connect failed: %v", err)
						}
						return
					}
					if !isTimeout(err) {
						t.Errorf("connect = %v, want a timeout (SYN dropped)", err)
					}
				})
			}
			if err := b.Remove(ctx, []netip.Prefix{netip.PrefixFrom(banned, 32)}); err != nil {
				t.Fatal(err)
			}
			if err := pair.Dial(banned, smtp, okTimeout); err != nil {
				t.Errorf("after Remove, %s -> %s: %v", banned, smtp, err)
			}
		})
	}
}
