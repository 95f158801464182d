package firewall

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
)

// TestGroupedNone: Grouped sends each entry to its groups' members (the
// main member for a sasl entry when the sasl group has no ports of its
// own), Remove reaches every member, List joins them.
func TestGroupedNone(t *testing.T) {
	p := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
	entries := []Entry{
		{Prefix: p("192.0.2.1/32"), Timeout: time.Hour},                              // old-style: main
		{Prefix: p("192.0.2.2/32"), Timeout: time.Hour, Groups: banner.GroupMain},    // main
		{Prefix: p("192.0.2.3/32"), Timeout: time.Hour, Groups: banner.GroupSASL},    // sasl
		{Prefix: p("2001:db8::/64"), Timeout: time.Hour, Groups: banner.AllGroups},   // both
		{Prefix: p("198.51.100.0/24"), Timeout: time.Hour, Groups: banner.GroupSASL}, // sasl prefix
	}
	tests := []struct {
		name      string
		saslPorts []uint16
		main      []string        // the main member's prefixes
		sasl      []string        // the sasl member's prefixes
		list      []banner.Groups // List's groups, in prefix order
	}{
		{"sasl ports", []uint16{465, 587},
			[]string{"192.0.2.1/32", "192.0.2.2/32", "2001:db8::/64"},
			[]string{"192.0.2.3/32", "198.51.100.0/24", "2001:db8::/64"},
			[]banner.Groups{0, 0, banner.GroupSASL, banner.GroupSASL, banner.AllGroups}},
		{"no sasl ports", nil,
			[]string{"192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32", "198.51.100.0/24", "2001:db8::/64"},
			nil,
			[]banner.Groups{0, 0, 0, 0, 0}},
	}
	ctx := context.Background()
	prefixes := func(b Backend) []string {
		l, err := b.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range l {
			out = append(out, e.Prefix.String())
		}
		return out
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.Backend = BackendNone
			cfg.SASLPorts = tt.saslPorts
			g, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := g.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			if err := g.Add(ctx, entries); err != nil {
				t.Fatal(err)
			}
			if got := prefixes(g.Member(banner.GroupMain)); !slices.Equal(got, tt.main) {
				t.Errorf("main member holds %v, want %v", got, tt.main)
			}
			if tt.sasl != nil {
				if got := prefixes(g.Member(banner.GroupSASL)); !slices.Equal(got, tt.sasl) {
					t.Errorf("sasl member holds %v, want %v", got, tt.sasl)
				}
			}
			l, err := g.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var groups []banner.Groups
			for _, e := range l {
				groups = append(groups, e.Groups)
			}
			if !slices.Equal(groups, tt.list) {
				t.Errorf("List groups %v, want %v (%v)", groups, tt.list, l)
			}
			var all []netip.Prefix
			for _, e := range entries {
				all = append(all, e.Prefix)
			}
			if err := g.Remove(ctx, all); err != nil {
				t.Fatal(err)
			}
			if l, _ := g.List(ctx); len(l) != 0 {
				t.Errorf("after Remove List = %v", l)
			}
			if g.CanReplace() {
				t.Error("the none backend cannot replace")
			}
		})
	}
}

// TestGroupConfig: the sasl group's member has its own ports and names;
// the main group's is the configuration as it was.
func TestGroupConfig(t *testing.T) {
	c := DefaultConfig()
	c.SASLPorts = []uint16{587, 465}
	m, s := c.GroupConfig(banner.GroupMain), c.GroupConfig(banner.GroupSASL)
	if m.Chain != "BANNER" || m.Set4 != "banner4" || m.NFTTable != "banner" || !slices.Equal(m.Ports, []uint16{25}) || m.SASLPorts != nil {
		t.Errorf("main group config %+v", m)
	}
	if s.Chain != "BANNER_SASL" || s.Set4 != "banner4_sasl" || s.Set6 != "banner6_sasl" || s.NFTTable != "banner_sasl" ||
		!slices.Equal(s.Ports, []uint16{587, 465}) || s.SASLPorts != nil {
		t.Errorf("sasl group config %+v", s)
	}
	gp := c.GroupPorts()
	if !slices.Equal(gp[banner.GroupMain], []uint16{25}) || !slices.Equal(gp[banner.GroupSASL], []uint16{465, 587}) {
		t.Errorf("GroupPorts = %v", gp)
	}
	c.SASLPorts = nil
	if _, ok := c.GroupPorts()[banner.GroupSASL]; ok {
		t.Error("GroupPorts has a sasl group without sasl ports")
	}
}
