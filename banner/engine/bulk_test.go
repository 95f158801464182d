package engine

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/firewall"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestBanMany(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.Allowlist = prefixes("203.0.113.0/24")
	st := openStore(t, "")
	e := startEngine(t, cfg, st, noneFirewall(t))
	ctx := context.Background()
	if _, err := e.Ban(ctx, netip.MustParsePrefix("192.0.2.1/32"), time.Hour, "before"); err != nil {
		t.Fatal(err)
	}
	r, err := e.BanMany(ctx, prefixes("192.0.2.1/32", "192.0.2.2/32", "198.51.100.0/24", "203.0.113.7/32", "203.0.0.0/16"), 2*time.Hour, "list")
	if err != nil {
		t.Fatal(err)
	}
	if r.Banned != 2 || r.Already != 1 || r.Refusals != 2 || len(r.Refused) != 2 {
		t.Fatalf("result %+v: want 2 banned, 1 already, 2 refused (allowlisted, overlapping the allowlist)", r)
	}
	for _, a := range []string{"192.0.2.2", "198.51.100.77"} {
		b, ok := e.Banned(netip.MustParseAddr(a))
		if !ok || b.Reason != "list" || b.Source != banner.SourceFile || b.Until.Sub(b.Since) != 2*time.Hour {
			t.Errorf("%s: %+v %v", a, b, ok)
		}
	}
	if b, _ := e.Banned(netip.MustParseAddr("192.0.2.1")); b.Reason != "before" {
		t.Errorf("the ban in force was replaced: %+v", b)
	}
	for _, a := range []string{"203.0.113.7", "203.0.1.1"} {
		if _, ok := e.Banned(netip.MustParseAddr(a)); ok {
			t.Errorf("%s banned: the allowlist was overridden", a)
		}
	}
	stored, err := st.Bans()
	if err != nil || len(stored) != 3 {
		t.Errorf("store holds %d bans (%v), want 3", len(stored), err)
	}
	// A bulk ban leaves no trail per address (the bounded trails are kept
	// for offenders); the ban itself tells its story.
	if x, err := e.Explain(ctx, netip.MustParseAddr("192.0.2.2")); err != nil || len(x.Events) != 0 || x.Ban == nil || x.Ban.Source != banner.SourceFile {
		t.Errorf("explain 192.0.2.2: %+v %v", x, err)
	}
}

func TestSyncFeed(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.Allowlist = prefixes("203.0.113.0/24")
	e := startEngine(t, cfg, nil, noneFirewall(t))
	ctx := context.Background()
	ttl := 3 * time.Hour
	manual := netip.MustParsePrefix("198.51.100.9/32")
	if _, err := e.Ban(ctx, manual, 10*time.Minute, "by hand"); err != nil {
		t.Fatal(err)
	}
	r, err := e.SyncFeed(ctx, "drop", prefixes("192.0.2.0/24", "198.51.100.9/32", "203.0.113.0/25"), ttl)
	if err != nil {
		t.Fatal(err)
	}
	if r.Banned != 1 || r.Already != 1 || r.Refusals != 1 {
		t.Fatalf("first sync %+v", r)
	}
	b, ok := e.Banned(netip.MustParseAddr("192.0.2.5"))
	if !ok || b.Source != banner.SourceFeed || b.Kind != banner.KindFeed || b.Reason != "feed drop" || b.Until.Sub(b.Since) != ttl {
		t.Fatalf("feed ban %+v %v", b, ok)
	}
	// Half the ttl later, a reload extends it.
	c.Add(ttl/2 + time.Minute)
	r, _ = e.SyncFeed(ctx, "drop", prefixes("192.0.2.0/24", "10.9.0.0/16"), ttl)
	if r.Banned != 2 || r.Removed != 0 {
		t.Fatalf("second sync %+v", r)
	}
	if b2, _ := e.Banned(netip.MustParseAddr("192.0.2.5")); !b2.Until.Equal(c.Now().Add(ttl)) || !b2.Since.Equal(b.Since) {
		t.Errorf("not extended: %+v", b2)
	}
	// Gone from the list: lifted; another feed's and the manual ban stay.
	if _, err := e.SyncFeed(ctx, "other", prefixes("10.8.0.0/16"), ttl); err != nil {
		t.Fatal(err)
	}
	r, _ = e.SyncFeed(ctx, "drop", prefixes("10.9.0.0/16"), ttl)
	if r.Removed != 1 {
		t.Fatalf("third sync %+v, want 192.0.2.0/24 removed", r)
	}
	if _, ok := e.Banned(netip.MustParseAddr("192.0.2.5")); ok {
		t.Error("192.0.2.0/24 still banned after it left the feed")
	}
	if _, ok := e.Banned(netip.MustParseAddr("10.8.1.1")); !ok {
		t.Error("another feed's ban was lifted")
	}
	// A feed never reloaded runs out by itself.
	c.Add(ttl + time.Second)
	e.sync(t)
	if _, ok := e.Banned(netip.MustParseAddr("10.9.1.1")); ok {
		t.Error("feed ban outlived its ttl")
	}
}

// BenchmarkBanMany100k: one bulk ban of 100,000 addresses into a real
// store with the dry-run firewall: the engine's and the store's part of
// `banner ban -file` (the kernel's is the ipset restore floor).
func BenchmarkBanMany100k(b *testing.B) {
	cfg := DefaultConfig()
	// Not even formatted: the dry-run firewall logs every entry, and
	// unban -all every ban.
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.ReconcileInterval = 0
	st := openStore(b, "")
	fwc := firewall.DefaultConfig()
	fwc.Backend = firewall.BackendNone
	fwc.Logger = cfg.Logger
	fw, err := firewall.New(fwc)
	if err != nil {
		b.Fatal(err)
	}
	e := startEngine(b, cfg, st, fw)
	ctx := context.Background()
	round := 0
	for b.Loop() {
		b.StopTimer()
		round++
		ps := make([]netip.Prefix, 100000)
		for i := range ps {
			v := uint32(round)<<20 | uint32(i)
			ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(v >> 16), byte(v >> 8), byte(v)}), 32)
		}
		b.StartTimer()
		r, err := e.BanMany(ctx, ps, time.Hour, "bench")
		if err != nil || r.Banned != len(ps) {
			b.Fatalf("%+v %v", r, err)
		}
		b.StopTimer()
		if _, err := e.UnbanAll(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
