package firewall

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/internal/testenv"
	"github.com/banner-mta/banner/internal/vethtest"
)

// TestPortGroupPackets sends real TCP SYNs over a veth pair from a second
// namespace, for each backend, with [firewall] ports [25] and [ban.sasl]
// ports [465, 587]: a client of a sasl ban loses 465 and 587 and keeps 25,
// a client of an ordinary ban loses 25 and keeps 587, a client banned for
// both loses all three, and an unbanned one keeps all. Then the groups'
// hooks are removed behind the backend's back and Repair restores both;
// List reports each entry's groups; Teardown leaves nothing of either
// group in the kernel.
func TestPortGroupPackets(t *testing.T) {
	if testenv.RunInNetNS(t, append(append(fwCommands, nftCommands...), "nsenter")...) {
		return
	}
	server := netip.MustParsePrefix("10.201.0.1/24")
	sasl, main, both, other := netip.MustParseAddr("10.201.0.2"), netip.MustParseAddr("10.201.0.3"),
		netip.MustParseAddr("10.201.0.4"), netip.MustParseAddr("10.201.0.5")
	pair := vethtest.New(t, server, netip.PrefixFrom(sasl, 24), netip.PrefixFrom(main, 24),
		netip.PrefixFrom(both, 24), netip.PrefixFrom(other, 24))
	ports := []uint16{25, 465, 587}
	for _, p := range ports {
		listen(t, netip.AddrPortFrom(server.Addr(), p).String())
	}
	const okTimeout = 10 * time.Second
	const dropTimeout = time.Second
	ctx := context.Background()

	// banned[client] are the ports whose SYNs the bans below drop.
	banned := map[netip.Addr][]uint16{sasl: {465, 587}, main: {25}, both: {25, 465, 587}, other: nil}
	check := func(t *testing.T, when string, dropped map[netip.Addr][]uint16) {
		t.Helper()
		for _, src := range []netip.Addr{sasl, main, both, other} {
			for _, p := range ports {
				dst := netip.AddrPortFrom(server.Addr(), p)
				drop := slices.Contains(dropped[src], p)
				timeout := okTimeout
				if drop {
					timeout = dropTimeout
				}
				err := pair.Dial(src, dst, timeout)
				switch {
				case drop && !isTimeout(err):
					t.Errorf("%s: %s -> %s: %v, want a timeout (SYN dropped)", when, src, dst, err)
				case !drop && err != nil:
					t.Errorf("%s: %s -> %s: %v, want a connection", when, src, dst, err)
				}
			}
		}
	}

	for _, tc := range []struct {
		backend string
		// unhook removes the groups' hooks as a firewall reload would.
		unhook func(t *testing.T)
		// leftovers lists what of banner's is still in the kernel.
		leftovers func(t *testing.T) string
	}{
		{BackendNFTables,
			func(t *testing.T) { sh(t, "nft", "flush", "ruleset") },
			func(t *testing.T) string { return sh(t, "nft", "list", "tables") }},
		{BackendIPSet,
			func(t *testing.T) { sh(t, "iptables", "-F", "INPUT"); sh(t, "ip6tables", "-F", "INPUT") },
			func(t *testing.T) string {
				return sh(t, "iptables", "-S") + sh(t, "ip6tables", "-S") + sh(t, "ipset", "list", "-n")
			}},
		{BackendIPTables,
			func(t *testing.T) { sh(t, "iptables", "-F", "INPUT"); sh(t, "iptables", "-F", "BANNER_SASL") },
			func(t *testing.T) string { return sh(t, "iptables", "-S") + sh(t, "ip6tables", "-S") }},
	} {
		t.Run(tc.backend, func(t *testing.T) {
			b := newBackend(t, tc.backend, func(c *Config) { c.SASLPorts = []uint16{465, 587} })
			if err := b.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			torn := false
			t.Cleanup(func() {
				if !torn {
					b.Teardown(ctx)
				}
			})
			check(t, "before any ban", nil)
			entries := []Entry{
				{Prefix: netip.PrefixFrom(sasl, 32), Timeout: time.Hour, Groups: banner.GroupSASL},
				{Prefix: netip.PrefixFrom(main, 32), Timeout: time.Hour, Groups: banner.GroupMain},
				{Prefix: netip.PrefixFrom(both, 32), Timeout: time.Hour, Groups: banner.AllGroups},
			}
			if err := b.Add(ctx, entries); err != nil {
				t.Fatal(err)
			}
			check(t, "banned", banned)
			list, err := b.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			got := map[netip.Addr]banner.Groups{}
			for _, e := range list {
				got[e.Prefix.Addr()] = e.Groups.OrMain()
				if tc.backend != BackendIPTables && (e.Timeout <= 0 || e.Timeout > time.Hour) {
					t.Errorf("List: %v has kernel timeout %v, want (0, 1h]", e.Prefix, e.Timeout)
				}
			}
			want := map[netip.Addr]banner.Groups{sasl: banner.GroupSASL, main: banner.GroupMain, both: banner.AllGroups}
			if len(got) != len(want) || got[sasl] != want[sasl] || got[main] != want[main] || got[both] != want[both] {
				t.Errorf("List groups = %v, want %v", got, want)
			}

			// A reload without banner's rules: Repair restores both
			// groups' hooks (and, for nftables, the sets, which the
			// caller then refills).
			tc.unhook(t)
			repaired, err := b.Repair(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(repaired, func(s string) bool { return strings.HasPrefix(s, "sasl group: ") }) {
				t.Errorf("Repair = %q: nothing of the sasl group", repaired)
			}
			if !slices.ContainsFunc(repaired, func(s string) bool { return !strings.HasPrefix(s, "sasl group: ") }) && tc.backend != BackendIPTables {
				t.Errorf("Repair = %q: nothing of the main group", repaired)
			}
			if err := b.Add(ctx, entries); err != nil {
				t.Fatal(err)
			}
			check(t, "after repair", banned)

			// Unban: gone from every group.
			if err := b.Remove(ctx, []netip.Prefix{netip.PrefixFrom(both, 32), netip.PrefixFrom(sasl, 32)}); err != nil {
				t.Fatal(err)
			}
			check(t, "after Remove", map[netip.Addr][]uint16{main: {25}})

			rep, err := b.Teardown(ctx)
			torn = true
			if err != nil {
				t.Fatal(err)
			}
			if !slices.ContainsFunc(rep.Removed, func(s string) bool { return strings.Contains(s, "sasl") || strings.Contains(s, "SASL") }) {
				t.Errorf("Teardown removed %q: nothing of the sasl group", rep.Removed)
			}
			if left := tc.leftovers(t); strings.Contains(left, "banner") || strings.Contains(left, "BANNER") {
				t.Errorf("after Teardown the kernel still holds:\n%s", left)
			}
			check(t, "after Teardown", nil)
		})
	}
}
