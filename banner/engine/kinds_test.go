package engine

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
)

// TestKindRules: SASL failures are scored in their own window, with
// [ban.sasl]'s maxretry and findtime, apart from the other kinds.
func TestKindRules(t *testing.T) {
	c := newClock()
	cfg := testConfig(c) // maxretry 2, findtime 10m
	cfg.Kinds = map[banner.Kind]KindRule{banner.KindSASL: {MaxRetry: 4, FindTime: 6 * time.Hour}}
	e := startEngine(t, cfg, nil, nil)
	a := netip.MustParseAddr("192.0.2.44")
	sasl := banner.Event{Addr: a, Kind: banner.KindSASL, Source: banner.SourceLog, Reason: "SASL LOGIN authentication failed"}
	// Slow guessing: one failure an hour, far outside the 10m findtime.
	for i := range 3 {
		e.Report(sasl)
		e.sync(t)
		if _, ok := e.Banned(a); ok {
			t.Fatalf("banned after %d SASL failures; maxretry is 4", i+1)
		}
		c.Add(time.Hour)
	}
	if got := e.Score(a); got != 0 {
		t.Errorf("general score %v: SASL failures must not add to it", got)
	}
	// One unknown recipient: the general window (maxretry 2) does not ban,
	// and does not add to the SASL window either.
	e.Report(banner.Event{Addr: a, Kind: banner.KindUnknownUser, Source: banner.SourceLog, Key: "x@example.com"})
	e.sync(t)
	if _, ok := e.Banned(a); ok {
		t.Fatal("one unknown recipient and 3 SASL failures banned: the windows mixed")
	}
	if s, ok := e.Scored(a); !ok || s != 1 {
		t.Errorf("Scored = %v, %v", s, ok)
	}
	e.Report(sasl)
	e.sync(t)
	b, ok := e.Banned(a)
	if !ok {
		t.Fatal("the 4th SASL failure within 6h did not ban")
	}
	if b.Kind != banner.KindSASL || !strings.Contains(b.Reason, "maxretry 4 within 6h") {
		t.Errorf("ban %+v: want kind sasl and the SASL rule in the reason", b)
	}
	// Outside the SASL findtime, old failures no longer count.
	c.Add(b.Until.Sub(c.Now()) + time.Second)
	e.sync(t)
	c.Add(7 * time.Hour)
	e.sync(t)
	for range 3 {
		e.Report(sasl)
	}
	e.sync(t)
	if _, ok := e.Banned(a); ok {
		t.Error("banned by 3 new failures: old ones outside findtime still counted")
	}
}

func TestKindRulesValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Kinds = map[banner.Kind]KindRule{banner.KindSASL: {MaxRetry: 0, FindTime: 0}}
	err := cfg.Validate()
	if err == nil || !strings.Contains(err.Error(), "sasl.maxretry") || !strings.Contains(err.Error(), "sasl.findtime") {
		t.Errorf("Validate: %v", err)
	}
}
