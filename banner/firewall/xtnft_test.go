package firewall

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/internal/testenv"
)

// TestNFTChainHead checks the netlink read of the chain's head against
// rules iptables-nft wrote: which first rules it takes for the iptables
// backend's, and that a long chain is not dumped (the read returns at
// once with 20,000 rules in it).
func TestNFTChainHead(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	r := &runner{timeout: time.Minute, lockWait: 10 * time.Second, log: slog.New(slog.DiscardHandler)}
	for _, v6 := range []bool{false, true} {
		f, err := r.newFamily(ctx, v6)
		if err != nil {
			t.Fatal(err)
		}
		if !r.isIPTablesNFT(ctx, f) {
			t.Skip("iptables is not iptables-nft")
		}
		a, net, net2 := "10.0.0.1", "10.1.2.0/24", "10.1.2.0/23"
		if v6 {
			a, net, net2 = "2001:db8::1", "2001:db8:1::/64", "2001:db8:1::/63"
		}
		for _, tc := range []struct {
			rule string // the first rule ("" none; "-" no chain)
			want chainHead
		}{
			{"-", headMissing},
			{"", headEmpty},
			{"-s " + a + " -j DROP", headDrop},
			{"-s " + net + " -j DROP", headDrop},
			{"-s " + net2 + " -j DROP", headDrop},
			{"-d " + a + " -j DROP", headOther},
			{"-s " + a + " -j ACCEPT", headOther},
			{"-s " + a + " -p tcp -j DROP", headOther},
			{"-j DROP", headOther},
			{"-s " + a + " -m comment --comment x -j DROP", headOther},
		} {
			t.Run(fmt.Sprintf("%s %q", f.name, tc.rule), func(t *testing.T) {
				_ = shOK(f.cmd, "-F", "BANNER")
				_ = shOK(f.cmd, "-X", "BANNER")
				if tc.rule != "-" {
					sh(t, f.cmd, "-N", "BANNER")
				}
				if tc.rule != "" && tc.rule != "-" {
					sh(t, f.cmd, append([]string{"-A", "BANNER"}, strings.Fields(tc.rule)...)...)
					sh(t, f.cmd, "-A", "BANNER", "-j", "RETURN")
				}
				got, err := r.nftChainHead(ctx, f, "BANNER")
				if err != nil {
					t.Fatal(err)
				}
				if got != tc.want {
					t.Errorf("head %d, want %d", got, tc.want)
				}
			})
		}
		t.Run(f.name+" long chain", func(t *testing.T) {
			var lines []string
			for i := range 20_000 {
				p := fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
				if v6 {
					p = fmt.Sprintf("2001:db8::%x", i+1)
				}
				lines = append(lines, "-A BANNER -s "+p+" -j DROP")
			}
			if err := r.restore(ctx, f, append([]string{"-F BANNER"}, lines...)); err != nil {
				t.Fatal(err)
			}
			got, err := r.nftChainHead(ctx, f, "BANNER")
			if err != nil || got != headDrop {
				t.Fatalf("head %d, %v; want %d", got, err, headDrop)
			}
		})
		_ = shOK(f.cmd, "-F", "BANNER")
		_ = shOK(f.cmd, "-X", "BANNER")
	}
}

// TestIPTablesReplaceAtStart: a restart of the iptables backend under
// iptables-nft with its chain in place lists nothing and asks for a
// Replace, which leaves exactly the given bans in the chain; a chain that
// begins with a rule of another's (here the ipset backend's set match)
// takes the listing path, which removes and reports the rule.
func TestIPTablesReplaceAtStart(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	nft := strings.Contains(sh(t, "iptables", "--version"), "nf_tables")
	first := newBackend(t, BackendIPTables, nil).(*Grouped).Member(banner.GroupMain).(*IPTables)
	if err := first.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if first.ReplaceAtStart() {
		t.Error("ReplaceAtStart after setting up a new chain")
	}
	if err := first.Add(ctx, []Entry{{Prefix: netip.MustParsePrefix("192.0.2.1/32")}, {Prefix: netip.MustParsePrefix("2001:db8::1/128")}}); err != nil {
		t.Fatal(err)
	}

	again := newBackend(t, BackendIPTables, nil).(*Grouped).Member(banner.GroupMain).(*IPTables)
	if err := again.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	checkJump(t, "25")
	if got := again.ReplaceAtStart(); got != nft {
		t.Fatalf("ReplaceAtStart %v with iptables-nft %v", got, nft)
	}
	if again.ReplaceAtStart() {
		t.Error("ReplaceAtStart true twice")
	}
	want := prefixes("192.0.2.2/32", "198.51.100.0/24", "2001:db8::2/128")
	es := make([]Entry, len(want))
	for i, p := range want {
		es[i] = Entry{Prefix: p}
	}
	if err := again.Replace(ctx, es); err != nil {
		t.Fatal(err)
	}
	for cmd, rules := range map[string]string{
		"iptables":  "-N BANNER\n-A BANNER -s 192.0.2.2/32 -j DROP\n-A BANNER -s 198.51.100.0/24 -j DROP\n",
		"ip6tables": "-N BANNER\n-A BANNER -s 2001:db8::2/128 -j DROP\n",
	} {
		if got := sh(t, cmd, "-S", "BANNER"); got != rules {
			t.Errorf("%s -S BANNER after Replace:\n%s\nwant:\n%s", cmd, got, rules)
		}
	}

	// A set match first: listed, removed as foreign, no Replace.
	sh(t, "ipset", "create", "banner4", "hash:net", "timeout", "0")
	t.Cleanup(func() { _ = shOK("ipset", "destroy", "banner4") })
	sh(t, "iptables", "-I", "BANNER", "1", "-m", "set", "--match-set", "banner4", "src", "-j", "DROP")
	third := newBackend(t, BackendIPTables, nil).(*Grouped).Member(banner.GroupMain).(*IPTables)
	t.Cleanup(func() { _, _ = third.Teardown(ctx) })
	if err := third.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if third.ReplaceAtStart() {
		t.Error("ReplaceAtStart with a set match first in the chain")
	}
	if got := sh(t, "iptables", "-S", "BANNER"); strings.Contains(got, "match-set") {
		t.Errorf("set match not removed:\n%s", got)
	}
	if s := third.Stats(); s.HookRepairs != 1 {
		t.Errorf("HookRepairs %d, want 1 (the set match)", s.HookRepairs)
	}
}

// TestGroupedReplaceAtStart: behind the port groups (the backend New
// returns), a restart of the iptables backend under iptables-nft with
// both groups' chains in place still asks for a Replace, once, and the
// Replace puts each group's bans in its own chain.
func TestGroupedReplaceAtStart(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	nft := strings.Contains(sh(t, "iptables", "--version"), "nf_tables")
	withSASL := func(c *Config) { c.SASLPorts = []uint16{465, 587} }
	first := newBackend(t, BackendIPTables, withSASL).(*Grouped)
	if err := first.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = first.Teardown(ctx) })
	if first.ReplaceAtStart() {
		t.Error("ReplaceAtStart after setting up new chains")
	}
	if err := first.Add(ctx, []Entry{
		{Prefix: netip.MustParsePrefix("192.0.2.1/32")},
		{Prefix: netip.MustParsePrefix("192.0.2.9/32"), Groups: banner.GroupSASL},
	}); err != nil {
		t.Fatal(err)
	}

	again := newBackend(t, BackendIPTables, withSASL).(*Grouped)
	if err := again.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if got := again.ReplaceAtStart(); got != nft {
		t.Fatalf("ReplaceAtStart %v with iptables-nft %v", got, nft)
	}
	if again.ReplaceAtStart() {
		t.Error("ReplaceAtStart true twice")
	}
	if err := again.Replace(ctx, []Entry{
		{Prefix: netip.MustParsePrefix("192.0.2.2/32")},
		{Prefix: netip.MustParsePrefix("192.0.2.8/32"), Groups: banner.GroupSASL},
	}); err != nil {
		t.Fatal(err)
	}
	for chain, want := range map[string]string{
		"BANNER":      "-N BANNER\n-A BANNER -s 192.0.2.2/32 -j DROP\n",
		"BANNER_SASL": "-N BANNER_SASL\n-A BANNER_SASL -s 192.0.2.8/32 -j DROP\n",
	} {
		if got := sh(t, "iptables", "-S", chain); got != want {
			t.Errorf("iptables -S %s after Replace:\n%s\nwant:\n%s", chain, got, want)
		}
	}
}
