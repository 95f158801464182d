package firewall

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/testenv"
	"github.com/banner-mta/banner/internal/vethtest"
)

// listen accepts and closes connections on addr until the test ends.
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
			c.Close()
		}
	}()
}

// TestPacketDrop sends real TCP SYNs over a veth pair from a second
// namespace: a banned client loses port 25 only, and only for itself.
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
	const dialTimeout = 1500 * time.Millisecond

	// Before any ban both clients reach both ports.
	for _, src := range []netip.Addr{banned, other} {
		for _, dst := range []netip.AddrPort{smtp, alt} {
			if err := pair.Dial(src, dst, dialTimeout); err != nil {
				t.Fatalf("before ban, %s -> %s: %v", src, dst, err)
			}
		}
	}
	ctx := context.Background()
	for _, backend := range []string{BackendIPSet, BackendIPTables} {
		t.Run(backend, func(t *testing.T) {
			b := newBackend(t, backend, nil)
			if err := b.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := b.Teardown(ctx); err != nil {
					t.Error(err)
				}
			})
			if err := b.Add(ctx, []Entry{{Prefix: netip.PrefixFrom(banned, 32), Timeout: time.Hour}}); err != nil {
				t.Fatal(err)
			}
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
					err := pair.Dial(tt.src, tt.dst, dialTimeout)
					if !tt.dropped {
						if err != nil {
							t.Errorf("connect failed: %v", err)
						}
						return
					}
					var ne net.Error
					if err == nil || !errors.As(err, &ne) || !ne.Timeout() {
						t.Errorf("connect = %v, want a timeout (SYN dropped)", err)
					}
				})
			}
			if err := b.Remove(ctx, []netip.Prefix{netip.PrefixFrom(banned, 32)}); err != nil {
				t.Fatal(err)
			}
			if err := pair.Dial(banned, smtp, dialTimeout); err != nil {
				t.Errorf("after Remove, %s -> %s: %v", banned, smtp, err)
			}
		})
	}
}
