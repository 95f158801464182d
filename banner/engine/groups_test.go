package engine

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/firewall"
)

// groupsFirewall is the real firewall package's grouped dry-run backend
// with a sasl group of its own (or none).
func groupsFirewall(t *testing.T, sasl bool) *firewall.Grouped {
	t.Helper()
	cfg := firewall.DefaultConfig()
	cfg.Backend = firewall.BackendNone
	cfg.Logger = quiet
	if sasl {
		cfg.SASLPorts = []uint16{465, 587}
	}
	fw, err := firewall.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return fw
}

// TestPortGroupRouting: a ban is routed to its port group by the kind
// that decided it (sasl failures: the sasl group; anything else: the
// main group), an address banned for both is in both, a sasl ban lets
// port-25 offences still count (and the reverse), and without
// [ban.sasl] ports every ban is of the main group.
func TestPortGroupRouting(t *testing.T) {
	sasl := func(a netip.Addr, i int) banner.Event {
		return banner.Event{Addr: a, Kind: banner.KindSASL, Source: banner.SourceLog, Key: string(rune('a' + i)), Reason: "SASL LOGIN authentication failed"}
	}
	user := func(a netip.Addr, i int) banner.Event {
		return banner.Event{Addr: a, Kind: banner.KindUnknownUser, Source: banner.SourceLog, Key: string(rune('a'+i)) + "@example.com"}
	}
	type step struct {
		ev     func(netip.Addr, int) banner.Event
		n      int
		manual bool
	}
	tests := []struct {
		name     string
		ownPorts bool
		steps    []step
		want     banner.Groups // the ban's groups
		kernel   banner.Groups // the firewall's listing (0: main alone)
		count    int           // the ban's escalation count
	}{
		{"sasl failures: sasl group", true, []step{{ev: sasl, n: 3}}, banner.GroupSASL, banner.GroupSASL, 1},
		{"unknown recipients: main group", true, []step{{ev: user, n: 2}}, banner.GroupMain, 0, 1},
		{"sasl, then unknown recipients: both", true, []step{{ev: sasl, n: 3}, {ev: user, n: 2}}, banner.AllGroups, banner.AllGroups, 2},
		{"unknown recipients, then sasl: both", true, []step{{ev: user, n: 2}, {ev: sasl, n: 3}}, banner.AllGroups, banner.AllGroups, 2},
		{"sasl failures while sasl-banned: not counted", true, []step{{ev: sasl, n: 3}, {ev: sasl, n: 6}}, banner.GroupSASL, banner.GroupSASL, 1},
		{"sasl-banned, then banner ban: both", true, []step{{ev: sasl, n: 3}, {manual: true}}, banner.AllGroups, banner.AllGroups, 2},
		{"no sasl ports: sasl bans close the main ports", false, []step{{ev: sasl, n: 3}}, banner.GroupMain, 0, 1},
		{"no sasl ports: unknown recipients while sasl-banned are not counted", false, []step{{ev: sasl, n: 3}, {ev: user, n: 2}}, banner.GroupMain, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock()
			cfg := testConfig(c) // maxretry 2
			cfg.Kinds = map[banner.Kind]KindRule{banner.KindSASL: {MaxRetry: 3, FindTime: time.Hour, OwnPorts: tt.ownPorts}}
			fw := groupsFirewall(t, tt.ownPorts)
			e := startEngine(t, cfg, nil, fw)
			a := netip.MustParseAddr("192.0.2.44")
			for _, s := range tt.steps {
				if s.manual {
					if _, err := e.Ban(context.Background(), netip.PrefixFrom(a, 32), 0, "by hand"); err != nil {
						t.Fatalf("banner ban: %v", err)
					}
					continue
				}
				for i := range s.n {
					e.Report(s.ev(a, i))
				}
				e.sync(t)
				c.Add(time.Second)
			}
			b, ok := e.Banned(a)
			if !ok {
				t.Fatal("not banned")
			}
			if b.Groups != tt.want || b.Count != tt.count {
				t.Errorf("ban groups %v count %d, want %v count %d", b.Groups, b.Count, tt.want, tt.count)
			}
			list, err := fw.List(context.Background())
			if err != nil || len(list) != 1 || list[0].Groups != tt.kernel {
				t.Errorf("firewall List = %+v, %v; want one entry of groups %v", list, err, tt.kernel)
			}
		})
	}
}

// TestPortGroupsRestore: a restart puts each ban back into its group's
// sets; a ban of the sasl group goes to the main group once [ban.sasl]
// ports is empty; a sasl entry left in the main group's set (or the
// reverse) is moved by the reconcile.
func TestPortGroupsRestore(t *testing.T) {
	c := newClock()
	path := t.TempDir() + "/banner.db"
	cfg := testConfig(c)
	cfg.Kinds = map[banner.Kind]KindRule{banner.KindSASL: {MaxRetry: 1, FindTime: time.Hour, OwnPorts: true}}
	st := openStore(t, path)
	e := startEngine(t, cfg, st, groupsFirewall(t, true))
	a, u := netip.MustParseAddr("192.0.2.44"), netip.MustParseAddr("192.0.2.45")
	e.Report(banner.Event{Addr: a, Kind: banner.KindSASL, Source: banner.SourceLog})
	e.Report(banner.Event{Addr: u, Kind: banner.KindUnknownUser, Source: banner.SourceLog, Key: "x@example.com"})
	e.Report(banner.Event{Addr: u, Kind: banner.KindUnknownUser, Source: banner.SourceLog, Key: "y@example.com"})
	e.sync(t)
	e.Close()
	st.Close()

	for _, tt := range []struct {
		name  string
		own   bool
		wantA banner.Groups
	}{
		{"sasl ports", true, banner.GroupSASL},
		{"no sasl ports", false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg.Kinds[banner.KindSASL] = KindRule{MaxRetry: 1, FindTime: time.Hour, OwnPorts: tt.own}
			fw := groupsFirewall(t, tt.own)
			// Misplaced entries: a in the main group, u in the sasl group.
			if err := fw.Add(context.Background(), []firewall.Entry{
				{Prefix: netip.PrefixFrom(a, 32), Timeout: time.Hour, Groups: banner.GroupMain},
				{Prefix: netip.PrefixFrom(u, 32), Timeout: time.Hour, Groups: banner.GroupSASL},
			}); err != nil {
				t.Fatal(err)
			}
			st := openStore(t, path)
			t.Cleanup(func() { st.Close() })
			e := startEngine(t, cfg, st, fw)
			list, err := fw.List(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			got := map[netip.Addr]banner.Groups{}
			for _, x := range list {
				got[x.Prefix.Addr()] = x.Groups
			}
			if got[a] != tt.wantA || got[u] != 0 || len(got) != 2 {
				t.Errorf("after restart the firewall holds %v; want %v in %v and %v in the main group alone", list, a, tt.wantA, u)
			}
			e.Close()
		})
	}
}

// TestPortGroupsAllowlist: the allowlist guards the sasl group as it
// guards the main one: an allowlisted address's SASL failures ban
// nothing, and a sasl ban of an address in a broader scoring prefix is
// narrowed around the allowlist like any other.
func TestPortGroupsAllowlist(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.Kinds = map[banner.Kind]KindRule{banner.KindSASL: {MaxRetry: 2, FindTime: time.Hour, OwnPorts: true}}
	cfg.Allowlist = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:1:2::5/128")}
	cfg.IPv6Prefix = 64
	fw := groupsFirewall(t, true)
	e := startEngine(t, cfg, nil, fw)
	for _, a := range []string{"192.0.2.9", "2001:db8:1:2::5"} {
		for range 3 {
			e.Report(banner.Event{Addr: netip.MustParseAddr(a), Kind: banner.KindSASL, Source: banner.SourceLog})
		}
	}
	e.sync(t)
	if l, _ := fw.List(context.Background()); len(l) != 0 {
		t.Fatalf("allowlisted addresses reached the firewall: %v", l)
	}
	// A neighbour of the allowlisted IPv6 address: banned, but not as the
	// /64 that holds the allowlisted one.
	a := netip.MustParseAddr("2001:db8:1:2::6")
	for range 2 {
		e.Report(banner.Event{Addr: a, Kind: banner.KindSASL, Source: banner.SourceLog})
	}
	e.sync(t)
	l, err := fw.List(context.Background())
	if err != nil || len(l) != 1 || l[0].Groups != banner.GroupSASL || l[0].Prefix.Contains(netip.MustParseAddr("2001:db8:1:2::5")) {
		t.Errorf("firewall List = %v, %v; want one sasl entry not covering the allowlisted address", l, err)
	}
}
