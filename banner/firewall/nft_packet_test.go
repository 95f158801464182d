package firewall

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/testenv"
	"github.com/banner-mta/banner/internal/vethtest"
)

// nftPacketNet is a veth pair with IPv4 and IPv6 clients in different /24s
// and /64s of one on-link /16 and /48, and echo servers on ports 25 and
// 2525 of both server addresses.
type nftPacketNet struct {
	pair               *vethtest.Pair
	smtp4, alt4        netip.AddrPort
	smtp6, alt6        netip.AddrPort
	c4a, c4b, c6a, c6b netip.Addr // clients: a in 10.200.1.0/24 and fd00:200:0:1::/64, b elsewhere
}

func newNFTPacketNet(t *testing.T) *nftPacketNet {
	t.Helper()
	n := &nftPacketNet{
		c4a: netip.MustParseAddr("10.200.1.2"), c4b: netip.MustParseAddr("10.200.2.3"),
		c6a: netip.MustParseAddr("fd00:200:0:1::2"), c6b: netip.MustParseAddr("fd00:200:0:2::3"),
	}
	n.pair = vethtest.New(t, netip.MustParsePrefix("10.200.0.1/16"),
		netip.MustParsePrefix("10.200.1.2/16"), netip.MustParsePrefix("10.200.2.3/16"))
	sh(t, "ip", "addr", "add", "fd00:200::1/48", "dev", vethtest.ServerIf, "nodad")
	for _, a := range []string{"fd00:200:0:1::2/48", "fd00:200:0:2::3/48"} {
		n.pair.InClient(t, "ip", "addr", "add", a, "dev", vethtest.ClientIf, "nodad")
	}
	for _, a := range []string{"10.200.0.1:25", "10.200.0.1:2525", "[fd00:200::1]:25", "[fd00:200::1]:2525"} {
		listen(t, a)
	}
	n.smtp4, n.alt4 = netip.MustParseAddrPort("10.200.0.1:25"), netip.MustParseAddrPort("10.200.0.1:2525")
	n.smtp6, n.alt6 = netip.MustParseAddrPort("[fd00:200::1]:25"), netip.MustParseAddrPort("[fd00:200::1]:2525")
	// Neighbour discovery and the first handshakes before any ban.
	deadline := time.Now().Add(5 * time.Second)
	for _, c := range []struct {
		src netip.Addr
		dst netip.AddrPort
	}{{n.c4a, n.smtp4}, {n.c4b, n.smtp4}, {n.c6a, n.smtp6}, {n.c6b, n.smtp6}} {
		for {
			err := n.pair.Dial(c.src, c.dst, time.Second)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("before any ban %s -> %s: %v", c.src, c.dst, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return n
}

// expect dials every client to both ports of its family and checks that
// exactly the clients in banned lose port 25.
func (n *nftPacketNet) expect(t *testing.T, banned ...netip.Addr) {
	t.Helper()
	for _, src := range []netip.Addr{n.c4a, n.c4b, n.c6a, n.c6b} {
		smtp, alt := n.smtp4, n.alt4
		if src.Is6() {
			smtp, alt = n.smtp6, n.alt6
		}
		isBanned := false
		for _, b := range banned {
			isBanned = isBanned || b == src
		}
		err := n.pair.Dial(src, smtp, time.Second)
		switch {
		case isBanned && !isTimeout(err):
			t.Errorf("banned %s -> %s: %v, want a timeout (SYN dropped)", src, smtp, err)
		case !isBanned && err != nil:
			t.Errorf("%s -> %s: %v, want it answered", src, smtp, err)
		}
		if err := n.pair.Dial(src, alt, time.Second); err != nil {
			t.Errorf("%s -> %s (not an SMTP port): %v, want it answered", src, alt, err)
		}
	}
}

// TestNFTablesPacketDrop sends real TCP packets over a veth pair: with
// each ban (an IPv4 and an IPv6 address, a /24 and a /64) exactly the
// clients inside it lose port 25 and keep port 2525, with drop "new" and
// "all"; a session open before the ban survives it with "new" only.
func TestNFTablesPacketDrop(t *testing.T) {
	if testenv.RunInNetNS(t, append(nftCommands, "nsenter")...) {
		return
	}
	n := newNFTPacketNet(t)
	ctx := context.Background()
	for _, drop := range []string{DropNew, DropAll} {
		t.Run("drop="+drop, func(t *testing.T) {
			b := newNFT(t, func(c *Config) { c.Drop = drop })
			if err := b.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _, _ = b.Teardown(ctx) })
			est, err := dialClient(n.pair, n.c6a, n.smtp6, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer est.Close()
			if err := echo(est, "EHLO a", time.Second); err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				ban    string
				banned []netip.Addr
			}{
				{"10.200.1.2/32", []netip.Addr{n.c4a}},
				{"fd00:200:0:1::2/128", []netip.Addr{n.c6a}},
				{"10.200.1.0/24", []netip.Addr{n.c4a}},
				{"fd00:200:0:1::/64", []netip.Addr{n.c6a}},
				{"10.200.0.0/16", []netip.Addr{n.c4a, n.c4b}},
			} {
				t.Run(tc.ban, func(t *testing.T) {
					p := pfx(tc.ban)
					if err := b.Add(ctx, []Entry{{Prefix: p, Timeout: time.Hour}}); err != nil {
						t.Fatal(err)
					}
					n.expect(t, tc.banned...)
					if p.Addr().Is6() {
						err := echo(est, "RCPT TO:<a@example.org>", time.Second)
						if drop == DropNew && err != nil {
							t.Errorf("drop=new: session open before the ban failed: %v", err)
						}
						if drop == DropAll && !isTimeout(err) {
							t.Errorf("drop=all: session open before the ban got %v, want a timeout", err)
						}
					}
					if err := b.Remove(ctx, []netip.Prefix{p}); err != nil {
						t.Fatal(err)
					}
					n.expect(t)
				})
				if drop == DropAll {
					break // the session is gone after the first IPv6 ban
				}
			}
		})
	}
}

// debianNFTablesConf is Debian 12's /etc/nftables.conf as shipped.
const debianNFTablesConf = `#!/usr/sbin/nft -f

flush ruleset

table inet filter {
	chain input {
		type filter hook input priority filter;
	}
	chain forward {
		type filter hook forward priority filter;
	}
	chain output {
		type filter hook output priority filter;
	}
}
`

// acceptSMTP is an admin's table that accepts all of port 25 and drops
// everything else it does not know, at a priority before banner's and at
// banner's own: neither lets a banned client in.
const acceptSMTP = `
table inet admin {
	chain early {
		type filter hook input priority -300; policy accept;
		tcp dport 25 accept
	}
	chain input {
		type filter hook input priority filter; policy drop;
		ct state established,related accept
		iif lo accept
		tcp dport { 25, 2525 } accept
		meta l4proto ipv6-icmp accept
	}
}
`

// TestNFTablesCoexistence runs banner beside other rulesets, with real
// packets: Debian's default /etc/nftables.conf (whose `flush ruleset`
// removes banner's table when nftables is reloaded: the next Repair puts
// it back and the engine's reconcile refills it), an admin's table that
// accepts all of port 25 (a banned client is still dropped), and an
// iptables-nft ruleset accepting port 25. Teardown leaves the other
// tables as they were.
func TestNFTablesCoexistence(t *testing.T) {
	if testenv.RunInNetNS(t, append(nftCommands, "nsenter", "iptables-nft", "ip6tables-nft")...) {
		return
	}
	n := newNFTPacketNet(t)
	ctx := context.Background()
	conf := filepath.Join(t.TempDir(), "nftables.conf")
	if err := os.WriteFile(conf, []byte(debianNFTablesConf+acceptSMTP), 0o644); err != nil {
		t.Fatal(err)
	}
	sh(t, "nft", "-f", conf)
	b := newNFT(t, nil)
	if err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = b.Teardown(ctx) })
	bans := []Entry{{Prefix: pfx("10.200.1.0/24"), Timeout: time.Hour}, {Prefix: pfx("fd00:200:0:1::/64"), Timeout: time.Hour}}
	if err := b.Add(ctx, bans); err != nil {
		t.Fatal(err)
	}
	t.Run("admin table accepts port 25", func(t *testing.T) { n.expect(t, n.c4a, n.c6a) })

	t.Run("nftables reloaded", func(t *testing.T) {
		// systemctl reload nftables: nft -f /etc/nftables.conf.
		sh(t, "nft", "-f", conf)
		if strings.Contains(sh(t, "nft", "list", "tables"), "banner") {
			t.Fatal("flush ruleset left banner's table: the test proves nothing")
		}
		n.expect(t) // nothing enforced until the repair
		made, err := b.Repair(ctx)
		if err != nil || len(made) == 0 {
			t.Fatalf("Repair = %q, %v", made, err)
		}
		// The engine's reconcile: List finds the bans missing, re-adds them.
		if es, err := b.List(ctx); err != nil || len(es) != 0 {
			t.Fatalf("List after repair = %v, %v; want an empty set", es, err)
		}
		if err := b.Add(ctx, bans); err != nil {
			t.Fatal(err)
		}
		n.expect(t, n.c4a, n.c6a)
	})

	t.Run("iptables-nft ruleset", func(t *testing.T) {
		for _, cmd := range []string{"iptables-nft", "ip6tables-nft"} {
			sh(t, cmd, "-I", "INPUT", "-p", "tcp", "--dport", "25", "-j", "ACCEPT")
			sh(t, cmd, "-A", "INPUT", "-p", "tcp", "--dport", "2525", "-j", "ACCEPT")
		}
		n.expect(t, n.c4a, n.c6a)
		for _, cmd := range []string{"iptables-nft", "ip6tables-nft"} {
			sh(t, cmd, "-F")
			sh(t, cmd+"-save")
		}
		if made, err := b.Repair(ctx); err != nil || len(made) != 0 {
			t.Errorf("Repair after iptables -F = %q, %v; want nothing (iptables-nft does not touch banner's table)", made, err)
		}
		n.expect(t, n.c4a, n.c6a)
	})

	t.Run("teardown", func(t *testing.T) {
		before := sh(t, "nft", "list", "table", "inet", "admin")
		if _, err := b.Teardown(ctx); err != nil {
			t.Fatal(err)
		}
		if tables := sh(t, "nft", "list", "tables"); strings.Contains(tables, "banner") {
			t.Errorf("after Teardown: %s", tables)
		}
		if after := sh(t, "nft", "list", "table", "inet", "admin"); after != before {
			t.Errorf("Teardown changed the admin's table:\n%s\nwas:\n%s", after, before)
		}
		n.expect(t)
	})
}
