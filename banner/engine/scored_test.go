package engine

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
)

// TestScored: Scored mirrors the score window for other goroutines: set by
// an event, gone when findtime passes, when the score bans, and on Forget.
func TestScored(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.MaxRetry = 3
	e := startEngine(t, cfg, nil, nil)
	a := netip.MustParseAddr("192.0.2.5")
	ev := func(key string) banner.Event {
		return banner.Event{Addr: a, Kind: banner.KindUnknownUser, Source: banner.SourceLog, Key: key}
	}
	if _, ok := e.Scored(a); ok {
		t.Fatal("scored before any event")
	}
	e.Report(ev("a"))
	e.Report(ev("b"))
	e.sync(t)
	if s, ok := e.Scored(a); !ok || s != 2 {
		t.Fatalf("after two events: Scored = %v, %v; want 2, true", s, ok)
	}
	if s, ok := e.Scored(netip.MustParseAddr("::ffff:192.0.2.5")); !ok || s != 2 {
		t.Errorf("IPv4-mapped: Scored = %v, %v", s, ok)
	}
	c.Add(cfg.FindTime + time.Second)
	if _, ok := e.Scored(a); ok {
		t.Error("still scored after findtime")
	}
	e.sync(t) // the sweep drops the window
	e.Report(ev("c"))
	e.sync(t)
	if _, ok := e.Scored(a); !ok {
		t.Fatal("new event not scored")
	}
	if _, err := e.Forget(context.Background(), netip.PrefixFrom(a, 32)); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Scored(a); ok {
		t.Error("scored after Forget")
	}
	for _, k := range []string{"d", "e", "f"} {
		e.Report(ev(k))
	}
	e.sync(t)
	if _, ok := e.Banned(a); !ok {
		t.Fatal("three events did not ban")
	}
	if _, ok := e.Scored(a); ok {
		t.Error("still scored once banned: the ban consumed the score")
	}
}
