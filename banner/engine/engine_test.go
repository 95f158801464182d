package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/store"
	bolt "go.etcd.io/bbolt"
)

// clock is an injectable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func testConfig(c *clock) Config {
	cfg := DefaultConfig()
	cfg.Now = c.Now
	cfg.Logger = quiet
	cfg.ReconcileInterval = 0
	cfg.MaxRetry = 2 // two events ban: short tests
	return cfg
}

func openStore(t testing.TB, path string) *store.Store {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "banner.db")
	}
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func noneFirewall(t testing.TB) firewall.Backend {
	t.Helper()
	cfg := firewall.DefaultConfig()
	cfg.Backend = firewall.BackendNone
	cfg.Logger = quiet
	fw, err := firewall.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return fw
}

func startEngine(t testing.TB, cfg Config, st *store.Store, fw Firewall) *Engine {
	t.Helper()
	e, err := New(cfg, st, fw)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// sync waits until every reported event has been processed and the
// resulting batch written, then expires bans due at the clock's time.
func (e *Engine) sync(t testing.TB) error {
	t.Helper()
	for len(e.events) > 0 {
		time.Sleep(100 * time.Microsecond)
	}
	r, err := e.call(context.Background(), op{kind: opTick})
	if err != nil {
		t.Fatal(err)
	}
	return r.err
}

func (e *Engine) reconcileNow(t testing.TB) error {
	t.Helper()
	r, err := e.call(context.Background(), op{kind: opReconcile})
	if err != nil {
		t.Fatal(err)
	}
	return r.err
}

func fwPrefixes(t testing.TB, fw Firewall) []netip.Prefix {
	t.Helper()
	es, err := fw.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, e := range es {
		out = append(out, e.Prefix)
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

func storedPrefixes(t testing.TB, st *store.Store) []netip.Prefix {
	t.Helper()
	bans, err := st.Bans()
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, b := range bans {
		out = append(out, b.Prefix)
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

func ev(addr string, kind banner.Kind, src banner.Source, key string) banner.Event {
	return banner.Event{Addr: netip.MustParseAddr(addr), Kind: kind, Source: src, Key: key, Weight: 1, Reason: string(kind)}
}

var (
	ip1 = netip.MustParseAddr("198.51.100.7")
	p1  = netip.MustParsePrefix("198.51.100.7/32")
)

func TestScoreAndBanAtMaxRetry(t *testing.T) {
	c := newClock()
	st := openStore(t, "")
	fw := noneFirewall(t)
	e := startEngine(t, testConfig(c), st, fw)

	e.Report(ev("198.51.100.7", banner.KindUnknownUser, banner.SourceLog, "a@example.org"))
	e.sync(t)
	if got := e.Score(ip1); got != 1 {
		t.Fatalf("score after one event = %v, want 1", got)
	}
	if _, ok := e.Banned(ip1); ok {
		t.Fatal("banned after one event with maxretry 2")
	}
	// The first event leaves the 10m window: the score is 1 again, no ban.
	c.Add(11 * time.Minute)
	e.Report(ev("198.51.100.7", banner.KindUnknownUser, banner.SourceLog, "b@example.org"))
	e.sync(t)
	if got := e.Score(ip1); got != 1 {
		t.Fatalf("score after the window slid = %v, want 1", got)
	}
	if _, ok := e.Banned(ip1); ok {
		t.Fatal("banned although the first event left findtime")
	}
	c.Add(5 * time.Minute)
	e.Report(ev("198.51.100.7", banner.KindUnknownUser, banner.SourceLog, "c@example.org"))
	e.sync(t)
	b, ok := e.Banned(ip1)
	if !ok {
		t.Fatal("not banned at maxretry")
	}
	if b.Prefix != p1 || b.Count != 1 || b.Until.Sub(b.Since) != time.Hour || b.Source != banner.SourceLog || b.Kind != banner.KindUnknownUser {
		t.Errorf("ban = %+v", b)
	}
	if got := storedPrefixes(t, st); !slices.Equal(got, []netip.Prefix{p1}) {
		t.Errorf("store holds %v", got)
	}
	if got := fwPrefixes(t, fw); !slices.Equal(got, []netip.Prefix{p1}) {
		t.Errorf("firewall holds %v", got)
	}
	if got := e.Score(ip1); got != 0 {
		t.Errorf("score after ban = %v, want 0 (window cleared)", got)
	}
	s := e.Stats()
	if s.Bans != 1 || s.ActiveBans != 1 || s.Events[banner.KindUnknownUser] != 3 {
		t.Errorf("stats = %+v", s)
	}
}

func TestWeights(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxRetry = 2
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		weights []float64
		want    bool
	}{
		{"one heavy", []float64{2}, true},
		{"ten fifths", []float64{.2, .2, .2, .2, .2, .2, .2, .2, .2, .2}, true},
		{"just under", []float64{1, .9}, false},
		{"zero counts as one", []float64{0, 0}, true},
		{"negative dropped", []float64{-5, 1, 1}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var evs []banner.Event
			for i, w := range tc.weights {
				evs = append(evs, banner.Event{Addr: ip1, Kind: banner.KindDNSBL, Weight: w, Time: t0.Add(time.Duration(i) * time.Second), Source: banner.SourcePolicy, Key: fmt.Sprint(i)})
			}
			if got := len(Simulate(cfg, evs)) > 0; got != tc.want {
				t.Errorf("banned = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestEscalationAndForgetting(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.MaxTime = 10 * time.Hour
	cfg.ForgetAfter = 24 * time.Hour
	st := openStore(t, "")
	e := startEngine(t, cfg, st, noneFirewall(t))

	banOnce := func() banner.Ban {
		t.Helper()
		e.Report(ev("198.51.100.7", banner.KindRBLReject, banner.SourceLog, "1"))
		e.Report(ev("198.51.100.7", banner.KindRBLReject, banner.SourceLog, "2"))
		e.sync(t)
		b, ok := e.Banned(ip1)
		if !ok {
			t.Fatal("not banned")
		}
		c.Add(b.Until.Sub(c.Now()) + time.Second)
		e.sync(t)
		if _, ok := e.Banned(ip1); ok {
			t.Fatal("still banned after expiry")
		}
		return b
	}
	for i, want := range []time.Duration{time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 10 * time.Hour, 10 * time.Hour} {
		b := banOnce()
		if got := b.Until.Sub(b.Since); got != want || b.Count != i+1 {
			t.Fatalf("ban %d: %v (count %d), want %v (count %d)", i+1, got, b.Count, want, i+1)
		}
		c.Add(time.Hour) // a quiet hour, well within forget_after
	}
	h, ok, err := st.History(p1)
	if err != nil || !ok || h.Count != 6 {
		t.Fatalf("stored history = %+v, %v, %v", h, ok, err)
	}
	c.Add(24 * time.Hour)
	if b := banOnce(); b.Count != 1 || b.Until.Sub(b.Since) != time.Hour {
		t.Errorf("after the quiet period: count %d, %v; want 1, 1h", b.Count, b.Until.Sub(b.Since))
	}
}

func TestImmediateBan(t *testing.T) {
	c := newClock()
	e := startEngine(t, testConfig(c), openStore(t, ""), noneFirewall(t))
	tests := []struct {
		addr   string
		banFor time.Duration
		want   time.Duration
	}{
		{"198.51.100.1", 24 * time.Hour, 24 * time.Hour},          // longer than the escalated 1h
		{"198.51.100.2", time.Minute, time.Hour},                  // shorter: the escalated 1h wins
		{"198.51.100.3", 30 * 24 * time.Hour, 7 * 24 * time.Hour}, // capped at maxtime
	}
	for _, tc := range tests {
		t.Run(tc.addr, func(t *testing.T) {
			x := ev(tc.addr, banner.KindPattern, banner.SourceLog, "")
			x.BanFor = tc.banFor
			e.Report(x)
			e.sync(t)
			b, ok := e.Banned(netip.MustParseAddr(tc.addr))
			if !ok {
				t.Fatal("not banned by one event with BanFor")
			}
			if got := b.Until.Sub(b.Since); got != tc.want {
				t.Errorf("duration %v, want %v", got, tc.want)
			}
		})
	}
}

func TestAllowlist(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.Allowlist = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:aa::/48")}
	// A fault-injecting firewall would catch any call; a real none backend
	// is enough to see nothing reaches it.
	fw := noneFirewall(t)
	e := startEngine(t, cfg, openStore(t, ""), fw)
	for _, a := range []string{"127.0.0.1", "127.3.4.5", "::1", "192.0.2.99", "::ffff:192.0.2.5", "2001:db8:aa::25"} {
		x := ev(a, banner.KindDNSBL, banner.SourcePolicy, "")
		x.BanFor = time.Hour
		e.Report(x)
		e.Report(x)
	}
	e.sync(t)
	if l := e.List(); len(l) != 0 {
		t.Fatalf("allowlisted addresses banned: %v", l)
	}
	if s := e.Stats(); s.DroppedAllowlisted != 12 {
		t.Errorf("DroppedAllowlisted = %d, want 12", s.DroppedAllowlisted)
	}
	for _, p := range []string{"127.0.0.1/32", "192.0.2.0/24", "192.0.2.128/25", "192.0.0.0/16", "::1/128", "2001:db8:aa:bb::/64", "2001:db8::/32"} {
		t.Run(p, func(t *testing.T) {
			_, err := e.Ban(context.Background(), netip.MustParsePrefix(p), 0, "test")
			if err == nil || !strings.Contains(err.Error(), "overlaps allowlisted") {
				t.Errorf("Ban(%s) err = %v, want an allowlist refusal", p, err)
			}
		})
	}
	if got := fwPrefixes(t, fw); len(got) != 0 {
		t.Errorf("firewall holds %v", got)
	}
}

// faultFirewall is a fake firewall, used only where a fault must be injected
// that a real backend cannot be made to produce on demand (a failing Add),
// and to observe the order of store writes and firewall calls.
type faultFirewall struct {
	mu         sync.Mutex
	fail       bool
	failRepair bool
	calls      int
	seq        []string // "repair" and "list" calls, in order
	entries    map[netip.Prefix]time.Duration
	st         *store.Store
	t          testing.TB
}

func newFaultFirewall(t testing.TB, st *store.Store) *faultFirewall {
	return &faultFirewall{entries: map[netip.Prefix]time.Duration{}, st: st, t: t}
}

func (f *faultFirewall) Name() string                { return "fault" }
func (f *faultFirewall) Setup(context.Context) error { return nil }

func (f *faultFirewall) Repair(context.Context) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq = append(f.seq, "repair")
	if f.failRepair {
		return nil, errors.New("injected repair failure")
	}
	return nil, nil
}

func (f *faultFirewall) Add(_ context.Context, es []firewall.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.st != nil {
		stored := map[netip.Prefix]bool{}
		bans, _ := f.st.Bans()
		for _, b := range bans {
			stored[b.Prefix] = true
		}
		for _, e := range es {
			if !stored[e.Prefix] {
				f.t.Errorf("firewall Add of %v before it was stored", e.Prefix)
			}
		}
	}
	if f.fail {
		return errors.New("injected firewall failure")
	}
	for _, e := range es {
		f.entries[e.Prefix] = e.Timeout
	}
	return nil
}

func (f *faultFirewall) Remove(_ context.Context, ps []netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.fail {
		return errors.New("injected firewall failure")
	}
	for _, p := range ps {
		delete(f.entries, p)
	}
	return nil
}

func (f *faultFirewall) List(context.Context) ([]firewall.Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq = append(f.seq, "list")
	if f.fail {
		return nil, errors.New("injected firewall failure")
	}
	var out []firewall.Entry
	for p, d := range f.entries {
		out = append(out, firewall.Entry{Prefix: p, Timeout: d})
	}
	return out, nil
}

func (f *faultFirewall) setFail(v bool) {
	f.mu.Lock()
	f.fail = v
	f.mu.Unlock()
}

func (f *faultFirewall) callCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func TestMalformedRejectedBeforeFirewall(t *testing.T) {
	c := newClock()
	fw := newFaultFirewall(t, nil)
	e := startEngine(t, testConfig(c), openStore(t, ""), fw)
	before := fw.callCount()
	tests := []struct {
		name string
		p    netip.Prefix
		want string
	}{
		{"zero", netip.Prefix{}, "invalid prefix"},
		{"host bits", netip.PrefixFrom(ip1, 24), "host bits set: did you mean 198.51.100.0/24?"},
		{"too broad v4", netip.MustParsePrefix("10.0.0.0/7"), "too broad"},
		{"too broad v6", netip.MustParsePrefix("2000::/8"), "too broad"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Ban(context.Background(), tc.p, time.Hour, "x")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Ban(%v) err = %v, want %q", tc.p, err, tc.want)
			}
		})
	}
	if err := e.Unban(context.Background(), netip.PrefixFrom(ip1, 24)); err == nil || !strings.Contains(err.Error(), "host bits") {
		t.Errorf("Unban host bits: %v", err)
	}
	e.Report(banner.Event{Kind: banner.KindDNSBL, Source: banner.SourcePolicy, BanFor: time.Hour}) // no address
	e.sync(t)
	if got := fw.callCount(); got != before {
		t.Errorf("firewall called %d times for malformed input", got-before)
	}
	if s := e.Stats(); s.DroppedInvalid != 1 {
		t.Errorf("DroppedInvalid = %d", s.DroppedInvalid)
	}
}

func TestEchoDeduplication(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.MaxRetry = 100 // score only
	at := func(s int, src banner.Source, key string) banner.Event {
		// DNSBL events: the repeat rule of unknown recipients is tested
		// in TestRepeatedRecipientCountsOnce.
		x := ev("198.51.100.7", banner.KindDNSBL, src, key)
		x.Time = t0.Add(time.Duration(s) * time.Second)
		return x
	}
	tests := []struct {
		name    string
		events  []banner.Event
		want    float64
		dropped uint64
	}{
		{"policy then log", []banner.Event{at(0, banner.SourcePolicy, "a"), at(1, banner.SourceLog, "a")}, 1, 1},
		{"log then policy", []banner.Event{at(0, banner.SourceLog, "a"), at(1, banner.SourcePolicy, "a")}, 1, 1},
		{"different keys", []banner.Event{at(0, banner.SourcePolicy, "a"), at(1, banner.SourceLog, "b")}, 2, 0},
		{"same source twice", []banner.Event{at(0, banner.SourceLog, "a"), at(1, banner.SourceLog, "a")}, 2, 0},
		{"one echo per event", []banner.Event{at(0, banner.SourcePolicy, "a"), at(1, banner.SourceLog, "a"), at(2, banner.SourceLog, "a")}, 2, 1},
		{"two and two", []banner.Event{at(0, banner.SourcePolicy, "a"), at(1, banner.SourcePolicy, "a"), at(2, banner.SourceLog, "a"), at(3, banner.SourceLog, "a")}, 2, 2},
		{"outside echo window", []banner.Event{at(0, banner.SourcePolicy, "a"), at(121, banner.SourceLog, "a")}, 2, 0},
		{"cli never echoes", []banner.Event{at(0, banner.SourcePolicy, "a"), at(1, banner.SourceCLI, "a")}, 2, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctr := &counters{}
			sc := newLedger(cfg, ctr)
			var now time.Time
			for _, x := range tc.events {
				now = x.Time
				sc.observe(x, now)
			}
			if got := sc.score(ip1, now); got != tc.want {
				t.Errorf("score = %v, want %v", got, tc.want)
			}
			if got := ctr.droppedEcho.Load(); got != tc.dropped {
				t.Errorf("echo drops = %d, want %d", got, tc.dropped)
			}
		})
	}
}

func TestExpiry(t *testing.T) {
	c := newClock()
	st := openStore(t, "")
	fw := noneFirewall(t)
	e := startEngine(t, testConfig(c), st, fw)
	if _, err := e.Ban(context.Background(), p1, 30*time.Minute, "test"); err != nil {
		t.Fatal(err)
	}
	c.Add(29 * time.Minute)
	e.sync(t)
	if _, ok := e.Banned(ip1); !ok {
		t.Fatal("expired early")
	}
	c.Add(time.Minute)
	if _, ok := e.Banned(ip1); ok {
		t.Error("Banned reports a ban past its end")
	}
	e.sync(t)
	if len(e.List()) != 0 || len(storedPrefixes(t, st)) != 0 || len(fwPrefixes(t, fw)) != 0 {
		t.Errorf("after expiry: list %v, store %v, firewall %v", e.List(), storedPrefixes(t, st), fwPrefixes(t, fw))
	}
	if s := e.Stats(); s.Expiries != 1 || s.ActiveBans != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestRealTimeExpiry(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Logger = quiet
	fw := noneFirewall(t)
	e := startEngine(t, cfg, nil, fw)
	if _, err := e.Ban(context.Background(), p1, 50*time.Millisecond, "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(fwPrefixes(t, fw)) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the expiry timer did not remove the ban")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestManualBanUnban(t *testing.T) {
	c := newClock()
	st := openStore(t, "")
	fw := noneFirewall(t)
	e := startEngine(t, testConfig(c), st, fw)
	ctx := context.Background()
	cidr := netip.MustParsePrefix("203.0.113.0/24")
	b, err := e.Ban(ctx, cidr, 0, "spam run")
	if err != nil {
		t.Fatal(err)
	}
	if b.Until.Sub(b.Since) != time.Hour || b.Source != banner.SourceCLI || b.Kind != banner.KindManual || b.Reason != "spam run" {
		t.Errorf("ban = %+v", b)
	}
	if _, ok := e.Banned(netip.MustParseAddr("203.0.113.77")); !ok {
		t.Error("address inside the banned CIDR not banned")
	}
	if _, ok := e.Banned(netip.MustParseAddr("::ffff:203.0.113.78")); !ok {
		t.Error("mapped address inside the banned CIDR not banned")
	}
	if _, ok := e.Banned(netip.MustParseAddr("203.0.114.1")); ok {
		t.Error("address outside the CIDR banned")
	}
	// Banned again without a duration: left as it is, not escalated.
	c.Add(time.Minute)
	again, err := e.Ban(ctx, cidr, 0, "again")
	if !errors.Is(err, banner.ErrAlreadyBanned) || again != b {
		t.Errorf("Ban of a banned prefix = %+v, %v; want the ban in force %+v and ErrAlreadyBanned", again, err, b)
	}
	if _, err := e.Ban(ctx, p1, 3*time.Hour, ""); err != nil {
		t.Fatal(err)
	}
	// With a duration: a new length, counted as the next ban.
	longer, err := e.Ban(ctx, p1, 5*time.Hour, "")
	if err != nil || longer.Until.Sub(longer.Since) != 5*time.Hour || longer.Count != 2 {
		t.Errorf("Ban -for of a banned prefix = %+v, %v; want 5h, ban #2", longer, err)
	}
	if _, err := e.Ban(ctx, netip.MustParsePrefix("2001:db8::/64"), 0, ""); err != nil {
		t.Fatal(err)
	}
	list := e.List()
	var got []string
	for _, b := range list {
		got = append(got, b.Prefix.String())
	}
	if want := []string{"198.51.100.7/32", "203.0.113.0/24", "2001:db8::/64"}; !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	if len(storedPrefixes(t, st)) != 3 || len(fwPrefixes(t, fw)) != 3 {
		t.Errorf("store %v, firewall %v", storedPrefixes(t, st), fwPrefixes(t, fw))
	}

	err = e.Unban(ctx, netip.MustParsePrefix("203.0.113.5/32"))
	if !errors.Is(err, banner.ErrNotBanned) || !strings.Contains(err.Error(), "covered by the ban of 203.0.113.0/24") {
		t.Errorf("Unban of covered address: %v", err)
	}
	if err := e.Unban(ctx, netip.MustParsePrefix("192.0.2.1/32")); !errors.Is(err, banner.ErrNotBanned) {
		t.Errorf("Unban of unbanned: %v", err)
	}
	if err := e.Unban(ctx, cidr); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.Banned(netip.MustParseAddr("203.0.113.77")); ok {
		t.Error("still banned after Unban")
	}
	n, err := e.UnbanAll(ctx)
	if err != nil || n != 2 {
		t.Errorf("UnbanAll = %d, %v; want 2", n, err)
	}
	if len(e.List()) != 0 || len(storedPrefixes(t, st)) != 0 || len(fwPrefixes(t, fw)) != 0 {
		t.Errorf("after UnbanAll: %v, %v, %v", e.List(), storedPrefixes(t, st), fwPrefixes(t, fw))
	}
	if s := e.Stats(); s.Bans != 4 || s.Unbans != 3 {
		t.Errorf("stats %+v", s)
	}
}

func TestIPv6PrefixAndMapped(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.IPv6Prefix = 64
	e := startEngine(t, cfg, openStore(t, ""), noneFirewall(t))
	e.Report(ev("2001:db8:1:2::a", banner.KindDNSBL, banner.SourcePolicy, "x"))
	e.Report(ev("2001:db8:1:2::b", banner.KindDNSBL, banner.SourcePolicy, "y"))
	e.Report(ev("::ffff:198.51.100.7", banner.KindDNSBL, banner.SourcePolicy, "x"))
	e.Report(ev("198.51.100.7", banner.KindDNSBL, banner.SourcePolicy, "y"))
	e.sync(t)
	var got []string
	for _, b := range e.List() {
		got = append(got, b.Prefix.String())
	}
	if want := []string{"198.51.100.7/32", "2001:db8:1:2::/64"}; !slices.Equal(got, want) {
		t.Errorf("bans %v, want %v", got, want)
	}
	if _, ok := e.Banned(netip.MustParseAddr("2001:db8:1:2:ffff::1")); !ok {
		t.Error("other address in the /64 not banned")
	}
}

func TestRestartRestores(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "banner.db")
	st := openStore(t, path)
	fw := noneFirewall(t)
	e, err := New(testConfig(c), st, fw)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := e.Ban(ctx, p1, time.Hour, "one"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Ban(ctx, netip.MustParsePrefix("203.0.113.0/24"), 10*time.Minute, "short"); err != nil {
		t.Fatal(err)
	}
	e.Close()
	if _, err := e.Ban(ctx, p1, 0, ""); !errors.Is(err, ErrClosed) {
		t.Errorf("Ban after Close: %v", err)
	}

	c.Add(20 * time.Minute) // the /24 has expired meanwhile
	fw2 := noneFirewall(t)  // an empty kernel, as after a reboot
	stray := netip.MustParsePrefix("192.0.2.9/32")
	if err := fw2.Add(ctx, []firewall.Entry{{Prefix: stray}}); err != nil {
		t.Fatal(err)
	}
	e2 := startEngine(t, testConfig(c), st, fw2)
	if l := e2.List(); len(l) != 1 || l[0].Prefix != p1 || l[0].Reason != "one" {
		t.Fatalf("restored %v", l)
	}
	if got := fwPrefixes(t, fw2); !slices.Equal(got, []netip.Prefix{p1}) {
		t.Errorf("firewall after restore holds %v", got)
	}
	if got := storedPrefixes(t, st); !slices.Equal(got, []netip.Prefix{p1}) {
		t.Errorf("store after restore holds %v (expired ban not dropped?)", got)
	}
	if s := e2.Stats(); s.ReconcileStrays != 1 || s.ReconcileReAdded != 1 {
		t.Errorf("stats %+v", s)
	}
	// The escalation history survived too.
	c.Add(time.Hour)
	e2.sync(t)
	b, err := e2.Ban(ctx, p1, 0, "again")
	if err != nil || b.Count != 2 || b.Until.Sub(b.Since) != 2*time.Hour {
		t.Errorf("ban after restart = %+v, %v; want count 2 for 2h", b, err)
	}
}

// TestRestartLiftsAllowlisted: a stored ban that the allowlist now covers
// is lifted at start-up, from the store and the firewall.
func TestRestartLiftsAllowlisted(t *testing.T) {
	c := newClock()
	st := openStore(t, filepath.Join(t.TempDir(), "banner.db"))
	fw := noneFirewall(t)
	e := startEngine(t, testConfig(c), st, fw)
	ctx := context.Background()
	partner := netip.MustParsePrefix("203.0.113.0/24")
	for _, p := range []netip.Prefix{p1, partner} {
		if _, err := e.Ban(ctx, p, time.Hour, "x"); err != nil {
			t.Fatal(err)
		}
	}
	e.Close()

	cfg := testConfig(c)
	cfg.Allowlist = []netip.Prefix{netip.MustParsePrefix("203.0.113.128/25")}
	e2 := startEngine(t, cfg, st, fw)
	if l := e2.List(); len(l) != 1 || l[0].Prefix != p1 {
		t.Errorf("bans after restart %v, want only %v", l, p1)
	}
	if got := fwPrefixes(t, fw); !slices.Equal(got, []netip.Prefix{p1}) {
		t.Errorf("firewall holds %v", got)
	}
	if got := storedPrefixes(t, st); !slices.Equal(got, []netip.Prefix{p1}) {
		t.Errorf("store holds %v", got)
	}
}

// TestBanReasonListsEvidence: a ban by score names what added up.
func TestBanReasonListsEvidence(t *testing.T) {
	c := newClock()
	e := startEngine(t, testConfig(c), openStore(t, ""), noneFirewall(t))
	for _, rcpt := range []string{"a@example.test", "b@example.test"} {
		e.Report(banner.Event{Addr: ip1, Kind: banner.KindUnknownUser, Source: banner.SourcePolicy, Key: rcpt, Reason: "unknown recipient " + rcpt})
	}
	e.sync(t)
	l := e.List()
	if len(l) != 1 {
		t.Fatalf("bans %v", l)
	}
	want := "unknown recipient a@example.test; unknown recipient b@example.test (score 2 >= maxretry 2 within 10m)"
	if l[0].Reason != want {
		t.Errorf("reason %q\nwant   %q", l[0].Reason, want)
	}
}

func TestShortDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{10 * time.Minute: "10m", time.Hour: "1h", 90 * time.Second: "1m30s", 36 * time.Hour: "36h", 1500 * time.Millisecond: "1.5s"} {
		if got := shortDuration(d); got != want {
			t.Errorf("shortDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestRepeatedRecipientCountsOnce: the same unknown recipient within
// findtime adds to the score once, whichever source sees it; distinct
// recipients each count; other kinds count every time.
func TestRepeatedRecipientCountsOnce(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cfg := DefaultConfig()
	cfg.MaxRetry = 100 // score only
	at := func(s int, kind banner.Kind, src banner.Source, key string) banner.Event {
		x := ev("198.51.100.7", kind, src, key)
		x.Time = t0.Add(time.Duration(s) * time.Second)
		return x
	}
	u, d := banner.KindUnknownUser, banner.KindDNSBL
	tests := []struct {
		name           string
		events         []banner.Event
		want           float64
		echoes, repeat uint64
	}{
		{"retry of one typo", []banner.Event{at(0, u, banner.SourceLog, "a"), at(300, u, banner.SourceLog, "a"), at(500, u, banner.SourceLog, "a")}, 1, 0, 2},
		{"distinct guesses", []banner.Event{at(0, u, banner.SourceLog, "a"), at(1, u, banner.SourceLog, "b"), at(2, u, banner.SourcePolicy, "c")}, 3, 0, 0},
		{"echo then repeat", []banner.Event{at(0, u, banner.SourcePolicy, "a"), at(1, u, banner.SourceLog, "a"), at(400, u, banner.SourcePolicy, "a")}, 1, 1, 1},
		{"after findtime it counts again", []banner.Event{at(0, u, banner.SourceLog, "a"), at(601, u, banner.SourceLog, "a")}, 1, 0, 0},
		{"dnsbl rejects always count", []banner.Event{at(0, d, banner.SourcePolicy, "zen"), at(1, d, banner.SourcePolicy, "zen")}, 2, 0, 0},
		{"no key, no dedup", []banner.Event{at(0, u, banner.SourceLog, ""), at(1, u, banner.SourceLog, "")}, 2, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctr := &counters{}
			sc := newLedger(cfg, ctr)
			var now time.Time
			for _, x := range tc.events {
				now = x.Time
				sc.observe(x, now)
			}
			if got := sc.score(ip1, now); got != tc.want {
				t.Errorf("score = %v, want %v", got, tc.want)
			}
			if e, r := ctr.droppedEcho.Load(), ctr.droppedRepeat.Load(); e != tc.echoes || r != tc.repeat {
				t.Errorf("echoes %d repeats %d, want %d %d", e, r, tc.echoes, tc.repeat)
			}
		})
	}
}

// TestForget: after a false positive, Forget makes the next ban a first
// ban again, in memory and across a restart.
func TestForget(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "banner.db")
	st := openStore(t, path)
	e := startEngine(t, testConfig(c), st, noneFirewall(t))
	ctx := context.Background()
	for range 2 {
		if _, err := e.Ban(ctx, p1, 0, "x"); err != nil {
			t.Fatal(err)
		}
		if err := e.Unban(ctx, p1); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := e.Forget(ctx, netip.MustParsePrefix("198.51.100.0/24")); err != nil || n != 1 {
		t.Fatalf("Forget = %d, %v; want 1 record", n, err)
	}
	if _, ok, err := st.History(p1); err != nil || ok {
		t.Errorf("stored history after Forget: present=%v err=%v", ok, err)
	}
	b, err := e.Ban(ctx, p1, 0, "again")
	if err != nil || b.Count != 1 {
		t.Errorf("ban after Forget = %+v, %v; want ban #1", b, err)
	}
	if n, err := e.Forget(ctx, netip.MustParsePrefix("203.0.113.0/24")); err != nil || n != 0 {
		t.Errorf("Forget of a clean prefix = %d, %v", n, err)
	}
}

// TestForgetIPv6Address: with ipv6_prefix = 64, forgetting one address
// forgets its /64, where scores and history are kept.
func TestForgetIPv6Address(t *testing.T) {
	c := newClock()
	cfg := testConfig(c)
	cfg.IPv6Prefix = 64
	e := startEngine(t, cfg, openStore(t, ""), noneFirewall(t))
	ctx := context.Background()
	p64 := netip.MustParsePrefix("2001:db8:1:2::/64")
	if _, err := e.Ban(ctx, p64, 0, "x"); err != nil {
		t.Fatal(err)
	}
	if err := e.Unban(ctx, p64); err != nil {
		t.Fatal(err)
	}
	e.Report(ev("2001:db8:1:2::a", banner.KindDNSBL, banner.SourcePolicy, "x")) // a score in the /64
	e.sync(t)
	if n, err := e.Forget(ctx, netip.MustParsePrefix("2001:db8:1:2::7/128")); err != nil || n != 1 {
		t.Fatalf("Forget(one address of the /64) = %d, %v; want its record", n, err)
	}
	if s := e.Score(netip.MustParseAddr("2001:db8:1:2::a")); s != 0 {
		t.Errorf("score after Forget = %v", s)
	}
}

// TestReconcileRepairsHooksFirst: every reconcile asks the firewall to
// restore its hooks before listing entries, and a failing repair is an error
// that still lets the entries be mended.
func TestReconcileRepairsHooksFirst(t *testing.T) {
	c := newClock()
	fw := newFaultFirewall(t, nil)
	e := startEngine(t, testConfig(c), nil, fw)
	if _, err := e.Ban(context.Background(), p1, time.Hour, "x"); err != nil {
		t.Fatal(err)
	}
	fw.mu.Lock()
	fw.seq = nil
	fw.mu.Unlock()
	if err := e.reconcileNow(t); err != nil {
		t.Fatal(err)
	}
	fw.mu.Lock()
	if !slices.Equal(fw.seq, []string{"repair", "list"}) {
		t.Errorf("reconcile made calls %q, want repair then list", fw.seq)
	}
	fw.failRepair = true
	delete(fw.entries, p1) // as if the set had been re-created empty
	fw.mu.Unlock()
	before := e.Stats()
	err := e.reconcileNow(t)
	if err == nil || !strings.Contains(err.Error(), "repairing fault hooks") || !strings.Contains(err.Error(), "injected repair failure") {
		t.Errorf("reconcile with a failing repair = %v", err)
	}
	if got := fwPrefixes(t, fw); !slices.Equal(got, []netip.Prefix{p1}) {
		t.Errorf("firewall after reconcile holds %v, want the ban re-added anyway", got)
	}
	after := e.Stats()
	if after.FirewallErrors != before.FirewallErrors+1 || after.ReconcileReAdded != before.ReconcileReAdded+1 {
		t.Errorf("stats before %+v after %+v", before, after)
	}
}

func TestStoreBeforeFirewall(t *testing.T) {
	c := newClock()
	st := openStore(t, "")
	fw := newFaultFirewall(t, st) // checks every Add against the store
	e := startEngine(t, testConfig(c), st, fw)
	fw.setFail(true)
	_, err := e.Ban(context.Background(), p1, time.Hour, "x")
	if err == nil || !strings.Contains(err.Error(), "firewall update failed") {
		t.Fatalf("Ban with failing firewall: %v", err)
	}
	if got := storedPrefixes(t, st); !slices.Equal(got, []netip.Prefix{p1}) {
		t.Fatalf("store holds %v, want the ban", got)
	}
	if _, ok := e.Banned(ip1); !ok {
		t.Error("ban not in force after a firewall failure")
	}
	fw.setFail(false)
	if err := e.reconcileNow(t); err != nil {
		t.Fatal(err)
	}
	if got := fwPrefixes(t, fw); !slices.Equal(got, []netip.Prefix{p1}) {
		t.Errorf("firewall after reconcile holds %v", got)
	}
	s := e.Stats()
	if s.FirewallErrors == 0 || s.ReconcileReAdded != 1 {
		t.Errorf("stats %+v", s)
	}
	// An event-driven ban also reaches the store before the firewall.
	e.Report(banner.Event{Addr: netip.MustParseAddr("198.51.100.8"), Kind: banner.KindPattern, Source: banner.SourceLog, BanFor: time.Hour})
	e.sync(t)
	if len(fwPrefixes(t, fw)) != 2 {
		t.Errorf("firewall holds %v", fwPrefixes(t, fw))
	}
}

func TestStartWithFailingFirewallRetries(t *testing.T) {
	c := newClock()
	st := openStore(t, "")
	if err := st.PutBans([]store.Ban{{Prefix: p1, Since: c.Now(), Until: c.Now().Add(time.Hour), Count: 1}}, nil); err != nil {
		t.Fatal(err)
	}
	fw := newFaultFirewall(t, st)
	fw.setFail(true)
	e := startEngine(t, testConfig(c), st, fw)
	if _, ok := e.Banned(ip1); !ok {
		t.Fatal("restored ban not in force")
	}
	fw.setFail(false)
	if err := e.reconcileNow(t); err != nil {
		t.Fatal(err)
	}
	if got := fwPrefixes(t, fw); !slices.Equal(got, []netip.Prefix{p1}) {
		t.Errorf("firewall holds %v", got)
	}
}

func TestCorruptStoreRecordSkipped(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "banner.db")
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	good := store.Ban{Prefix: p1, Since: c.Now(), Until: c.Now().Add(time.Hour), Count: 1}
	if err := st.PutBans([]store.Ban{good, {Prefix: netip.MustParsePrefix("198.51.100.8/32"), Until: c.Now().Add(time.Hour), Count: 1}}, nil); err != nil {
		t.Fatal(err)
	}
	st.Close()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("bans")).Put([]byte("198.51.100.8/32"), []byte("\xff garbage"))
	}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	st = openStore(t, path)
	e := startEngine(t, testConfig(c), st, noneFirewall(t))
	if l := e.List(); len(l) != 1 || l[0].Prefix != p1 {
		t.Errorf("restored %v", l)
	}
	if s := e.Stats(); s.StoreErrors != 1 {
		t.Errorf("StoreErrors = %d", s.StoreErrors)
	}
}

func TestQueueFull(t *testing.T) {
	cfg := DefaultConfig()
	cfg.QueueSize = 2
	cfg.Logger = quiet
	e, err := New(cfg, nil, nil) // not started: nothing drains the queue
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		e.Report(ev("198.51.100.7", banner.KindDNSBL, banner.SourcePolicy, ""))
	}
	if s := e.Stats(); s.DroppedQueueFull != 3 || s.Events[banner.KindDNSBL] != 5 {
		t.Errorf("stats %+v", s)
	}
	if _, err := e.Ban(context.Background(), p1, 0, ""); !errors.Is(err, ErrNotStarted) {
		t.Errorf("Ban before Start: %v", err)
	}
	e.Close()
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"default", func(*Config) {}, ""},
		{"findtime", func(c *Config) { c.FindTime = 0 }, "findtime: must be > 0"},
		{"maxretry", func(c *Config) { c.MaxRetry = 0 }, "maxretry: must be > 0"},
		{"bantime", func(c *Config) { c.BanTime = -1 }, "bantime: must be > 0"},
		{"factor", func(c *Config) { c.Factor = 0.5 }, "factor: must be >= 1"},
		{"maxtime", func(c *Config) { c.MaxTime = time.Minute }, "maxtime: must be >= bantime"},
		{"forget_after", func(c *Config) { c.ForgetAfter = 0 }, "forget_after: must be > 0"},
		{"allowlist", func(c *Config) { c.Allowlist = []netip.Prefix{{}} }, "allowlist[0]: invalid prefix"},
		{"ipv6_prefix", func(c *Config) { c.IPv6Prefix = 129 }, "ipv6_prefix: must be between 32 and 128"},
		{"echo_window", func(c *Config) { c.EchoWindow = -1 }, "echo_window: must be >= 0"},
		{"reconcile_interval", func(c *Config) { c.ReconcileInterval = -1 }, "reconcile_interval: must be >= 0"},
		{"queue_size", func(c *Config) { c.QueueSize = 0 }, "queue_size: must be > 0"},
		// Values that passed and then misbehaved (issue 12, item 12).
		{"queue_size huge", func(c *Config) { c.QueueSize = 2_000_000_000 }, "queue_size: must be > 0 and at most 1000000"},
		{"maxretry inf", func(c *Config) { c.MaxRetry = math.Inf(1) }, "maxretry: must be > 0 and at most"},
		{"maxretry 1e308", func(c *Config) { c.MaxRetry = 1e308 }, "maxretry: must be > 0 and at most"},
		{"findtime 1ns", func(c *Config) { c.FindTime = 1 }, "findtime: must be > 0 and at least 1s"},
		{"bantime 1ns", func(c *Config) { c.BanTime = 1 }, "bantime: must be > 0 and at least 1s"},
		{"reconcile_interval 1ns", func(c *Config) { c.ReconcileInterval = 1 }, "reconcile_interval: must be >= 0 (0 is off) and otherwise at least 1s"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.modify(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
			if _, err := New(c, nil, nil); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestSimulate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MaxRetry = 2
	cfg.Allowlist = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	at := func(addr string, d time.Duration) banner.Event {
		x := ev(addr, banner.KindUnknownUser, banner.SourceLog, "")
		x.Time = t0.Add(d)
		return x
	}
	events := []banner.Event{
		// out of order on purpose: Simulate sorts by time
		at("198.51.100.7", 5*time.Minute),
		at("198.51.100.7", 0),
		at("198.51.100.7", 6*time.Minute),                // banned already: ignored
		at("192.0.2.1", 0), at("192.0.2.1", time.Minute), // allowlisted
		at("198.51.100.9", 0), at("198.51.100.9", 20*time.Minute), // too far apart
		// after the first ban (1h) ends, a second one lasts 2h
		at("198.51.100.7", 2*time.Hour), at("198.51.100.7", 2*time.Hour+time.Second),
	}
	bans := Simulate(cfg, events)
	var got []string
	for _, b := range bans {
		got = append(got, fmt.Sprintf("%v %s +%v n=%d", b.Prefix, b.Since.Sub(t0), b.Until.Sub(b.Since), b.Count))
	}
	want := []string{
		"198.51.100.7/32 5m0s +1h0m0s n=1",
		"198.51.100.7/32 2h0m1s +2h0m0s n=2",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Simulate:\n got %q\nwant %q", got, want)
	}
}

func BenchmarkBanned(b *testing.B) {
	c := newClock()
	e := startEngine(b, testConfig(c), nil, nil)
	ctx := context.Background()
	for i := range 1000 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)
		if _, err := e.Ban(ctx, p, 0, ""); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := e.Ban(ctx, netip.MustParsePrefix("203.0.113.0/24"), 0, ""); err != nil {
		b.Fatal(err)
	}
	probe := netip.MustParseAddr("198.51.100.7")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			e.Banned(probe)
		}
	})
}

// BenchmarkRestore100k measures Start with 100k stored bans, without a
// firewall: the store read and the engine's bookkeeping.
func BenchmarkRestore100k(b *testing.B) {
	st := openStore(b, "")
	now := time.Now()
	bans := make([]store.Ban, 100_000)
	for i := range bans {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		bans[i] = store.Ban{Prefix: netip.PrefixFrom(a, 32), Since: now, Until: now.Add(time.Hour), Count: 1, Reason: "bench", Source: "log", Kind: "pattern"}
	}
	if err := st.PutBans(bans, nil); err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Logger = quiet
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		e, err := New(cfg, st, nil)
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := e.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		e.Close()
		b.StartTimer()
	}
}

func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{"198.51.100.7", "203.0.113.0/24", "2001:db8::/64", "::ffff:198.51.100.0/120", "198.51.100.7/24", "fe80::1%eth0", "", "::ffff:0.0.0.0/95"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := banner.ParsePrefix(s)
		if err != nil {
			return
		}
		if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() && p.Bits() >= 96 || p.Addr().Zone() != "" {
			t.Fatalf("ParsePrefix(%q) = %v: not canonical", s, p)
		}
		if q, err := banner.ParsePrefix(p.String()); err != nil || q != p {
			t.Fatalf("ParsePrefix(%q) = %v, %v; want %v", p.String(), q, err, p)
		}
	})
}

// failingReplacer is a faultFirewall whose Replace always fails: the fault
// (a swap the kernel refuses) cannot be produced on demand with a real
// backend.
type failingReplacer struct {
	*faultFirewall
	replaces int
}

func (f *failingReplacer) Replace(context.Context, []firewall.Entry) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.replaces++
	return errors.New("injected replace failure")
}

// TestStartFailedEarlyReplaceAddsOnce: when the load of many bans into an
// empty firewall at start fails, Start adds them instead, without a second
// Replace.
func TestStartFailedEarlyReplaceAddsOnce(t *testing.T) {
	c := newClock()
	st := openStore(t, "")
	var bans []store.Ban
	for i := range replaceMin + 76 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)}), 32)
		bans = append(bans, store.Ban{Prefix: p, Since: c.Now(), Until: c.Now().Add(time.Hour), Count: 1})
	}
	if err := st.PutBans(bans, nil); err != nil {
		t.Fatal(err)
	}
	fw := &failingReplacer{faultFirewall: newFaultFirewall(t, st)}
	e := startEngine(t, testConfig(c), st, fw)
	fw.mu.Lock()
	replaces, held := fw.replaces, len(fw.entries)
	fw.mu.Unlock()
	if replaces != 1 || held != len(bans) {
		t.Errorf("Start: %d Replace calls, %d entries added; want 1 and %d", replaces, held, len(bans))
	}
	if s := e.Stats(); s.ReconcileReAdded != uint64(len(bans)) {
		t.Errorf("re-added %d, want %d", s.ReconcileReAdded, len(bans))
	}
}
