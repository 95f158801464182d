package dnsbl

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/dnstest"
	"github.com/miekg/dns"
)

// ip4 returns 192.0.2.n, a distinct client per n.
func ip4(n int) netip.Addr { return netip.AddrFrom4([4]byte{192, 0, byte(2 + n/256), byte(n)}) }

// lookupCtx looks ip up with a caller deadline far beyond the query timeout
// used to fail the zone: a lookup that waited for a query would come back
// with ErrDeadline or ErrTimeout, a skipped one with ErrZoneDown at once.
func (e *env) lookupCtx(t *testing.T, ip netip.Addr, d time.Duration) (Result, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	r, err := e.c.Lookup(ctx, ip)
	if err != nil {
		t.Fatalf("Lookup(%s): %v", ip, err)
	}
	return r, time.Since(start)
}

// failZone makes the zone's queries fail FailuresToOpen times in a row and
// checks each lookup asked the server and got want.
func failZone(t *testing.T, e *env, zone string, want error, first int) {
	t.Helper()
	before := e.srv.Queries(zone)
	for i := range FailuresToOpen {
		r := e.lookup(t, ip4(first+i).String())
		if !r.Unknown || !errors.Is(r.Zones[0].Err, want) {
			t.Fatalf("failing lookup %d: want %v, got %+v", i+1, want, r.Zones[0])
		}
		if q := e.srv.Queries(zone) - before; q != i+1 {
			t.Fatalf("failing lookup %d: server saw %d queries", i+1, q)
		}
	}
}

// stoppedServer returns the address of a dnstest server that has been shut
// down, so queries to it fail with a network error (port unreachable).
func stoppedServer(t *testing.T) string {
	var addr string
	t.Run("start and stop a server", func(t *testing.T) { addr = dnstest.Start(t).Addr() })
	return addr
}

func TestBreakerOpens(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *env)
		want  error
	}{
		{"timeout", func(e *env) { e.srv.Drop("bl.test", true) }, ErrTimeout},
		{"servfail", func(e *env) { e.srv.SetServfail("bl.test") }, ErrServFail},
		{"refused", func(e *env) { e.srv.SetRcode("bl.test", dns.RcodeRefused) }, ErrRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, []string{"bl.test*3"}, func(c *Config) { c.QueryTimeout = 100 * time.Millisecond })
			tt.setup(e)
			failZone(t, e, "bl.test", tt.want, 1)
			st := e.c.Stats()
			z := st.Zones[0]
			if !z.Down || !z.Failing || z.ConsecutiveFailures != FailuresToOpen || z.Skipped != 0 ||
				!z.DownSince.Equal(e.clock.Now()) || !z.NextProbe.Equal(e.clock.Now().Add(30*time.Second)) {
				t.Errorf("zone stats after %d failures: %+v", FailuresToOpen, z)
			}
			if n := strings.Count(e.logs.String(), "zone down"); n != 1 {
				t.Errorf("%d 'zone down' logs, want 1:\n%s", n, e.logs)
			}

			// Down: the next lookups are answered without a query and
			// report the new kind of error; the policy sees Unknown.
			queries := e.srv.TotalQueries()
			for i := range 5 {
				r, took := e.lookupCtx(t, ip4(10+i), 10*time.Second)
				z := r.Zones[0]
				if !r.Unknown || r.Listed || !errors.Is(z.Err, ErrZoneDown) || errors.Is(z.Err, ErrDeadline) ||
					z.Cached || len(z.Answers) != 0 || z.Query+"." != QueryName(ip4(10+i), "bl.test") {
					t.Fatalf("lookup while down: %+v", z)
				}
				if !strings.Contains(z.Err.Error(), tt.want.Error()) || !strings.HasPrefix(z.Err.Error(), "bl.test: ") {
					t.Errorf("down error %q does not name the zone and the cause", z.Err)
				}
				if i == 0 {
					t.Logf("lookup while down took %v (query_timeout 100ms): %v", took, z.Err)
				}
			}
			if q := e.srv.TotalQueries(); q != queries {
				t.Errorf("server saw %d queries while the zone was down, want 0", q-queries)
			}
			st = e.c.Stats()
			if st.Skipped != 5 || st.Zones[0].Skipped != 5 || st.Unknown != FailuresToOpen+5 || st.Zones[0].Errors != FailuresToOpen {
				t.Errorf("stats while down: skipped %d/%d, unknown %d, zone errors %d", st.Skipped, st.Zones[0].Skipped, st.Unknown, st.Zones[0].Errors)
			}
		})
	}
	t.Run("network", func(t *testing.T) {
		dead := stoppedServer(t)
		e := newEnv(t, []string{"bl.test*3"}, func(c *Config) { c.Resolvers = []string{dead} })
		for i := range FailuresToOpen {
			r := e.lookup(t, ip4(i).String())
			if !errors.Is(r.Zones[0].Err, ErrNetwork) && !errors.Is(r.Zones[0].Err, ErrTimeout) {
				t.Fatalf("lookup %d to a stopped server: %v", i, r.Zones[0].Err)
			}
			if i == 0 {
				t.Logf("stopped server: %v", r.Zones[0].Err)
			}
		}
		r, _ := e.lookupCtx(t, ip4(9), 10*time.Second)
		if !errors.Is(r.Zones[0].Err, ErrZoneDown) {
			t.Fatalf("after %d network errors: %v", FailuresToOpen, r.Zones[0].Err)
		}
		if st := e.c.Stats(); st.Queries != FailuresToOpen || !st.Zones[0].Down {
			t.Errorf("stats: %d queries, down %v", st.Queries, st.Zones[0].Down)
		}
	})
}

func TestBreakerProbe(t *testing.T) {
	e := newEnv(t, []string{"bl.test*3"}, func(c *Config) {
		c.QueryTimeout = 100 * time.Millisecond
		c.FailureBackoff = time.Minute
	})
	e.srv.Drop("bl.test", true)
	failZone(t, e, "bl.test", ErrTimeout, 1)

	// Still down just before the backoff ends.
	e.clock.Advance(time.Minute - time.Second)
	q := e.srv.Queries("bl.test")
	if r := e.lookup(t, ip4(20).String()); !errors.Is(r.Zones[0].Err, ErrZoneDown) || e.srv.Queries("bl.test") != q {
		t.Fatalf("before the backoff: %v, %d new queries", r.Zones[0].Err, e.srv.Queries("bl.test")-q)
	}

	// The backoff is over and the zone still dead: of many concurrent
	// lookups exactly one queries, the others are skipped, and the failed
	// probe keeps the zone down for another backoff.
	e.clock.Advance(time.Second)
	const n = 50
	var wg sync.WaitGroup
	results := make([]Result, n)
	for i := range n {
		wg.Add(1)
		go func() { defer wg.Done(); results[i] = e.lookup(t, ip4(30+i).String()) }()
	}
	wg.Wait()
	probes, skipped := 0, 0
	for _, r := range results {
		switch err := r.Zones[0].Err; {
		case errors.Is(err, ErrTimeout):
			probes++
		case errors.Is(err, ErrZoneDown):
			skipped++
		default:
			t.Errorf("concurrent lookup: %v", err)
		}
	}
	if probes != 1 || skipped != n-1 || e.srv.Queries("bl.test") != q+1 {
		t.Fatalf("after the backoff: %d probes, %d skipped, %d queries; want 1, %d, 1", probes, skipped, e.srv.Queries("bl.test")-q, n-1)
	}
	if z := e.c.Stats().Zones[0]; !z.Down || z.ConsecutiveFailures != FailuresToOpen+1 || !z.NextProbe.Equal(e.clock.Now().Add(time.Minute)) {
		t.Errorf("after a failed probe: %+v", z)
	}
	e.clock.Advance(30 * time.Second)
	if r := e.lookup(t, ip4(90).String()); !errors.Is(r.Zones[0].Err, ErrZoneDown) || e.srv.Queries("bl.test") != q+1 {
		t.Fatalf("half a backoff after the failed probe: %v", r.Zones[0].Err)
	}

	// The zone is back: the next probe answers and closes the breaker.
	e.srv.Drop("bl.test", false)
	e.srv.Set(QueryName(ip4(91), "bl.test"), addrs("127.0.0.2"), time.Hour)
	e.clock.Advance(30 * time.Second)
	if r := e.lookup(t, ip4(91).String()); r.Unknown || !r.Listed || e.srv.Queries("bl.test") != q+2 {
		t.Fatalf("probe to the fixed zone: %+v, %d queries", r, e.srv.Queries("bl.test")-q)
	}
	st := e.c.Stats()
	if z := st.Zones[0]; z.Down || z.Failing || z.ConsecutiveFailures != 0 || !z.DownSince.IsZero() || !z.NextProbe.IsZero() {
		t.Errorf("after a good probe: %+v", z)
	}
	if !strings.Contains(e.logs.String(), "zone answers again") || !strings.Contains(e.logs.String(), "skipped_lookups="+strconv.FormatUint(st.Skipped, 10)) {
		t.Errorf("no recovery log with the skipped count %d:\n%s", st.Skipped, e.logs)
	}
	// Closed: every lookup queries again, and it takes FailuresToOpen new
	// failures to open it again.
	for i := range 3 {
		if r := e.lookup(t, ip4(100+i).String()); r.Unknown {
			t.Fatalf("after recovery: %v", r.Err())
		}
	}
	if got := e.srv.Queries("bl.test"); got != q+5 {
		t.Errorf("%d queries after recovery, want 3", got-q-2)
	}
	e.srv.SetServfail("bl.test")
	failZone(t, e, "bl.test", ErrServFail, 110)
	if r := e.lookup(t, ip4(120).String()); !errors.Is(r.Zones[0].Err, ErrZoneDown) {
		t.Errorf("second outage: %v", r.Zones[0].Err)
	}
	if n := strings.Count(e.logs.String(), "zone down"); n != 2 {
		t.Errorf("%d 'zone down' logs for two outages", n)
	}
}

// While a zone is down, its cached answers still count: a cached listing
// still lists, and only the zones that are down are unknown.
func TestBreakerKeepsCache(t *testing.T) {
	e := newEnv(t, []string{"bl.test*3", "other.test*1"}, func(c *Config) { c.QueryTimeout = 100 * time.Millisecond })
	listed, clean := ip4(200), ip4(201)
	e.srv.Set(QueryName(listed, "bl.test"), addrs("127.0.0.2"), time.Hour)
	e.lookup(t, listed.String())
	e.lookup(t, clean.String())

	e.srv.Drop("bl.test", true)
	failZone(t, e, "bl.test", ErrTimeout, 1)
	before := e.srv.TotalQueries()
	r := e.lookup(t, listed.String())
	if !r.Listed || r.Unknown || !r.Zones[0].Cached || r.Zones[0].Err != nil {
		t.Errorf("cached listing while down: %+v", r)
	}
	r = e.lookup(t, clean.String())
	if r.Listed || r.Unknown || !r.Zones[0].Cached {
		t.Errorf("cached 'not listed' while down: %+v", r)
	}
	// A new client: bl.test is skipped, other.test is asked.
	r = e.lookup(t, ip4(202).String())
	if !r.Unknown || !errors.Is(r.Zones[0].Err, ErrZoneDown) || r.Zones[1].Err != nil {
		t.Errorf("new client while down: %+v", r.Zones)
	}
	if q := e.srv.TotalQueries() - before; q != 1 || e.srv.Queries("other.test") != 2+FailuresToOpen+1 {
		t.Errorf("%d queries while down, want 1 (other.test)", q)
	}
	if z := e.c.Stats().Zones[1]; z.Down || z.ConsecutiveFailures != 0 {
		t.Errorf("healthy zone marked: %+v", z)
	}
}

// failure_backoff = 0: every lookup queries, as before the breaker.
func TestBreakerDisabled(t *testing.T) {
	e := newEnv(t, []string{"bl.test*3"}, func(c *Config) {
		c.QueryTimeout = 50 * time.Millisecond
		c.FailureBackoff = 0
	})
	e.srv.Drop("bl.test", true)
	const n = 2*FailuresToOpen + 1
	for i := range n {
		if r := e.lookup(t, ip4(i).String()); !errors.Is(r.Zones[0].Err, ErrTimeout) {
			t.Fatalf("lookup %d: %v", i, r.Zones[0].Err)
		}
	}
	st := e.c.Stats()
	if e.srv.Queries("bl.test") != n || st.Skipped != 0 || st.Zones[0].Down || st.Zones[0].ConsecutiveFailures != n {
		t.Errorf("%d queries for %d lookups; stats %+v", e.srv.Queries("bl.test"), n, st.Zones[0])
	}
	if strings.Contains(e.logs.String(), "zone down") {
		t.Errorf("breaker logged although disabled:\n%s", e.logs)
	}
}

// Replies that are errors but come back at once (127.255.255.x, other
// rcodes) and answers do not trip the breaker, and a success resets the
// count of failures in a row.
func TestBreakerCountsOnlyFailuresInARow(t *testing.T) {
	e := newEnv(t, []string{"zen.spamhaus.org*3"}, func(c *Config) { c.QueryTimeout = 100 * time.Millisecond })
	for i := range 2 * FailuresToOpen {
		e.srv.Set(QueryName(ip4(i), "zen.spamhaus.org"), addrs("127.255.255.254"), time.Hour)
		if r := e.lookup(t, ip4(i).String()); !errors.Is(r.Zones[0].Err, ErrBlocked) {
			t.Fatalf("blocked lookup %d: %v", i, r.Zones[0].Err)
		}
	}
	e.srv.SetRcode("zen.spamhaus.org", dns.RcodeNotImplemented)
	for i := range FailuresToOpen {
		if r := e.lookup(t, ip4(20+i).String()); !errors.Is(r.Zones[0].Err, ErrRcode) {
			t.Fatalf("NOTIMP lookup %d: %v", i, r.Zones[0].Err)
		}
	}
	if z := e.c.Stats().Zones[0]; z.Down || z.ConsecutiveFailures != 0 {
		t.Fatalf("immediate error replies tripped the breaker: %+v", z)
	}
	e.srv.SetRcode("zen.spamhaus.org", 0)
	e.srv.SetServfail("zen.spamhaus.org")
	for round := range 3 {
		for i := range FailuresToOpen - 1 {
			e.lookup(t, ip4(40+10*round+i).String())
		}
		e.srv.SetRcode("zen.spamhaus.org", 0) // one NXDOMAIN between
		if r := e.lookup(t, ip4(49+10*round).String()); r.Unknown {
			t.Fatalf("round %d: %v", round, r.Err())
		}
		e.srv.SetServfail("zen.spamhaus.org")
	}
	if z := e.c.Stats().Zones[0]; z.Down || z.ConsecutiveFailures != 0 || z.Skipped != 0 {
		t.Errorf("failures broken up by answers opened the breaker: %+v", z)
	}
}

// Many concurrent lookups against a dead zone, a healthy one and a clock
// that moves past backoffs, under -race: the healthy zone is never
// affected, skipped lookups are counted exactly, and the dead zone is
// asked far less often than it is looked up.
func TestBreakerConcurrent(t *testing.T) {
	e := newEnv(t, []string{"dead.test*3", "ok.test*1"}, func(c *Config) {
		c.QueryTimeout = 50 * time.Millisecond
		c.FailureBackoff = 10 * time.Second
	})
	e.srv.Drop("dead.test", true)
	const workers, each = 32, 60
	var (
		wg             sync.WaitGroup
		mu             sync.Mutex
		skipped, other int
		advances       int
	)
	stop := make(chan struct{})
	ticker := sync.WaitGroup{}
	ticker.Add(1)
	go func() {
		defer ticker.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				e.clock.Advance(10 * time.Second)
				advances++
			}
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				r, err := e.c.Lookup(context.Background(), ip4((w+i*workers)%97))
				if err != nil {
					t.Error(err)
					return
				}
				if r.Zones[1].Err != nil {
					t.Errorf("healthy zone: %v", r.Zones[1].Err)
				}
				mu.Lock()
				switch err := r.Zones[0].Err; {
				case errors.Is(err, ErrZoneDown):
					skipped++
				case errors.Is(err, ErrTimeout):
					other++
				default:
					t.Errorf("dead zone: %v", err)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	ticker.Wait()
	st := e.c.Stats()
	z := st.Zones[0]
	if uint64(skipped) != z.Skipped || st.Skipped != z.Skipped || st.Zones[1].Skipped != 0 {
		t.Errorf("skipped: %d results, zone %d, total %d", skipped, z.Skipped, st.Skipped)
	}
	dead := e.srv.Queries("dead.test")
	t.Logf("%d lookups: %d skipped, %d waited for a timeout (shared or probe), %d queries to the dead zone, %d clock advances",
		workers*each, skipped, other, dead, advances)
	if !z.Down || skipped == 0 || dead >= workers*each/4 {
		t.Errorf("dead zone: down %v, %d skipped, %d queries for %d lookups", z.Down, skipped, dead, workers*each)
	}
	if st.Zones[1].Down || st.Zones[1].Errors != 0 {
		t.Errorf("healthy zone: %+v", st.Zones[1])
	}
}

// BenchmarkLookupDeadResolver measures a lookup of a new client while the
// resolver does not answer, with the default query_timeout: with
// failure_backoff = 0 every lookup waits for the timeout; once the breaker
// has opened (after FailuresToOpen such lookups) it returns at once.
func BenchmarkLookupDeadResolver(b *testing.B) {
	for _, bc := range []struct {
		name    string
		backoff time.Duration
	}{{"breaker-off", 0}, {"breaker-open", time.Hour}} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, []string{DefaultZone}, func(c *Config) {
				c.QueryTimeout = DefaultConfig().QueryTimeout
				c.FailureBackoff = bc.backoff
			})
			e.srv.Drop("zen.spamhaus.org", true)
			ctx := context.Background()
			n := 0
			next := func() netip.Addr {
				n++
				return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
			}
			for range FailuresToOpen {
				_, _ = e.c.Lookup(ctx, next())
			}
			b.ReportAllocs()
			for b.Loop() {
				if r, _ := e.c.Lookup(ctx, next()); !r.Unknown {
					b.Fatal("dead resolver answered")
				}
			}
			b.StopTimer()
			if down := e.c.Stats().Zones[0].Down; down != (bc.backoff > 0) {
				b.Errorf("zone down = %v", down)
			}
		})
	}
}

// Only recent failures make a run: a tripping failure more than
// failure_backoff after the previous one starts the count again, however
// few queries came between, so failures hours apart never add up to an
// outage.
func TestBreakerStaleFailures(t *testing.T) {
	const backoff = 30 * time.Second
	tests := []struct {
		name      string
		gaps      []time.Duration // clock advance before failures 2, 3, ...
		down      bool
		wantFails int
	}{
		{"in a row", []time.Duration{0, 0}, true, 3},
		{"each within the backoff", []time.Duration{backoff, backoff}, true, 3},
		{"first one stale", []time.Duration{backoff + time.Second, 0}, false, 2},
		{"last one late", []time.Duration{0, backoff + time.Second}, false, 1},
		{"hours apart", []time.Duration{3 * time.Hour, 5 * time.Hour}, false, 1},
		{"stale, then a new run", []time.Duration{time.Hour, 0, 0}, true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, []string{"bl.test*3"}, func(c *Config) {
				c.QueryTimeout = 100 * time.Millisecond
				c.FailureBackoff = backoff
			})
			e.srv.SetServfail("bl.test")
			for i := range len(tt.gaps) + 1 {
				if i > 0 {
					e.clock.Advance(tt.gaps[i-1])
				}
				if r := e.lookup(t, ip4(i).String()); !errors.Is(r.Zones[0].Err, ErrServFail) {
					t.Fatalf("lookup %d: %v", i, r.Zones[0].Err)
				}
			}
			z := e.c.Stats().Zones[0]
			if z.Down != tt.down || z.ConsecutiveFailures != tt.wantFails {
				t.Errorf("down %v with %d failures in a row, want %v with %d", z.Down, z.ConsecutiveFailures, tt.down, tt.wantFails)
			}
			if got := strings.Count(e.logs.String(), "zone down"); got != map[bool]int{true: 1}[tt.down] {
				t.Errorf("%d 'zone down' logs:\n%s", got, e.logs)
			}
			if tt.down {
				return
			}
			// Once the last failure is stale too, the count shows 0 and a
			// new failure starts a run of its own.
			e.clock.Advance(backoff + time.Second)
			if z := e.c.Stats().Zones[0]; z.ConsecutiveFailures != 0 || z.Down {
				t.Errorf("a backoff after the last failure: %+v", z)
			}
			q := e.srv.Queries("bl.test")
			e.lookup(t, ip4(50).String())
			if z := e.c.Stats().Zones[0]; e.srv.Queries("bl.test") != q+1 || z.ConsecutiveFailures != 1 || z.Down {
				t.Errorf("a failure after stale ones: %d queries, %+v", e.srv.Queries("bl.test")-q, z)
			}
		})
	}
}

// A cached answer never stands in for the probe: while a zone is down,
// cache hits past the end of the backoff leave the probe to the next lookup
// that misses the cache, and that lookup really queries.
func TestBreakerCacheHitIsNotTheProbe(t *testing.T) {
	e := newEnv(t, []string{"bl.test*3"}, func(c *Config) { c.QueryTimeout = 100 * time.Millisecond })
	listed := ip4(200)
	e.srv.Set(QueryName(listed, "bl.test"), addrs("127.0.0.2"), time.Hour)
	if r := e.lookup(t, listed.String()); !r.Listed {
		t.Fatalf("listed client: %+v", r)
	}
	e.srv.SetServfail("bl.test")
	failZone(t, e, "bl.test", ErrServFail, 1)
	e.clock.Advance(31 * time.Second) // past the backoff: a probe is due
	q := e.srv.Queries("bl.test")
	for range 3 {
		if r := e.lookup(t, listed.String()); !r.Listed || !r.Zones[0].Cached || r.Unknown {
			t.Fatalf("cached listing while down: %+v", r.Zones[0])
		}
	}
	if e.srv.Queries("bl.test") != q {
		t.Fatalf("cache hits queried the zone")
	}
	r := e.lookup(t, ip4(201).String())
	if !errors.Is(r.Zones[0].Err, ErrServFail) || e.srv.Queries("bl.test") != q+1 {
		t.Fatalf("first cache miss after the backoff: %v, %d queries; want the probe (SERVFAIL, 1 query)", r.Zones[0].Err, e.srv.Queries("bl.test")-q)
	}
	if r := e.lookup(t, ip4(202).String()); !errors.Is(r.Zones[0].Err, ErrZoneDown) {
		t.Fatalf("after the failed probe: %v", r.Zones[0].Err)
	}

	// The probe's own flight finds the answer in the cache, stored by
	// another flight between the lookup's cache miss and its flight (a
	// race, staged here): no query tested the zone, so the probe is handed
	// back and the next lookup that misses the cache probes.
	e.clock.Advance(31 * time.Second)
	l, now, raced := e.c.lists[0], e.clock.Now(), ip4(203)
	probe, zerr := l.admit(now, e.c.backoff)
	if !probe || zerr != nil {
		t.Fatalf("admit after the backoff = %v, %v; want the probe", probe, zerr)
	}
	e.c.store(raced, 0, &entry{query: "raced", expires: now.Add(time.Hour)})
	q = e.srv.Queries("bl.test")
	res := Result{IP: raced, Zones: make([]ZoneResult, 1)}
	e.c.resolve(context.Background(), &res, raced, []int{0}, []bool{true}, now)
	if !res.Zones[0].Cached || e.srv.Queries("bl.test") != q {
		t.Fatalf("staged race: %+v, %d queries", res.Zones[0], e.srv.Queries("bl.test")-q)
	}
	if z := e.c.Stats().Zones[0]; !z.Down || !z.NextProbe.Equal(now) {
		t.Errorf("after a probe answered from the cache: %+v, want the probe due at %v", z, now)
	}
	r = e.lookup(t, ip4(204).String())
	if !errors.Is(r.Zones[0].Err, ErrServFail) || e.srv.Queries("bl.test") != q+1 {
		t.Errorf("next cache miss: %v, %d queries; want the probe", r.Zones[0].Err, e.srv.Queries("bl.test")-q)
	}
}
