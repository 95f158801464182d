package dnsbl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/dnstest"
	"github.com/miekg/dns"
)

// fakeClock is an injectable clock that moves only when told.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *fakeClock {
	return &fakeClock{t: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// logBuffer collects log output from concurrent goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// env is a Checker wired to a loopback DNS server, a fake clock and a log
// buffer.
type env struct {
	srv   *dnstest.Server
	clock *fakeClock
	logs  *logBuffer
	c     *Checker
}

func newEnv(t testing.TB, zones []string, tweak func(*Config)) *env {
	t.Helper()
	e := &env{srv: dnstest.Start(t), clock: newClock(), logs: &logBuffer{}}
	cfg := DefaultConfig()
	cfg.Zones = zones
	cfg.Resolvers = []string{e.srv.Addr()}
	cfg.QueryTimeout = 500 * time.Millisecond
	cfg.Now = e.clock.Now
	cfg.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.c = c
	return e
}

func (e *env) lookup(t testing.TB, ip string) Result {
	t.Helper()
	r, err := e.c.Lookup(context.Background(), netip.MustParseAddr(ip))
	if err != nil {
		t.Fatalf("Lookup(%s): %v", ip, err)
	}
	return r
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

var threeZones = []string{
	"zen.spamhaus.org=127.0.0.[2..11]*3",
	"bl.spamcop.net*2",
	"list.dnswl.org=127.0.[0..255].[1..3]*-5",
}

func TestLookupScoring(t *testing.T) {
	tests := []struct {
		name    string
		zen     []string
		spamcop []string
		dnswl   []string
		score   float64
		listed  bool
		matched []string
	}{
		{name: "clean", score: 0},
		{name: "zen sbl", zen: []string{"127.0.0.2"}, score: 3, listed: true, matched: []string{"zen.spamhaus.org"}},
		// Several matching codes count the zone's weight once (postscreen:
		// "applies the weight at most once").
		{name: "zen several codes", zen: []string{"127.0.0.2", "127.0.0.4", "127.0.0.10"}, score: 3, listed: true, matched: []string{"zen.spamhaus.org"}},
		{name: "zen code outside filter", zen: []string{"127.0.0.1"}, score: 0},
		{name: "zen code 12 outside filter", zen: []string{"127.0.0.12"}, score: 0},
		{name: "spamcop only", spamcop: []string{"127.0.0.2"}, score: 2, matched: []string{"bl.spamcop.net"}},
		{name: "both", zen: []string{"127.0.0.4"}, spamcop: []string{"127.0.0.2"}, score: 5, listed: true, matched: []string{"zen.spamhaus.org", "bl.spamcop.net"}},
		{name: "allowlisted", zen: []string{"127.0.0.10"}, dnswl: []string{"127.0.10.2"}, score: -2, matched: []string{"zen.spamhaus.org", "list.dnswl.org"}},
		{name: "dnswl code outside filter", dnswl: []string{"127.0.10.0"}, score: 0},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, threeZones, nil)
			ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)})
			for zone, codes := range map[string][]string{"zen.spamhaus.org": tt.zen, "bl.spamcop.net": tt.spamcop, "list.dnswl.org": tt.dnswl} {
				if codes != nil {
					e.srv.Set(QueryName(ip, zone), addrs(codes...), 300*time.Second)
				}
			}
			r := e.lookup(t, ip.String())
			if r.Score != tt.score || r.Listed != tt.listed || r.Unknown {
				t.Errorf("score %v listed %v unknown %v, want %v %v false: %+v", r.Score, r.Listed, r.Unknown, tt.score, tt.listed, r)
			}
			if got := strings.Join(r.MatchedZones(), ","); got != strings.Join(tt.matched, ",") {
				t.Errorf("MatchedZones = %q, want %q", got, tt.matched)
			}
			if len(r.Zones) != 3 || r.Zones[0].Zone != "zen.spamhaus.org" || r.Zones[2].Spec != threeZones[2] {
				t.Errorf("zones not in configuration order: %+v", r.Zones)
			}
		})
	}
}

// One domain configured twice with different filters is queried once and
// scored per entry.
func TestSameDomainTwice(t *testing.T) {
	e := newEnv(t, []string{"zen.spamhaus.org=127.0.0.[2..3]*3", "zen.spamhaus.org=127.0.0.[10..11]*0.5"}, func(c *Config) { c.Threshold = 3.5 })
	ip := netip.MustParseAddr("192.0.2.7")
	e.srv.Set(QueryName(ip, "zen.spamhaus.org"), addrs("127.0.0.2", "127.0.0.11"), time.Minute)
	r := e.lookup(t, ip.String())
	if r.Score != 3.5 || !r.Listed {
		t.Errorf("score %v listed %v, want 3.5 true", r.Score, r.Listed)
	}
	if n := e.srv.Queries("zen.spamhaus.org"); n != 1 {
		t.Errorf("server saw %d queries, want 1", n)
	}
	if got := r.MatchedZones(); len(got) != 1 {
		t.Errorf("MatchedZones = %q, want one entry", got)
	}
}

func TestConcurrentLookupsShareOneQuery(t *testing.T) {
	e := newEnv(t, threeZones, nil)
	ip := netip.MustParseAddr("198.51.100.7")
	e.srv.Set(QueryName(ip, "zen.spamhaus.org"), addrs("127.0.0.4"), time.Hour)
	for _, z := range []string{"zen.spamhaus.org", "bl.spamcop.net", "list.dnswl.org"} {
		e.srv.SetLatency(z, 100*time.Millisecond)
	}
	const n = 100
	var wg sync.WaitGroup
	results := make([]Result, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := e.c.Lookup(context.Background(), ip)
			if err != nil {
				t.Error(err)
			}
			results[i] = r
		}()
	}
	close(start)
	wg.Wait()
	for _, z := range []string{"zen.spamhaus.org", "bl.spamcop.net", "list.dnswl.org"} {
		if q := e.srv.Queries(z); q != 1 {
			t.Errorf("%s: server saw %d queries for %d concurrent lookups, want 1", z, q, n)
		}
	}
	for i, r := range results {
		if !r.Listed || r.Score != 3 || r.Unknown {
			t.Fatalf("lookup %d: %+v", i, r)
		}
	}
	if s := e.c.Stats(); s.Queries != 3 || s.Lookups != n {
		t.Errorf("stats: %d queries, %d lookups; want 3, %d", s.Queries, s.Lookups, n)
	}
}

// A caller whose context ends must not fail the shared query for others.
func TestCallerDeadlineDoesNotCancelSharedQuery(t *testing.T) {
	e := newEnv(t, []string{"bl.test*3"}, nil)
	ip := netip.MustParseAddr("192.0.2.9")
	e.srv.Set(QueryName(ip, "bl.test"), addrs("127.0.0.2"), time.Hour)
	e.srv.SetLatency("bl.test", 150*time.Millisecond)

	short, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	var shortRes, longRes Result
	wg.Add(1)
	go func() { defer wg.Done(); shortRes, _ = e.c.Lookup(short, ip) }()
	time.Sleep(5 * time.Millisecond)
	wg.Add(1)
	go func() { defer wg.Done(); longRes, _ = e.c.Lookup(context.Background(), ip) }()
	wg.Wait()

	if !shortRes.Unknown || !errors.Is(shortRes.Zones[0].Err, ErrDeadline) {
		t.Errorf("short caller: want unknown with ErrDeadline, got %+v", shortRes.Zones[0])
	}
	if !longRes.Listed || longRes.Unknown {
		t.Errorf("patient caller: want listed, got %+v (err %v)", longRes, longRes.Err())
	}
	if q := e.srv.Queries("bl.test"); q != 1 {
		t.Errorf("server saw %d queries, want 1", q)
	}
	// The answer reached the cache although the first caller gave up.
	if r := e.lookup(t, ip.String()); !r.Zones[0].Cached || !r.Listed {
		t.Errorf("third lookup not served listed from cache: %+v", r.Zones[0])
	}
}

func TestCacheTTL(t *testing.T) {
	tests := []struct {
		name    string
		ttl     time.Duration // DNS TTL sent
		nx      bool          // NXDOMAIN with SOA(ttl, minimum)
		soaTTL  time.Duration
		soaMin  time.Duration
		noSOA   bool
		want    time.Duration // effective cache time
		minTTL  time.Duration
		maxTTL  time.Duration
		negTTL  time.Duration
		matched bool
	}{
		{name: "positive ttl", ttl: 300 * time.Second, want: 300 * time.Second, matched: true},
		{name: "positive ttl clamped up to min", ttl: 5 * time.Second, want: time.Minute, matched: true},
		{name: "positive ttl clamped down to max", ttl: 86400 * time.Second, want: time.Hour, matched: true},
		{name: "positive ttl 0", ttl: 0, want: time.Minute, matched: true},
		{name: "negative from soa minimum", nx: true, soaTTL: 900 * time.Second, soaMin: 300 * time.Second, want: 300 * time.Second},
		{name: "negative from soa ttl", nx: true, soaTTL: 200 * time.Second, soaMin: 3600 * time.Second, want: 200 * time.Second},
		{name: "negative clamped up", nx: true, soaTTL: 10 * time.Second, soaMin: 10 * time.Second, want: time.Minute},
		{name: "negative clamped down", nx: true, soaTTL: 86400 * time.Second, soaMin: 86400 * time.Second, want: time.Hour},
		{name: "negative without soa", nx: true, noSOA: true, want: 7 * time.Minute},
		{name: "custom clamp", ttl: 30 * time.Second, minTTL: 10 * time.Second, maxTTL: 20 * time.Second, want: 20 * time.Second, matched: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, []string{"bl.test=127.0.0.2"}, func(c *Config) {
				c.NegativeTTL = 7 * time.Minute
				if tt.maxTTL > 0 {
					c.MinTTL, c.MaxTTL = tt.minTTL, tt.maxTTL
				}
			})
			ip := netip.MustParseAddr("203.0.113.5")
			name := QueryName(ip, "bl.test")
			if tt.nx {
				var soa *dns.SOA
				if !tt.noSOA {
					soa = dnstest.SOA("bl.test", tt.soaTTL, tt.soaMin)
				}
				e.srv.SetNXDOMAIN("bl.test", soa)
			} else {
				e.srv.Set(name, addrs("127.0.0.2"), tt.ttl)
			}
			r := e.lookup(t, ip.String())
			if r.Zones[0].Matched != tt.matched || r.Zones[0].Err != nil {
				t.Fatalf("first lookup: %+v", r.Zones[0])
			}
			if r.Zones[0].TTL != tt.want {
				t.Errorf("TTL %v, want %v", r.Zones[0].TTL, tt.want)
			}
			if q := e.srv.Queries(name); q != 1 {
				t.Fatalf("%d queries after first lookup", q)
			}
			e.clock.Advance(tt.want - time.Second)
			r = e.lookup(t, ip.String())
			if !r.Zones[0].Cached || r.Zones[0].Matched != tt.matched || r.Zones[0].TTL != time.Second {
				t.Errorf("before expiry: want cached with 1s left, got %+v", r.Zones[0])
			}
			if q := e.srv.Queries(name); q != 1 {
				t.Errorf("before expiry: %d queries, want 1", q)
			}
			e.clock.Advance(time.Second)
			r = e.lookup(t, ip.String())
			if r.Zones[0].Cached {
				t.Errorf("after expiry: still cached")
			}
			if q := e.srv.Queries(name); q != 2 {
				t.Errorf("after expiry: %d queries, want 2", q)
			}
		})
	}
}

func TestCacheDisabled(t *testing.T) {
	e := newEnv(t, []string{"bl.test"}, func(c *Config) { c.CacheSize = 0 })
	for range 3 {
		e.lookup(t, "192.0.2.1")
	}
	if q := e.srv.Queries("bl.test"); q != 3 {
		t.Errorf("%d queries with cache off, want 3", q)
	}
}

func TestErrorsAreUnknownAndNotCached(t *testing.T) {
	tests := []struct {
		name  string
		setup func(s *dnstest.Server)
		want  error
	}{
		{"servfail", func(s *dnstest.Server) { s.SetServfail("bl.test") }, ErrServFail},
		{"refused", func(s *dnstest.Server) { s.SetRcode("bl.test", dns.RcodeRefused) }, ErrRefused},
		{"notimp", func(s *dnstest.Server) { s.SetRcode("bl.test", dns.RcodeNotImplemented) }, ErrRcode},
		{"timeout", func(s *dnstest.Server) { s.Drop("bl.test", true) }, ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, []string{"bl.test"}, func(c *Config) { c.QueryTimeout = 100 * time.Millisecond })
			tt.setup(e.srv)
			for i := 1; i <= 2; i++ {
				r := e.lookup(t, "192.0.2.1")
				if !r.Unknown || r.Listed || !errors.Is(r.Err(), tt.want) || !errors.Is(r.Zones[0].Err, tt.want) {
					t.Fatalf("lookup %d: want unknown, not listed, %v; got %+v", i, tt.want, r)
				}
				var ze *ZoneError
				if !errors.As(r.Zones[0].Err, &ze) || ze.Zone != "bl.test" {
					t.Errorf("error %v is not a *ZoneError for bl.test", r.Zones[0].Err)
				}
				if q := e.srv.Queries("bl.test"); q != i {
					t.Errorf("lookup %d: %d queries; errors must not be cached", i, q)
				}
			}
			st := e.c.Stats()
			if st.Zones[0].Errors != 2 || !st.Zones[0].Failing || st.Zones[0].LastErrorText == "" || st.Unknown != 2 {
				t.Errorf("stats: %+v", st)
			}
			// Fixed: the next lookup answers.
			e.srv.SetRcode("bl.test", 0)
			e.srv.Drop("bl.test", false)
			if r := e.lookup(t, "192.0.2.1"); r.Unknown {
				t.Errorf("after the fix: %v", r.Err())
			}
			if st := e.c.Stats(); st.Zones[0].Failing {
				t.Error("zone still failing after a good answer")
			}
		})
	}
}

// Spamhaus error codes (and any 127.255.255.x) are errors, never listings.
func TestErrorCodesNeverList(t *testing.T) {
	codes := []string{"127.255.255.252", "127.255.255.254", "127.255.255.255", "127.255.255.250", "127.255.255.251", "127.255.255.1"}
	for _, code := range codes {
		for _, zone := range []string{"zen.spamhaus.org=127.0.0.[2..11]*3", "zen.spamhaus.org*3", "zen.spamhaus.org=127.[0..255].[0..255].[0..255]*3"} {
			t.Run(code+"/"+zone, func(t *testing.T) {
				e := newEnv(t, []string{zone}, nil)
				ip := netip.MustParseAddr("192.0.2.44")
				name := QueryName(ip, "zen.spamhaus.org")
				// Mixed with a real code: the reply as a whole is untrustworthy.
				e.srv.Set(name, addrs(code, "127.0.0.2"), time.Hour)
				r := e.lookup(t, ip.String())
				z := r.Zones[0]
				if r.Listed || z.Matched || r.Score != 0 || !r.Unknown || !errors.Is(z.Err, ErrBlocked) {
					t.Fatalf("want unknown with ErrBlocked, got %+v", r)
				}
				if !strings.Contains(z.Err.Error(), code) || !strings.Contains(z.Err.Error(), "fix: ") {
					t.Errorf("error %q lacks the code or the fix", z.Err)
				}
				if len(z.Answers) == 0 {
					t.Error("answers not reported")
				}
				if z.Listing(&Filter{}) {
					t.Error("Listing() true on an error reply")
				}
				e.lookup(t, ip.String())
				if q := e.srv.Queries(name); q != 2 {
					t.Errorf("%d queries; error replies must not be cached", q)
				}
				st := e.c.Stats()
				if st.Errors.Blocked != 2 || !strings.Contains(st.Zones[0].LastErrorText, code) {
					t.Errorf("stats: %+v", st)
				}
			})
		}
	}
}

func TestBlockedLoggedOncePerInterval(t *testing.T) {
	e := newEnv(t, []string{"zen.spamhaus.org=127.0.0.[2..11]*3"}, nil)
	e.srv.SetHandler("zen.spamhaus.org", func(req *dns.Msg) *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: req.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: []byte{127, 255, 255, 254}}}
		return m
	})
	count := func() int { return strings.Count(e.logs.String(), "level=ERROR") }
	for i := range 5 {
		e.lookup(t, netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String())
	}
	if n := count(); n != 1 {
		t.Fatalf("%d error logs for 5 blocked lookups within the interval, want 1:\n%s", n, e.logs)
	}
	if !strings.Contains(e.logs.String(), "public/open resolver") || !strings.Contains(e.logs.String(), "unbound") {
		t.Errorf("log lacks the fix: %s", e.logs)
	}
	e.clock.Advance(10 * time.Minute)
	e.lookup(t, "192.0.2.200")
	if n := count(); n != 2 {
		t.Errorf("%d error logs after the interval, want 2", n)
	}
}

func TestIPv6(t *testing.T) {
	tests := []struct {
		ip   string
		want string
	}{
		{"2001:db8::1", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.zen.spamhaus.org."},
		{"2001:db8:abcd:12::ff00", "0.0.f.f.0.0.0.0.0.0.0.0.0.0.0.0.2.1.0.0.d.c.b.a.8.b.d.0.1.0.0.2.zen.spamhaus.org."},
		{"192.0.2.99", "99.2.0.192.zen.spamhaus.org."},
		{"::ffff:192.0.2.99", "99.2.0.192.zen.spamhaus.org."},
		{"10.200.0.255", "255.0.200.10.zen.spamhaus.org."},
	}
	for _, tt := range tests {
		t.Run(tt.ip, func(t *testing.T) {
			if got := QueryName(netip.MustParseAddr(tt.ip), "zen.spamhaus.org"); got != tt.want {
				t.Errorf("QueryName = %q, want %q", got, tt.want)
			}
		})
	}
	e := newEnv(t, []string{"zen.spamhaus.org=127.0.0.[2..11]*3"}, nil)
	e.srv.Set(tests[0].want, addrs("127.0.0.3"), time.Hour)
	r := e.lookup(t, "2001:db8::1")
	if !r.Listed || r.Zones[0].Query != strings.TrimSuffix(tests[0].want, ".") {
		t.Errorf("IPv6 lookup: %+v", r)
	}
	// A mapped address is looked up and cached as IPv4.
	e.srv.Set(tests[3].want, addrs("127.0.0.2"), time.Hour)
	r = e.lookup(t, "::ffff:192.0.2.99")
	if !r.Listed || r.IP != netip.MustParseAddr("192.0.2.99") {
		t.Errorf("mapped lookup: %+v", r)
	}
	if r := e.lookup(t, "192.0.2.99"); !r.Zones[0].Cached {
		t.Error("IPv4 form not served from the mapped lookup's cache entry")
	}
	if _, err := e.c.Lookup(context.Background(), netip.Addr{}); err == nil {
		t.Error("invalid address accepted")
	}
}

const testKey = "abcdefghijklmnopqrstuvwx23"

func TestDQSKeyMasked(t *testing.T) {
	e := newEnv(t, []string{"zen.spamhaus.org=127.0.0.[2..11]*3", "dbl.spamhaus.org*1", "bl.test*1"}, func(c *Config) {
		c.DQSKey = testKey
		c.QueryTimeout = 100 * time.Millisecond
	})
	ip := netip.MustParseAddr("192.0.2.5")
	real := QueryName(ip, testKey+".zen.dq.spamhaus.net")
	if real != "5.2.0.192."+testKey+".zen.dq.spamhaus.net." {
		t.Fatalf("DQS name %q", real)
	}
	e.srv.Set(real, addrs("127.0.0.2"), time.Hour)
	e.srv.Drop(testKey+".dbl.dq.spamhaus.net", true) // times out: error text
	e.srv.Set(QueryName(ip, "bl.test"), addrs("127.255.255.250"), time.Hour)

	r := e.lookup(t, ip.String())
	if !r.Listed || r.Score != 3 {
		t.Fatalf("DQS lookup not listed: %+v", r)
	}
	if e.srv.Queries(real) != 1 || e.srv.Queries("zen.spamhaus.org") != 0 {
		t.Errorf("queries: dqs %d, plain %d", e.srv.Queries(real), e.srv.Queries("zen.spamhaus.org"))
	}
	if got, want := r.Zones[0].Query, "5.2.0.192.<key>.zen.dq.spamhaus.net"; got != want {
		t.Errorf("shown query %q, want %q", got, want)
	}
	if r.Zones[0].Zone != "zen.spamhaus.org" {
		t.Errorf("zone %q, want the configured name", r.Zones[0].Zone)
	}
	if !errors.Is(r.Zones[1].Err, ErrTimeout) || !errors.Is(r.Zones[2].Err, ErrBlocked) {
		t.Errorf("want a timeout and a blocked error, got %v / %v", r.Zones[1].Err, r.Zones[2].Err)
	}

	var out strings.Builder
	if err := WriteReport(&out, r); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	stats, _ := json.Marshal(e.c.Stats())
	for what, s := range map[string]string{
		"report": out.String(), "json": string(js), "logs": e.logs.String(),
		"err": r.Err().Error(), "stats": string(stats),
	} {
		if strings.Contains(s, testKey) {
			t.Errorf("%s shows the DQS key:\n%s", what, s)
		}
		if what != "err" && what != "logs" && !strings.Contains(s, "<key>") && !strings.Contains(s, `\u003ckey\u003e`) {
			t.Errorf("%s lacks the masked name:\n%s", what, s)
		}
	}
	// Configuration errors about the key do not echo it either.
	cfg := DefaultConfig()
	cfg.DQSKey = testKey + "!"
	if err := cfg.Validate(); err == nil || strings.Contains(err.Error(), testKey) || !strings.Contains(err.Error(), "dqs_key") {
		t.Errorf("Validate: %v", err)
	}
}

// A zone that times out does not hold up the others beyond the query
// timeout, and the caller's deadline bounds the whole lookup.
func TestSlowZoneIsolated(t *testing.T) {
	e := newEnv(t, []string{"slow.test*1", "fast.test*1", "dead.test*1"}, func(c *Config) { c.QueryTimeout = 300 * time.Millisecond })
	ip := netip.MustParseAddr("192.0.2.77")
	e.srv.Set(QueryName(ip, "fast.test"), addrs("127.0.0.2"), time.Hour)
	e.srv.SetLatency("slow.test", 100*time.Millisecond)
	e.srv.Drop("dead.test", true)

	start := time.Now()
	r := e.lookup(t, ip.String())
	took := time.Since(start)
	if took < 300*time.Millisecond || took > 600*time.Millisecond {
		t.Errorf("lookup took %v; want about the 300ms query timeout", took)
	}
	if !r.Unknown || !errors.Is(r.Zones[2].Err, ErrTimeout) || r.Zones[0].Err != nil || !r.Zones[1].Matched {
		t.Errorf("result: %+v", r)
	}

	// With a caller deadline shorter than the timeout, Lookup returns at
	// the deadline with what it has.
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	ip2 := netip.MustParseAddr("192.0.2.78")
	start = time.Now()
	r, err := e.c.Lookup(ctx, ip2)
	took = time.Since(start)
	if err != nil || took > 400*time.Millisecond {
		t.Errorf("lookup with 150ms deadline took %v (err %v)", took, err)
	}
	if !errors.Is(r.Zones[2].Err, ErrDeadline) || r.Zones[0].Err != nil || r.Zones[1].Err != nil {
		t.Errorf("deadline result: %+v", r.Zones)
	}
}

func TestResolverFailover(t *testing.T) {
	e := newEnv(t, []string{"bl.test"}, nil)
	second := dnstest.Start(t)
	ip := netip.MustParseAddr("192.0.2.8")
	e.srv.SetServfail("bl.test")
	second.Set(QueryName(ip, "bl.test"), addrs("127.0.0.2"), time.Hour)
	cfg := DefaultConfig()
	cfg.Zones = []string{"bl.test"}
	cfg.Threshold = 1
	cfg.Resolvers = []string{e.srv.Addr(), second.Addr()}
	cfg.Logger = slog.New(slog.NewTextHandler(e.logs, nil))
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	r, _ := c.Lookup(context.Background(), ip)
	if !r.Listed || r.Unknown {
		t.Errorf("failover: %+v", r)
	}
	if e.srv.Queries("bl.test") != 1 || second.Queries("bl.test") != 1 {
		t.Errorf("queries: first %d second %d", e.srv.Queries("bl.test"), second.Queries("bl.test"))
	}
}

func TestTruncatedRetriesOverTCP(t *testing.T) {
	e := newEnv(t, []string{"bl.test=127.0.[0..255].[0..255]*3"}, nil)
	ip := netip.MustParseAddr("192.0.2.10")
	name := QueryName(ip, "bl.test")
	t.Run("tc bit", func(t *testing.T) {
		e.srv.Set(name, addrs("127.0.0.2"), time.Hour)
		e.srv.SetTruncate(name, true)
		r := e.lookup(t, ip.String())
		if !r.Listed || e.srv.Queries(name) != 2 {
			t.Errorf("listed %v after %d queries (want UDP then TCP)", r.Listed, e.srv.Queries(name))
		}
	})
	t.Run("huge answer", func(t *testing.T) {
		ip := netip.MustParseAddr("192.0.2.11")
		name := QueryName(ip, "bl.test")
		var many []netip.Addr
		for i := range 2000 {
			many = append(many, netip.AddrFrom4([4]byte{127, 0, byte(i / 256), byte(i%256 + 0)}))
		}
		e.srv.Set(name, many, time.Hour)
		r := e.lookup(t, ip.String())
		if !r.Listed || len(r.Zones[0].Answers) != maxAnswers {
			t.Errorf("listed %v with %d answers kept, want true and %d (err %v)", r.Listed, len(r.Zones[0].Answers), maxAnswers, r.Err())
		}
	})
}

// Hostile or broken replies never list and never crash.
func TestHostileReplies(t *testing.T) {
	rr := func(s string) dns.RR {
		r, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		return r
	}
	reply := func(edit func(req, m *dns.Msg)) func(*dns.Msg) *dns.Msg {
		return func(req *dns.Msg) *dns.Msg {
			m := new(dns.Msg)
			m.SetReply(req)
			edit(req, m)
			return m
		}
	}
	qn := func(req *dns.Msg) string { return req.Question[0].Name }
	var huge []dns.RR
	for range 1000 {
		huge = append(huge, rr("66.2.0.192.bl.test. 60 IN A 127.0.0.1"), rr("66.2.0.192.bl.test. 60 IN TXT \"x\""))
	}
	tests := []struct {
		name    string
		handler func(*dns.Msg) *dns.Msg
		want    error // nil: answered, not listed
	}{
		{"txt instead of a", reply(func(req, m *dns.Msg) { m.Answer = []dns.RR{rr(qn(req) + " 60 IN TXT \"127.0.0.2\"")} }), nil},
		{"aaaa", reply(func(req, m *dns.Msg) { m.Answer = []dns.RR{rr(qn(req) + " 60 IN AAAA ::ffff:127.0.0.2")} }), nil},
		{"cname elsewhere", reply(func(req, m *dns.Msg) {
			m.Answer = []dns.RR{rr(qn(req) + " 60 IN CNAME evil.example."), rr("evil.example. 60 IN A 127.0.0.2")}
		}), nil},
		{"a for another name", reply(func(req, m *dns.Msg) { m.Answer = []dns.RR{rr("2.0.0.127.bl.test. 60 IN A 127.0.0.2")} }), nil},
		{"a in class chaos", reply(func(req, m *dns.Msg) { m.Answer = []dns.RR{rr(qn(req) + " 60 CH A 127.0.0.2")} }), nil},
		{"nxdomain with answers", reply(func(req, m *dns.Msg) {
			m.Rcode = dns.RcodeNameError
			m.Answer = []dns.RR{rr(qn(req) + " 60 IN A 127.0.0.2")}
		}), nil},
		{"non-127 answer", reply(func(req, m *dns.Msg) { m.Answer = []dns.RR{rr(qn(req) + " 60 IN A 10.1.2.3")} }), ErrBogus},
		{"hijacked nxdomain", reply(func(req, m *dns.Msg) {
			m.Answer = []dns.RR{rr(qn(req) + " 60 IN A 192.0.2.250"), rr(qn(req) + " 60 IN A 198.51.100.1")}
		}), ErrBogus},
		{"other question", reply(func(req, m *dns.Msg) {
			m.Question[0].Name = "2.0.0.127.bl.test."
			m.Answer = []dns.RR{rr("2.0.0.127.bl.test. 60 IN A 127.0.0.2")}
		}), ErrMismatch},
		{"no question", reply(func(req, m *dns.Msg) {
			m.Question = nil
			m.Answer = []dns.RR{rr(qn(req) + " 60 IN A 127.0.0.2")}
		}), ErrMismatch},
		{"other qtype", reply(func(req, m *dns.Msg) {
			m.Question[0].Qtype = dns.TypeTXT
			m.Answer = []dns.RR{rr(qn(req) + " 60 IN A 127.0.0.2")}
		}), ErrMismatch},
		{"not a response", reply(func(req, m *dns.Msg) {
			m.Response = false
			m.Answer = []dns.RR{rr(qn(req) + " 60 IN A 127.0.0.2")}
		}), ErrMismatch},
		{"wrong id", reply(func(req, m *dns.Msg) {
			m.Id = req.Id + 1
			m.Answer = []dns.RR{rr(qn(req) + " 60 IN A 127.0.0.2")}
		}), ErrTimeout},
		// An oversized datagram without TC: the client reads the first 512
		// bytes, which end inside a record.
		{"huge udp datagram", reply(func(req, m *dns.Msg) {
			m.Compress = true
			m.Answer = huge
		}), ErrNetwork},
		{"servfail with answers", reply(func(req, m *dns.Msg) {
			m.Rcode = dns.RcodeServerFailure
			m.Answer = []dns.RR{rr(qn(req) + " 60 IN A 127.0.0.2")}
		}), ErrServFail},
		{"mixed case name", reply(func(req, m *dns.Msg) {
			m.Answer = []dns.RR{rr(strings.ToUpper(qn(req)) + " 60 IN A 127.0.0.1")}
		}), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, []string{"bl.test=127.0.0.[2..255]*5"}, func(c *Config) { c.QueryTimeout = 150 * time.Millisecond })
			e.srv.SetHandler("bl.test", tt.handler)
			r := e.lookup(t, "192.0.2.66")
			z := r.Zones[0]
			if r.Listed || z.Matched || r.Score != 0 {
				t.Fatalf("hostile reply listed: %+v", r)
			}
			if tt.want == nil && z.Err != nil {
				t.Errorf("want answered, not listed; got error %v", z.Err)
			}
			if tt.want != nil && !errors.Is(z.Err, tt.want) {
				t.Errorf("want %v, got %v", tt.want, z.Err)
			}
		})
	}
}

func TestMixedBogusAnswerLogged(t *testing.T) {
	e := newEnv(t, []string{"bl.test*3"}, nil)
	ip := netip.MustParseAddr("192.0.2.3")
	e.srv.Set(QueryName(ip, "bl.test"), addrs("10.0.0.1", "127.0.0.2"), time.Hour)
	r := e.lookup(t, ip.String())
	if !r.Listed || r.Unknown {
		t.Errorf("the 127.0.0.2 answer must still count: %+v", r)
	}
	if !strings.Contains(e.logs.String(), "outside 127.0.0.0/8") {
		t.Errorf("bogus answer not logged: %s", e.logs)
	}
}

func TestNoZones(t *testing.T) {
	e := newEnv(t, nil, nil)
	r := e.lookup(t, "192.0.2.1")
	if r.Listed || r.Unknown || len(r.Zones) != 0 || e.srv.TotalQueries() != 0 {
		t.Errorf("no zones: %+v", r)
	}
}

func TestJSON(t *testing.T) {
	e := newEnv(t, threeZones, nil)
	ip := netip.MustParseAddr("192.0.2.20")
	e.srv.Set(QueryName(ip, "zen.spamhaus.org"), addrs("127.0.0.4"), 300*time.Second)
	e.srv.SetServfail("bl.spamcop.net")
	r := e.lookup(t, ip.String())
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		IP        string  `json:"ip"`
		Score     float64 `json:"score"`
		Threshold float64 `json:"threshold"`
		Listed    bool    `json:"listed"`
		Unknown   bool    `json:"unknown"`
		Zones     []struct {
			Zone       string   `json:"zone"`
			Query      string   `json:"query"`
			Answers    []string `json:"answers"`
			TTLSeconds int      `json:"ttl_seconds"`
			Weight     float64  `json:"weight"`
			Matched    bool     `json:"matched"`
			Error      string   `json:"error"`
		} `json:"zones"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v in %s", err, b)
	}
	if got.IP != "192.0.2.20" || got.Score != 3 || !got.Listed || !got.Unknown || len(got.Zones) != 3 {
		t.Errorf("json: %s", b)
	}
	z := got.Zones[0]
	if z.Query != "20.2.0.192.zen.spamhaus.org" || z.Answers[0] != "127.0.0.4" || z.TTLSeconds != 300 || z.Weight != 3 || !z.Matched {
		t.Errorf("zone json: %+v", z)
	}
	if !strings.Contains(got.Zones[1].Error, "SERVFAIL") || got.Zones[2].Answers == nil {
		t.Errorf("zones json: %s", b)
	}
}

func TestImmediateListing(t *testing.T) {
	e := newEnv(t, []string{DefaultZone}, nil)
	ip := netip.MustParseAddr("192.0.2.30")
	e.srv.Set(QueryName(ip, "zen.spamhaus.org"), addrs("127.0.0.10", "127.0.0.4"), time.Hour)
	r := e.lookup(t, ip.String())
	xbl, _ := ParseFilter("127.0.0.[4..7]")
	sbl, _ := ParseFilter("127.0.0.2")
	if !r.Zones[0].Listing(&xbl) || r.Zones[0].Listing(&sbl) {
		t.Errorf("Listing: %+v", r.Zones[0])
	}
}

func TestNewResolvConf(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(good, []byte("# local unbound\nnameserver 127.0.0.1\nnameserver ::1\nsearch example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty.conf")
	if err := os.WriteFile(empty, []byte("search example.org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path    string
		want    string
		wantErr string
	}{
		{good, "127.0.0.1:53 [::1]:53", ""},
		{empty, "", "no nameserver"},
		{filepath.Join(dir, "missing"), "", "no such file"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.ResolvConf = tt.path
			c, err := New(cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "resolv_conf") {
					t.Fatalf("New: %v, want error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(c.Resolvers(), " "); got != tt.want {
				t.Errorf("resolvers %q, want %q", got, tt.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // "" = valid
	}{
		{"default", func(*Config) {}, ""},
		{"no zones", func(c *Config) { c.Zones = nil }, ""},
		{"bad zone", func(c *Config) { c.Zones = []string{"zen.spamhaus.org", "bad=1.2.3"} }, "zones[1]: zone \"bad=1.2.3\""},
		{"duplicate zone", func(c *Config) { c.Zones = []string{"a.test*1", "A.test.*1"} }, "zones[1]: \"A.test.*1\" repeats zones[0]"},
		{"zero threshold", func(c *Config) { c.Threshold = 0 }, "threshold: must be > 0"},
		{"bad resolver", func(c *Config) { c.Resolvers = []string{"dns.google"} }, "resolvers[0]: resolver \"dns.google\""},
		{"resolver ip", func(c *Config) { c.Resolvers = []string{"127.0.0.1", "::1", "[::1]:5353", "127.0.0.1:5353"} }, ""},
		{"resolver port 0", func(c *Config) { c.Resolvers = []string{"127.0.0.1:0"} }, "port 0"},
		{"no resolv_conf", func(c *Config) { c.ResolvConf = "" }, "resolv_conf: must be set"},
		{"query timeout", func(c *Config) { c.QueryTimeout = 0 }, "query_timeout: must be > 0"},
		{"cache size", func(c *Config) { c.CacheSize = -1 }, "cache_size: must be >= 0"},
		{"min ttl", func(c *Config) { c.MinTTL = -time.Second }, "min_ttl: must be >= 0"},
		{"max below min", func(c *Config) { c.MaxTTL = time.Second }, "max_ttl: must be >= min_ttl"},
		{"negative ttl", func(c *Config) { c.NegativeTTL = -1 }, "negative_ttl: must be >= 0"},
		{"log interval", func(c *Config) { c.ErrorLogInterval = -1 }, "error_log_interval: must be >= 0"},
		{"failure backoff", func(c *Config) { c.FailureBackoff = -time.Second }, "failure_backoff: must be >= 0"},
		{"failure backoff off", func(c *Config) { c.FailureBackoff = 0 }, ""},
		{"dqs key", func(c *Config) { c.DQSKey = "has.dot" }, "dqs_key: must be letters and digits"},
		{"dqs key long", func(c *Config) { c.DQSKey = strings.Repeat("a", 64) }, "dqs_key: must be at most 63"},
		{"name too long", func(c *Config) {
			c.Zones = []string{strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + ".test"}
		}, "too long"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.edit(&cfg)
			err := cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate: %v, want %q", err, tt.want)
			}
			if _, err := New(cfg); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestConfigWarnings(t *testing.T) {
	logs := &logBuffer{}
	cfg := DefaultConfig()
	cfg.Zones = []string{DefaultZone, "cbl.abuseat.org"}
	cfg.Resolvers = []string{"8.8.8.8"}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, nil))
	if _, err := New(cfg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cbl.abuseat.org is the Spamhaus XBL", "public resolvers"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("no warning %q in %s", want, logs)
		}
	}
}
