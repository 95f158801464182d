package firewall

import (
	"context"
	"errors"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/internal/testenv"
)

// nftCommands are what the nftables tests need besides the backend itself
// (which runs no command): nft to look at and disturb the ruleset.
var nftCommands = []string{"nft"}

func newNFT(t testing.TB, modify func(*Config)) *NFTables {
	t.Helper()
	b := newBackend(t, BackendNFTables, modify)
	return b.(*Grouped).Member(banner.GroupMain).(*NFTables)
}

// nftList returns `nft list table inet banner`, or "" if there is none.
func nftList(t testing.TB) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "table", "inet", "banner").CombinedOutput()
	if err != nil {
		return ""
	}
	return string(out)
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// listed returns the prefixes of es, sorted, as strings.
func listed(es []Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Prefix.String())
	}
	slices.Sort(out)
	return out
}

// TestNFTablesSetup builds the table on the real kernel and checks what nft
// shows of it: both sets with interval and timeout, the chain at the
// configured priority and the drop rules; Setup twice changes nothing;
// Teardown leaves nothing.
func TestNFTablesSetup(t *testing.T) {
	if testenv.RunInNetNS(t, nftCommands...) {
		return
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   []string
	}{
		{"defaults", nil, []string{
			"set banner4 {\n\t\ttype ipv4_addr\n\t\tflags timeout\n", "set banner4_net {\n\t\ttype ipv4_addr\n\t\tflags interval,timeout\n",
			"set banner6 {\n\t\ttype ipv6_addr\n\t\tflags timeout\n", "set banner6_net {\n\t\ttype ipv6_addr\n\t\tflags interval,timeout\n",
			"tcp dport 25 tcp flags syn / fin,syn,rst,ack ip saddr @banner4_net counter packets 0 bytes 0 drop",
			"tcp dport 25 tcp flags syn / fin,syn,rst,ack ip6 saddr @banner6_net counter packets 0 bytes 0 drop",
			"type filter hook input priority filter - 10; policy accept;",
			"tcp dport 25 tcp flags syn / fin,syn,rst,ack ip saddr @banner4 counter packets 0 bytes 0 drop",
			"tcp dport 25 tcp flags syn / fin,syn,rst,ack ip6 saddr @banner6 counter packets 0 bytes 0 drop",
			`comment "banner: drop IPv4 sources in @banner4 to tcp ports 25 (drop=new)"`,
		}},
		{"ports and drop all", func(c *Config) { c.Ports = []uint16{25, 465, 587}; c.Drop = DropAll; c.NFTPriority = -200 }, []string{
			"type filter hook input priority -200; policy accept;",
			"tcp dport { 25, 465, 587 } ip saddr @banner4 counter packets 0 bytes 0 drop",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newNFT(t, tc.modify)
			if err := b.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			got := nftList(t)
			for _, w := range tc.want {
				if !strings.Contains(got, w) {
					t.Errorf("nft list lacks %q:\n%s", w, got)
				}
			}
			if err := b.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			if again := nftList(t); again != got {
				t.Errorf("second Setup changed the table:\n%s\nwas:\n%s", again, got)
			}
			if st := b.Stats(); st.HookRepairs != 0 {
				t.Errorf("HookRepairs = %d after two Setups, want 0", st.HookRepairs)
			}
			r, err := b.Teardown(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Removed) != 1 || r.Removed[0] != "table inet banner (chain input: 4 rules; set banner4: 0 entries; set banner4_net: 0 entries; set banner6: 0 entries; set banner6_net: 0 entries)" {
				t.Errorf("Teardown removed %q", r.Removed)
			}
			if out := sh(t, "nft", "list", "ruleset"); strings.TrimSpace(out) != "" {
				t.Errorf("after Teardown the ruleset is not empty:\n%s", out)
			}
			if r, err := b.Teardown(ctx); err != nil || len(r.Removed)+len(r.Kept) != 0 {
				t.Errorf("second Teardown = %+v, %v; want nothing", r, err)
			}
		})
	}
}

// TestNFTablesEntries adds, lists and removes bans: single addresses and
// prefixes of both families come back exactly (no truncated CIDR, no lost
// IPv6), with their timeouts; overlapping and adjacent bans are handled
// as the kernel requires; absent removals are no error.
func TestNFTablesEntries(t *testing.T) {
	if testenv.RunInNetNS(t, nftCommands...) {
		return
	}
	ctx := context.Background()
	b := newNFT(t, nil)
	if err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = b.Teardown(ctx) })
	check := func(t *testing.T, want ...string) {
		t.Helper()
		es, err := b.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		slices.Sort(want)
		if got := listed(es); !slices.Equal(got, want) {
			t.Errorf("List = %v, want %v\n%s", got, want, nftList(t))
		}
	}
	add := func(t *testing.T, ps ...string) {
		t.Helper()
		var es []Entry
		for _, p := range ps {
			es = append(es, Entry{Prefix: pfx(p), Timeout: time.Hour})
		}
		if err := b.Add(ctx, es); err != nil {
			t.Fatal(err)
		}
	}
	remove := func(t *testing.T, ps ...string) {
		t.Helper()
		var pp []netip.Prefix
		for _, p := range ps {
			pp = append(pp, pfx(p))
		}
		if err := b.Remove(ctx, pp); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("families and prefixes", func(t *testing.T) {
		add(t, "192.0.2.7/32", "198.51.100.0/24", "2001:db8::1/128", "2001:db8:1:2::/64", "203.0.113.128/25", "255.255.255.255/32", "ffff::/16")
		check(t, "192.0.2.7/32", "198.51.100.0/24", "2001:db8::1/128", "2001:db8:1:2::/64", "203.0.113.128/25", "255.255.255.255/32", "ffff::/16")
		out := nftList(t)
		for _, w := range []string{"198.51.100.0/24", "2001:db8:1:2::/64", "192.0.2.7", "2001:db8::1"} {
			if !strings.Contains(out, w) {
				t.Errorf("nft list lacks %s:\n%s", w, out)
			}
		}
		es, _ := b.List(ctx)
		for _, e := range es {
			if e.Timeout < 59*time.Minute || e.Timeout > time.Hour {
				t.Errorf("%s: timeout %v, want about 1h", e.Prefix, e.Timeout)
			}
		}
		remove(t, "192.0.2.7/32", "198.51.100.0/24", "2001:db8::1/128", "2001:db8:1:2::/64", "203.0.113.128/25", "255.255.255.255/32", "ffff::/16")
		check(t)
	})
	t.Run("refresh replaces the timeout", func(t *testing.T) {
		if err := b.Add(ctx, []Entry{{Prefix: pfx("192.0.2.9/32"), Timeout: time.Hour}}); err != nil {
			t.Fatal(err)
		}
		if err := b.Add(ctx, []Entry{{Prefix: pfx("192.0.2.9/32"), Timeout: 10 * time.Minute}}); err != nil {
			t.Fatal(err)
		}
		es, _ := b.List(ctx)
		if len(es) != 1 || es[0].Timeout > 10*time.Minute || es[0].Timeout < 9*time.Minute {
			t.Errorf("after refresh List = %+v, want one entry with about 10m", es)
		}
		remove(t, "192.0.2.9/32")
	})
	t.Run("adjacent", func(t *testing.T) {
		add(t, "10.1.0.0/25", "10.1.0.128/25", "10.1.1.0/32", "10.1.1.1/32", "2001:db8::/64", "2001:db8:0:1::/64")
		check(t, "10.1.0.0/25", "10.1.0.128/25", "10.1.1.0/32", "10.1.1.1/32", "2001:db8::/64", "2001:db8:0:1::/64")
		remove(t, "10.1.0.128/25", "10.1.1.0/32")
		check(t, "10.1.0.0/25", "10.1.1.1/32", "2001:db8::/64", "2001:db8:0:1::/64")
		remove(t, "10.1.0.0/25", "10.1.1.1/32", "2001:db8::/64", "2001:db8:0:1::/64")
		check(t)
	})
	t.Run("overlapping", func(t *testing.T) {
		add(t, "10.2.0.5/32", "10.2.0.6/32", "2001:db8::5/128", "10.2.0.128/25", "2001:db8:0:0:1::/80")
		// A larger prefix ban replaces the smaller prefixes inside it;
		// addresses are in their own sets and stay.
		add(t, "10.2.0.0/24", "2001:db8::/64")
		check(t, "10.2.0.0/24", "2001:db8::/64", "10.2.0.5/32", "10.2.0.6/32", "2001:db8::5/128")
		// A prefix ban inside a larger one adds nothing, in the kernel or
		// in the same batch.
		add(t, "10.3.0.0/16", "10.3.4.0/24", "10.2.0.64/26")
		check(t, "10.2.0.0/24", "10.3.0.0/16", "2001:db8::/64", "10.2.0.5/32", "10.2.0.6/32", "2001:db8::5/128")
		// Removing what the kernel never held is no error.
		remove(t, "10.2.0.9/32", "10.9.9.9/32", "10.3.4.0/24")
		remove(t, "10.2.0.0/24", "10.3.0.0/16", "2001:db8::/64", "10.2.0.5/32", "10.2.0.6/32", "2001:db8::5/128")
		check(t)
	})
	t.Run("changed behind banner's back", func(t *testing.T) {
		add(t, "10.4.0.1/32", "10.4.0.2/32")
		// The mirror believes both are there; one goes away by hand and a
		// cover is added by hand: the next batches still apply.
		sh(t, "nft", "delete", "element", "inet", "banner", "banner4", "{ 10.4.0.1 }")
		sh(t, "nft", "add", "element", "inet", "banner", "banner4_net", "{ 10.5.0.0/16 }")
		remove(t, "10.4.0.1/32")
		add(t, "10.4.0.1/32", "10.5.1.0/24", "10.4.0.0/24")
		check(t, "10.4.0.0/24", "10.5.0.0/16", "10.4.0.1/32", "10.4.0.2/32")
		remove(t, "10.4.0.0/24", "10.5.0.0/16", "10.4.0.1/32", "10.4.0.2/32")
		check(t)
	})
}

// TestNFTablesLargeBatch adds 100,000 IPv4 and 20,000 IPv6 bans in one
// batch (past the 64 KiB a netlink attribute holds, so chunked) and reads
// every one back, then removes them all in one batch.
func TestNFTablesLargeBatch(t *testing.T) {
	if testenv.RunInNetNS(t, nftCommands...) {
		return
	}
	ctx := context.Background()
	b := newNFT(t, nil)
	if err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = b.Teardown(ctx) })
	es := benchEntries(100000, time.Hour)
	for i := range 20000 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(i), 14: byte(i >> 8)})
		es = append(es, Entry{Prefix: netip.PrefixFrom(a, 128), Timeout: time.Hour})
	}
	if err := b.Add(ctx, es); err != nil {
		t.Fatal(err)
	}
	b.forget() // read the kernel, not the mirror
	got, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := make(map[netip.Prefix]bool, len(es))
	for _, e := range es {
		want[e.Prefix] = true
	}
	for _, e := range got {
		if !want[e.Prefix] {
			t.Errorf("List has %s, never added", e.Prefix)
		}
		delete(want, e.Prefix)
	}
	if len(want) > 0 {
		t.Errorf("%d of %d bans missing from the kernel", len(want), len(es))
	}
	ps := make([]netip.Prefix, len(es))
	for i, e := range es {
		ps[i] = e.Prefix
	}
	if err := b.Remove(ctx, ps); err != nil {
		t.Fatal(err)
	}
	b.forget()
	if got, err := b.List(ctx); err != nil || len(got) != 0 {
		t.Errorf("after Remove List has %d entries, %v", len(got), err)
	}
}

// TestNFTablesExpiry: the kernel removes a ban when its timeout ends.
func TestNFTablesExpiry(t *testing.T) {
	if testenv.RunInNetNS(t, nftCommands...) {
		return
	}
	ctx := context.Background()
	b := newNFT(t, nil)
	if err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = b.Teardown(ctx) })
	if err := b.Add(ctx, []Entry{{Prefix: pfx("192.0.2.1/32"), Timeout: time.Second}, {Prefix: pfx("2001:db8::/64"), Timeout: time.Second},
		{Prefix: pfx("192.0.2.2/32"), Timeout: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		es, err := b.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if got := listed(es); slices.Equal(got, []string{"192.0.2.2/32"}) {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("10 s after 1 s bans List = %v, want only the 1h ban", got)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The mirror knows expired bans are gone: adding one again works.
	if err := b.Add(ctx, []Entry{{Prefix: pfx("192.0.2.1/32"), Timeout: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	if es, _ := b.List(ctx); len(es) != 2 {
		t.Errorf("List = %v, want 2 entries", listed(es))
	}
}

// TestNFTablesRepair removes pieces of the table the ways an admin or a
// reload does, and checks Repair restores them and counts it; a batch
// after `nft flush ruleset` repairs at once.
func TestNFTablesRepair(t *testing.T) {
	if testenv.RunInNetNS(t, nftCommands...) {
		return
	}
	ctx := context.Background()
	b := newNFT(t, nil)
	if err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = b.Teardown(ctx) })
	want := nftList(t)
	for _, tc := range []struct {
		name    string
		break_  []string
		restore []string // substrings of what Repair reports
	}{
		{"flush ruleset", []string{"flush ruleset"}, []string{"table inet banner"}},
		{"delete table", []string{"delete table inet banner"}, []string{"table inet banner"}},
		{"flush chain", []string{"flush chain inet banner input"}, []string{"IPv4 rule for @banner4", "IPv4 rule for @banner4_net", "IPv6 rule for @banner6", "IPv6 rule for @banner6_net"}},
		{"delete chain", []string{"delete chain inet banner input"}, []string{"chain input"}},
		{"delete set", []string{"flush chain inet banner input", "delete set inet banner banner6"}, []string{"set banner6", "IPv6 rule for @banner6"}},
		{"foreign rule", []string{"add rule inet banner input tcp dport 25 ip saddr 192.0.2.99 drop"}, []string{"rule handle"}},
		{"chain priority", []string{"delete chain inet banner input", "add chain inet banner input { type filter hook input priority 0; }"}, []string{"was priority 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.Stats().HookRepairs
			for _, c := range tc.break_ {
				sh(t, "nft", c)
			}
			got, err := b.Repair(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.restore {
				if !strings.Contains(strings.Join(got, "; "), w) {
					t.Errorf("Repair reported %q, want %q in it", got, w)
				}
			}
			if st := b.Stats(); st.HookRepairs <= before || st.LastHookRepair == "" {
				t.Errorf("Stats after repair: %+v", st)
			}
			if got := nftList(t); normHandles(got) != normHandles(want) {
				t.Errorf("after Repair:\n%s\nwant:\n%s", got, want)
			}
			if again, err := b.Repair(ctx); err != nil || len(again) != 0 {
				t.Errorf("second Repair = %q, %v; want nothing", again, err)
			}
		})
	}
	t.Run("add after flush ruleset", func(t *testing.T) {
		if err := b.Add(ctx, []Entry{{Prefix: pfx("192.0.2.1/32"), Timeout: time.Hour}}); err != nil {
			t.Fatal(err)
		}
		sh(t, "nft", "flush", "ruleset")
		if err := b.Add(ctx, []Entry{{Prefix: pfx("192.0.2.2/32"), Timeout: time.Hour}}); !errors.Is(err, ErrRepaired) {
			t.Fatalf("Add after flush ruleset = %v, want ErrRepaired (applied, the rest to re-add)", err)
		}
		es, err := b.List(ctx)
		if err != nil || !slices.Equal(listed(es), []string{"192.0.2.2/32"}) {
			t.Errorf("List = %v, %v; want the new ban (the engine re-adds the others)", listed(es), err)
		}
	})
}

// normHandles drops what differs between two listings of the same
// table: counters, and the order of sets and rules (a re-created one
// comes last).
func normHandles(s string) string {
	var out []string
	for l := range strings.Lines(s) {
		if i := strings.Index(l, "counter packets"); i >= 0 {
			l = l[:i]
		}
		out = append(out, l)
	}
	slices.Sort(out)
	return strings.Join(out, "")
}

// TestNFTablesRefusesForeignTable: a table of the same name that holds
// none of banner's objects is another tool's.
func TestNFTablesRefusesForeignTable(t *testing.T) {
	if testenv.RunInNetNS(t, nftCommands...) {
		return
	}
	sh(t, "nft", "add table inet banner")
	sh(t, "nft", "add chain inet banner other")
	b := newNFT(t, nil)
	err := b.Setup(context.Background())
	if err == nil || !strings.Contains(err.Error(), "another tool") {
		t.Fatalf("Setup = %v, want a refusal", err)
	}
}

// TestNFTablesTeardownRemovesOldHooks: after a switch from ipset whose
// Setup could not remove the old hooks (here: they are made after it),
// the nftables Teardown removes its table and the ipset backend's INPUT
// jumps, chain and sets too; nothing of banner's is left anywhere.
func TestNFTablesTeardownRemovesOldHooks(t *testing.T) {
	if testenv.RunInNetNS(t, append(fwCommands, "nft")...) {
		return
	}
	ctx := context.Background()
	b := newNFT(t, nil)
	if err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	old := newBackend(t, BackendIPSet, nil)
	if err := old.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := old.Add(ctx, []Entry{{Prefix: pfx("192.0.2.1/32"), Timeout: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	r, err := b.Teardown(ctx)
	if err != nil {
		t.Fatal(err)
	}
	joined := strings.Join(r.Removed, "; ")
	for _, w := range []string{"table inet banner", "previous ipset/iptables backend: IPv4 chain BANNER", "previous ipset/iptables backend: set banner4 (1 entry)", "set banner6"} {
		if !strings.Contains(joined, w) {
			t.Errorf("Teardown removed %q, lacks %q", r.Removed, w)
		}
	}
	if out := sh(t, "nft", "list", "ruleset"); strings.Contains(out, "BANNER") || strings.Contains(out, "banner") {
		t.Errorf("after Teardown:\n%s", out)
	}
	if out := sh(t, "ipset", "list", "-n"); strings.TrimSpace(out) != "" {
		t.Errorf("ipsets left: %s", out)
	}
}
