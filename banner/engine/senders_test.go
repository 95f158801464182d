package engine

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/store"
)

// probe reports n distinct unknown recipients (or events of kind) for addr
// and returns after the engine handled them.
func probe(t *testing.T, e *Engine, addr string, kind banner.Kind, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		e.Report(ev(addr, kind, banner.SourceLog, fmt.Sprintf("nobody%d@example.test", i)))
	}
	e.sync(t)
}

func delivered(addr string) banner.Event {
	return banner.Event{Addr: netip.MustParseAddr(addr), Kind: banner.KindDelivered, Source: banner.SourceLog, Key: "8B7E0984605"}
}

// A client that delivered mail needs good_sender_factor x maxretry
// recipient probes to be banned; one that never delivered, maxretry.
// DNSBL events weigh in full for both.
func TestGoodSenderNeedsFactorTimesMaxRetry(t *testing.T) {
	const good, stranger = "198.51.100.8", "198.51.100.9"
	for _, tc := range []struct {
		name string
		kind banner.Kind
		// probes is how many events ban the good sender.
		probes int
	}{
		{"unknown_user", banner.KindUnknownUser, 15},
		{"too_many_errors", banner.KindTooManyErrors, 15},
		{"dnsbl unaffected", banner.KindDNSBL, 5},
		{"postscreen unaffected", banner.KindPostscreen, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			cfg := testConfig(c)
			cfg.MaxRetry = 5
			cfg.FindTime = time.Hour
			e := startEngine(t, cfg, openStore(t, ""), noneFirewall(t))
			e.Report(delivered(good))
			e.sync(t)

			probe(t, e, stranger, tc.kind, 0, 5)
			if _, ok := e.Banned(netip.MustParseAddr(stranger)); !ok {
				t.Fatalf("a client that never delivered is not banned at maxretry 5 (score %v)", e.Score(netip.MustParseAddr(stranger)))
			}
			probe(t, e, good, tc.kind, 0, tc.probes-1)
			if b, ok := e.Banned(netip.MustParseAddr(good)); ok {
				t.Fatalf("good sender banned after %d %s events: %+v", tc.probes-1, tc.kind, b)
			}
			probe(t, e, good, tc.kind, tc.probes-1, 1)
			b, ok := e.Banned(netip.MustParseAddr(good))
			if !ok {
				t.Fatalf("good sender not banned after %d %s events (score %v)", tc.probes, tc.kind, e.Score(netip.MustParseAddr(good)))
			}
			if probing(tc.kind) && !strings.Contains(b.Reason, "good sender: recipient probes weigh 1/3") {
				t.Errorf("ban reason %q does not say the good-sender factor applied", b.Reason)
			}
		})
	}
}

// The good sender status lasts good_sender_days, survives a restart (the
// store's senders bucket) and is forgotten after it.
func TestGoodSenderPersistsAndExpires(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.MaxRetry = 2
	cfg.GoodSenderFor = 48 * time.Hour
	path := t.TempDir() + "/banner.db"
	st := openStore(t, path)
	e := startEngine(t, cfg, st, noneFirewall(t))
	e.Report(delivered("198.51.100.8"))
	e.Report(ev("198.51.100.9", banner.KindUnknownUser, banner.SourceLog, "x@example.test")) // scored: a trail
	e.sync(t)
	e.Close()
	gs, err := st.GoodSenders()
	if err != nil || len(gs) != 1 || gs[0].Prefix != netip.MustParsePrefix("198.51.100.8/32") {
		t.Fatalf("stored good senders after close = %v, %v", gs, err)
	}

	c.Add(24 * time.Hour)
	e = startEngine(t, cfg, st, noneFirewall(t))
	x, err := e.Explain(context.Background(), netip.MustParseAddr("198.51.100.8"))
	if err != nil || x.GoodSince == nil {
		t.Fatalf("after a restart, not a good sender: %+v %v", x, err)
	}
	probe(t, e, "198.51.100.8", banner.KindUnknownUser, 0, 5)
	if _, ok := e.Banned(netip.MustParseAddr("198.51.100.8")); ok {
		t.Fatal("good sender banned after 5 probes with maxretry 2 x factor 3")
	}
	x, _ = e.Explain(context.Background(), netip.MustParseAddr("198.51.100.9"))
	if len(x.Events) != 1 || x.Events[0].Outcome != OutcomeScored {
		t.Errorf("the trail of 198.51.100.9 did not survive the restart: %+v", x.Events)
	}

	c.Add(25 * time.Hour) // 49h after the delivery
	e.sync(t)             // sweeps
	x, _ = e.Explain(context.Background(), netip.MustParseAddr("198.51.100.8"))
	if x.GoodSince != nil {
		t.Errorf("still a good sender 49h after its delivery with good_sender_days = 2")
	}
	e.Close()
	if gs, err := st.GoodSenders(); err != nil || len(gs) != 0 {
		t.Errorf("stored good senders after expiry = %v, %v", gs, err)
	}
}

// The table of good senders is bounded: the oldest deliveries go first.
func TestGoodSendersBounded(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.MaxGoodSenders = 8
	st := openStore(t, "")
	e := startEngine(t, cfg, st, noneFirewall(t))
	for i := range 100 {
		c.Add(time.Second)
		e.Report(delivered(fmt.Sprintf("192.0.2.%d", i+1)))
		e.sync(t)
	}
	e.Close()
	if n := len(e.ledger.good.last); n > 8 {
		t.Errorf("%d good senders in memory, bound 8", n)
	}
	gs, err := st.GoodSenders()
	if err != nil || len(gs) > 8 {
		t.Errorf("%d good senders stored, bound 8 (%v)", len(gs), err)
	}
	if _, ok := e.ledger.good.last[netip.MustParsePrefix("192.0.2.100/32")]; !ok {
		t.Error("the newest delivery was evicted")
	}
}

// good_sender_days = 0 turns the protection off.
func TestGoodSendersOff(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.GoodSenderFor = 0
	e := startEngine(t, cfg, nil, nil)
	e.Report(delivered("198.51.100.8"))
	probe(t, e, "198.51.100.8", banner.KindUnknownUser, 0, 2)
	if _, ok := e.Banned(netip.MustParseAddr("198.51.100.8")); !ok {
		t.Fatal("with good senders off, a delivering client is not banned at maxretry")
	}
}

// Trails and good senders are written with the flush that writes bans or
// positions, or trailFlushDelay after they changed: never one store write
// per event.
func TestTrailsWrittenInBatches(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.MaxRetry = 1000
	st := openStore(t, "")
	e := startEngine(t, cfg, st, noneFirewall(t))
	// settle waits for the engine without an op that writes (sync's
	// tick does).
	settle := func() {
		for len(e.events) > 0 {
			time.Sleep(100 * time.Microsecond)
		}
		e.Score(ip1)
		e.Score(ip1) // answered after the flush of the loop that answered the first
	}
	for i := range 100 {
		e.Report(ev(fmt.Sprintf("192.0.2.%d", i%50+1), banner.KindUnknownUser, banner.SourcePolicy, fmt.Sprintf("u%d@example.test", i)))
		settle()
	}
	if ts, err := st.Trails(); err != nil || len(ts) != 0 {
		t.Fatalf("%d trails written before trailFlushDelay without a ban (%v): one write per event?", len(ts), err)
	}
	c.Add(trailFlushDelay)
	e.Report(ev("192.0.2.200", banner.KindUnknownUser, banner.SourcePolicy, "late@example.test"))
	settle()
	// The write itself is the engine's flush, after the loop answered:
	// under -race on a loaded machine it can come a little later.
	var ts []store.Trail
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		ts, err = st.Trails()
		if err == nil && len(ts) == 51 || time.Now().After(deadline) {
			break
		}
	}
	if err != nil || len(ts) != 51 {
		t.Fatalf("%d trails written after trailFlushDelay, want 51 (%v)", len(ts), err)
	}
	for _, tr := range ts {
		if len(tr.Events) != 2 && tr.Prefix != netip.MustParsePrefix("192.0.2.200/32") {
			t.Errorf("trail of %v has %d events, want 2", tr.Prefix, len(tr.Events))
		}
	}
	// A checkpoint takes them along at once.
	e.Report(ev("192.0.2.1", banner.KindUnknownUser, banner.SourceLog, "x@example.test"))
	if err := e.Ingest(context.Background(), nil, &Checkpoint{Log: "/var/log/mail.log", Pos: banner.LogPosition{Offset: 10}}); err != nil {
		t.Fatal(err)
	}
	settle()
	ts, _ = st.Trails()
	for _, tr := range ts {
		if tr.Prefix == netip.MustParsePrefix("192.0.2.1/32") && len(tr.Events) != 3 {
			t.Errorf("the checkpoint's flush did not write the trail: %d events", len(tr.Events))
		}
	}
}

// A trail is bounded per prefix (the newest trailLen events) and in
// prefixes (maxTrails).
func TestTrailsBounded(t *testing.T) {
	ts := newTrails()
	now := time.Now()
	p := netip.MustParsePrefix("192.0.2.1/32")
	for i := range 3 * trailLen {
		ts.add(p, TrailEvent{Key: fmt.Sprint(i)}, now)
	}
	got := ts.get(p)
	if len(got) != trailLen || got[0].Key != fmt.Sprint(2*trailLen) || got[trailLen-1].Key != fmt.Sprint(3*trailLen-1) {
		t.Errorf("trail holds %d events from %s to %s", len(got), got[0].Key, got[len(got)-1].Key)
	}
	for i := range maxTrails + 100 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		ts.add(netip.PrefixFrom(a, 32), TrailEvent{}, now.Add(time.Duration(i)))
	}
	if len(ts.m) > maxTrails {
		t.Errorf("%d trails, bound %d", len(ts.m), maxTrails)
	}
}

// A delivery read late from the log (older than findtime, within
// good_sender_days) still counts; one older than good_sender_days does not.
func TestGoodSenderFromOldLogLine(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.GoodSenderFor = 48 * time.Hour
	e := startEngine(t, cfg, nil, nil)
	d := delivered("198.51.100.8")
	d.Time = c.Now().Add(-24 * time.Hour)
	e.Report(d)
	old := delivered("198.51.100.9")
	old.Time = c.Now().Add(-49 * time.Hour)
	e.Report(old)
	e.sync(t)
	if x, _ := e.Explain(context.Background(), netip.MustParseAddr("198.51.100.8")); x.GoodSince == nil {
		t.Error("a delivery a day old, read late, did not count")
	}
	if x, _ := e.Explain(context.Background(), netip.MustParseAddr("198.51.100.9")); x.GoodSince != nil {
		t.Error("a delivery older than good_sender_days counted")
	}
}
