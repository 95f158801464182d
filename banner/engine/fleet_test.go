package engine

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/fleet"
)

// pubRecorder is a Publisher that keeps what the engine published.
type pubRecorder struct {
	mu   sync.Mutex
	msgs []fleet.Message
}

func (p *pubRecorder) Publish(m fleet.Message) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.msgs = append(p.msgs, m)
}

func (p *pubRecorder) ops() []fleet.Op {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []fleet.Op
	for _, m := range p.msgs {
		out = append(out, m.Op)
	}
	return out
}

func applyFleet(t *testing.T, e *Engine, msgs ...fleet.Message) {
	t.Helper()
	if err := e.FleetSink("fleet:banner:").Apply(context.Background(), msgs, fleet.Cursor{Epoch: 7, ID: "100-1"}); err != nil {
		t.Fatal(err)
	}
	e.sync(t)
}

// TestFleetPublishesDecisions: this node's bans, unbans, forgets, unban
// all and counted events go to the fleet; echoes and what it heard from
// the fleet do not.
func TestFleetPublishesDecisions(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	pub := &pubRecorder{}
	cfg.Fleet = pub
	e := startEngine(t, cfg, openStore(t, ""), noneFirewall(t))
	ctx := context.Background()

	e.Report(ev("198.51.100.7", banner.KindUnknownUser, banner.SourcePolicy, "a@example.com"))
	e.Report(ev("198.51.100.7", banner.KindUnknownUser, banner.SourceLog, "a@example.com")) // echo
	e.sync(t)
	if got := pub.ops(); len(got) != 1 || got[0] != fleet.OpEvent {
		t.Fatalf("after an event and its echo: %v", got)
	}
	if _, err := e.Ban(ctx, netip.MustParsePrefix("203.0.113.0/24"), time.Hour, "by hand"); err != nil {
		t.Fatal(err)
	}
	if err := e.Unban(ctx, netip.MustParsePrefix("203.0.113.0/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Forget(ctx, netip.MustParsePrefix("203.0.113.0/24")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.UnbanAll(ctx); err != nil {
		t.Fatal(err)
	}
	want := []fleet.Op{fleet.OpEvent, fleet.OpBan, fleet.OpUnban, fleet.OpForget, fleet.OpUnbanAll}
	if got := pub.ops(); !slicesEqual(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
	n := len(pub.ops())
	// A feed's bans stay on the nodes that load the feed.
	if _, err := e.SyncFeed(ctx, "drop", []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Banned(netip.MustParseAddr("203.0.113.1")); !ok || len(pub.ops()) != n {
		t.Errorf("feed ban: banned %v, published %v", ok, pub.ops()[n:])
	}
	applyFleet(t, e, fleet.Message{Op: fleet.OpBan, Node: "mx2", Prefix: netip.MustParsePrefix("192.0.2.0/24"),
		Since: c.Now(), Until: c.Now().Add(time.Hour), Count: 1})
	if len(pub.ops()) != n {
		t.Errorf("a fleet ban was published again: %v", pub.ops()[n:])
	}
}

func slicesEqual[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFleetBanApplied: a fleet ban is enforced here with its origin node,
// kept across a restart, and its cursor saved with it.
func TestFleetBanApplied(t *testing.T) {
	c := newClock()
	dir := t.TempDir()
	st := openStore(t, dir+"/banner.db")
	e := startEngine(t, testConfig(c), st, noneFirewall(t))
	p := netip.MustParsePrefix("192.0.2.0/24")
	applyFleet(t, e, fleet.Message{Op: fleet.OpBan, Node: "mx2", Origin: "mx1", Prefix: p,
		Since: c.Now(), Until: c.Now().Add(time.Hour), Count: 2, Reason: "dictionary attack", Kind: banner.KindUnknownUser})
	b, ok := e.Banned(netip.MustParseAddr("192.0.2.9"))
	if !ok || b.Node != "mx1" || b.Source != banner.SourceFleet || b.Count != 2 {
		t.Fatalf("Banned = %+v, %v", b, ok)
	}
	pos, ok, err := st.LogPosition("fleet:banner:")
	if err != nil || !ok || fleet.CursorFromPosition(pos) != (fleet.Cursor{Epoch: 7, ID: "100-1"}) {
		t.Errorf("saved cursor %+v %v %v", pos, ok, err)
	}
	e.Close()
	e2 := startEngine(t, testConfig(c), st, noneFirewall(t))
	if l := e2.List(); len(l) != 1 || l[0].Node != "mx1" || l[0].Source != banner.SourceFleet {
		t.Errorf("after restart: %+v", l)
	}
	// Escalation history is shared: the next ban here is the third.
	applyFleet(t, e2, fleet.Message{Op: fleet.OpUnban, Node: "mx3", Prefix: p})
	if _, ok := e2.Banned(netip.MustParseAddr("192.0.2.9")); ok {
		t.Fatal("fleet unban not applied")
	}
	nb, err := e2.Ban(context.Background(), p, 0, "")
	if err != nil || nb.Count != 3 {
		t.Errorf("next ban %+v %v, want count 3", nb, err)
	}
	s := e2.Stats().Fleet
	if s.Applied != 1 || s.Received != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestFleetBanRefusedWhenAllowlisted: this node's allowlist holds for
// fleet bans.
func TestFleetBanRefusedWhenAllowlisted(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.Allowlist = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	e := startEngine(t, cfg, nil, noneFirewall(t))
	for _, p := range []string{"192.0.2.7/32", "192.0.0.0/16", "10.0.0.0/7"} {
		applyFleet(t, e, fleet.Message{Op: fleet.OpBan, Node: "mx2", Prefix: netip.MustParsePrefix(p),
			Since: c.Now(), Until: c.Now().Add(time.Hour), Count: 1})
	}
	if l := e.List(); len(l) != 0 {
		t.Errorf("banned %+v", l)
	}
	if s := e.Stats().Fleet; s.Refused != 3 {
		t.Errorf("refused %d, want 3", s.Refused)
	}
}

// TestFleetWideScore: unknown recipients probed at three hosts add up to
// one score here: 2 here and 3 from the fleet reach maxretry 5.
func TestFleetWideScore(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.MaxRetry = 5
	e := startEngine(t, cfg, nil, noneFirewall(t))
	addr := netip.MustParseAddr("198.51.100.7")
	e.Report(ev("198.51.100.7", banner.KindUnknownUser, banner.SourceLog, "a@example.com"))
	e.Report(ev("198.51.100.7", banner.KindUnknownUser, banner.SourceLog, "b@example.com"))
	e.sync(t)
	for i, key := range []string{"c@example.com", "d@example.com", "e@example.com"} {
		applyFleet(t, e, fleet.Message{Op: fleet.OpEvent, Node: "mx" + string(rune('2'+i%2)), Time: c.Now(),
			Event: banner.Event{Addr: addr, Kind: banner.KindUnknownUser, Weight: 1, Key: key, Source: banner.SourceLog, Reason: "unknown " + key}})
		if _, ok := e.Banned(addr); ok != (i == 2) {
			t.Fatalf("after %d fleet events: banned %v", i+1, ok)
		}
	}
	// The same recipient probed at another host is not a new guess.
	e2 := startEngine(t, cfg, nil, noneFirewall(t))
	e2.Report(ev("198.51.100.8", banner.KindUnknownUser, banner.SourceLog, "a@example.com"))
	e2.sync(t)
	applyFleet(t, e2, fleet.Message{Op: fleet.OpEvent, Node: "mx2", Time: c.Now(),
		Event: banner.Event{Addr: netip.MustParseAddr("198.51.100.8"), Kind: banner.KindUnknownUser, Weight: 1, Key: "a@example.com"}})
	if got := e2.Score(netip.MustParseAddr("198.51.100.8")); got != 1 {
		t.Errorf("score %v, want 1", got)
	}
}

// TestFleetRedisDown: with the fleet's Redis unreachable, bans by hand and
// by score work as before and return at once; what cannot be sent waits
// in the bounded queue, and the rest is dropped and counted.
func TestFleetRedisDown(t *testing.T) {
	n, err := fleet.New(fleet.Config{URL: "redis://127.0.0.1:1/0", Node: "mx1", QueueSize: 4, Logger: quiet}, fleet.Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	c := newClock()
	cfg := testConfig(c)
	cfg.Fleet = n
	e := startEngine(t, cfg, openStore(t, ""), noneFirewall(t))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx, e.FleetSink(fleet.CursorName(""))); close(done) }()
	t.Cleanup(func() { cancel(); <-done; n.Close() })
	start := time.Now()
	for i := range 20 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 32)
		if _, err := e.Ban(context.Background(), p, time.Hour, "by hand"); err != nil {
			t.Fatal(err)
		}
	}
	e.Report(ev("198.51.100.7", banner.KindUnknownUser, banner.SourcePolicy, "a@example.com"))
	e.Report(ev("198.51.100.7", banner.KindUnknownUser, banner.SourcePolicy, "b@example.com"))
	e.sync(t)
	if _, ok := e.Banned(netip.MustParseAddr("198.51.100.7")); !ok {
		t.Error("no ban by score while Redis is down")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("20 bans took %v with Redis down", took)
	}
	if s := n.Stats(); s.Connected || s.Queued != 4 || s.Dropped == 0 {
		t.Errorf("fleet stats %+v: want not connected, 4 queued, some dropped", s)
	}
}

// TestFleetBanGroups: a fleet ban closes the port groups the deciding node
// closed (an address banned there for recipients and for passwords), as
// this node has them; a ban from a node that sends no groups is routed by
// its kind.
func TestFleetBanGroups(t *testing.T) {
	c := newClock()
	for _, tc := range []struct {
		name     string
		ownPorts bool // this node has [ban.sasl] ports
		groups   banner.Groups
		want     banner.Groups
	}{
		{"both groups", true, banner.AllGroups, banner.AllGroups},
		{"sasl alone", true, banner.GroupSASL, banner.GroupSASL},
		{"no groups on the wire: by kind", true, 0, banner.GroupSASL},
		{"no sasl ports here", false, banner.AllGroups, banner.GroupMain},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig(c)
			cfg.Kinds = map[banner.Kind]KindRule{banner.KindSASL: {MaxRetry: 3, FindTime: time.Hour, OwnPorts: tc.ownPorts}}
			e := startEngine(t, cfg, openStore(t, ""), noneFirewall(t))
			p := netip.MustParsePrefix("192.0.2.7/32")
			applyFleet(t, e, fleet.Message{Op: fleet.OpBan, Node: "mx2", Prefix: p, Since: c.Now(), Until: c.Now().Add(time.Hour),
				Count: 1, Kind: banner.KindSASL, Groups: tc.groups})
			l := e.List()
			if len(l) != 1 || l[0].Groups.OrMain() != tc.want {
				t.Fatalf("bans %+v, want one closing %v", l, tc.want)
			}
		})
	}
}
