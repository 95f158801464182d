package dnsbl

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// A lookup answered wholly from the cache allocates nothing, and counts in
// Stats as a hit of every zone, as a lookup, and as a listing of the zones
// that matched.
func TestCacheHitStats(t *testing.T) {
	e := newEnv(t, threeZones, nil)
	ip := netip.MustParseAddr("192.0.2.7")
	e.srv.Set(QueryName(ip, "zen.spamhaus.org"), addrs("127.0.0.2"), time.Hour)
	if r := e.lookup(t, ip.String()); !r.Listed || r.Zones[0].Cached {
		t.Fatalf("first lookup: %+v", r)
	}
	ctx := context.Background()
	const hits = 10
	for range hits {
		r, _ := e.c.Lookup(ctx, ip)
		if !r.Listed || r.Score != 3 || r.Unknown || len(r.Zones) != 3 {
			t.Fatalf("cached lookup: %+v", r)
		}
		for i, z := range r.Zones {
			if !z.Cached || z.Err != nil || z.TTL <= 0 || z.Matched != (i == 0) {
				t.Fatalf("cached zone %d: %+v", i, z)
			}
		}
	}
	st := e.c.Stats()
	if st.Lookups != hits+1 || st.Listed != hits+1 || st.CacheHits != 3*hits || st.CacheMisses != 3 || st.Queries != 3 {
		t.Errorf("stats: %+v", st)
	}
	for i, z := range st.Zones {
		wantListings := uint64(0)
		if i == 0 {
			wantListings = hits + 1
		}
		if z.CacheHits != hits || z.CacheMisses != 1 || z.CacheEntries != 1 || z.Listings != wantListings {
			t.Errorf("zone %s: %+v", z.Zone, z)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = e.c.Lookup(ctx, ip) }); n != 0 {
		t.Errorf("cache hit: %v allocations, want 0", n)
	}
}

// The TTL a cache hit reports is the time left in whole seconds, and
// follows the clock although the hit's zones are shared between lookups;
// the earliest expiry of the zones ends the whole-result hit, and only the
// expired zone is asked again.
func TestCacheHitTTLAndPartialExpiry(t *testing.T) {
	e := newEnv(t, []string{"a.test", "b.test"}, nil)
	ip := netip.MustParseAddr("192.0.2.8")
	e.srv.Set(QueryName(ip, "a.test"), addrs("127.0.0.2"), 120*time.Second)
	e.srv.Set(QueryName(ip, "b.test"), addrs("127.0.0.3"), 300*time.Second)
	e.lookup(t, ip.String())
	for _, tt := range []struct {
		advance time.Duration
		a, b    time.Duration
	}{
		{0, 120 * time.Second, 300 * time.Second},
		{500 * time.Millisecond, 119 * time.Second, 299 * time.Second},
		{500 * time.Millisecond, 119 * time.Second, 299 * time.Second},
		{time.Millisecond, 118 * time.Second, 298 * time.Second},
		{118 * time.Second, 0, 180 * time.Second},
	} {
		e.clock.Advance(tt.advance)
		r := e.lookup(t, ip.String())
		if !r.Zones[0].Cached || !r.Zones[1].Cached || r.Zones[0].TTL != tt.a || r.Zones[1].TTL != tt.b {
			t.Fatalf("after %v: TTLs %v, %v (cached %v, %v); want %v, %v", tt.advance,
				r.Zones[0].TTL, r.Zones[1].TTL, r.Zones[0].Cached, r.Zones[1].Cached, tt.a, tt.b)
		}
	}
	e.clock.Advance(time.Second) // a.test expired
	r := e.lookup(t, ip.String())
	if r.Zones[0].Cached || !r.Zones[1].Cached || r.Zones[1].TTL != 179*time.Second || r.Score != 2 {
		t.Fatalf("after a.test expired: %+v", r)
	}
	if qa, qb := e.srv.Queries(QueryName(ip, "a.test")), e.srv.Queries(QueryName(ip, "b.test")); qa != 2 || qb != 1 {
		t.Errorf("queries a %d, b %d; want 2, 1", qa, qb)
	}
	if r := e.lookup(t, ip.String()); !r.Zones[0].Cached || r.Zones[0].TTL != 120*time.Second {
		t.Errorf("after the refresh: %+v", r.Zones[0])
	}
}

// A zone that fails is asked again by the next lookup, while the zones
// that answered are served from the cache.
func TestCachePartialAfterError(t *testing.T) {
	e := newEnv(t, []string{"a.test", "b.test"}, nil)
	ip := netip.MustParseAddr("192.0.2.9")
	e.srv.SetServfail("b.test")
	if r := e.lookup(t, ip.String()); !r.Unknown {
		t.Fatalf("first lookup: %+v", r)
	}
	r := e.lookup(t, ip.String())
	if !r.Unknown || !r.Zones[0].Cached || r.Zones[1].Cached {
		t.Fatalf("second lookup: %+v", r)
	}
	if q := e.srv.Queries(QueryName(ip, "b.test")); q < 2 {
		t.Errorf("failing zone asked %d times, want again", q)
	}
	if z := e.c.Stats().Zones; z[0].CacheEntries != 1 || z[1].CacheEntries != 0 || z[0].CacheHits != 1 {
		t.Errorf("stats: %+v", z)
	}
}

// cache_size bounds the addresses cached; addresses looked up again are
// kept over those seen once.
func TestCacheSizeBound(t *testing.T) {
	const size = 50
	e := newEnv(t, []string{"a.test", "b.test"}, func(c *Config) { c.CacheSize = size })
	hot := ip4(0)
	e.lookup(t, hot.String())
	for i := 1; i <= 4*size; i++ {
		e.lookup(t, ip4(i).String())
		if r := e.lookup(t, hot.String()); !r.Zones[0].Cached || !r.Zones[1].Cached {
			t.Fatalf("hot address evicted after %d others", i)
		}
	}
	st := e.c.Stats()
	for _, z := range st.Zones {
		if z.CacheEntries != size {
			t.Errorf("zone %s: %d entries, want %d", z.Zone, z.CacheEntries, size)
		}
	}
	if st.Lookups != 1+8*size || st.CacheHits != 2*4*size {
		t.Errorf("stats: lookups %d, hits %d", st.Lookups, st.CacheHits)
	}
}

// Hits counted on a record while it is replaced or evicted are not lost.
func TestCacheRetiredHits(t *testing.T) {
	e := newEnv(t, []string{"a.test"}, nil)
	ip := netip.MustParseAddr("192.0.2.10")
	e.lookup(t, ip.String())
	r, whole := e.c.cache.get(ip, e.clock.Now()) // a lookup holding the record
	if !whole {
		t.Fatal("not a whole hit")
	}
	e.c.store(ip, 0, &entry{query: "new", expires: e.clock.Now().Add(time.Hour)})
	if e.c.cache.peek(ip) == r {
		t.Fatal("record not replaced")
	}
	e.c.cache.get(ip, e.clock.Now())
	if r.hits.Add(1)&retired == 0 { // as get does after the replacement
		t.Fatal("replaced record not retired")
	}
	e.c.cache.mu.Lock()
	e.c.cache.fold(r, 1)
	e.c.cache.mu.Unlock()
	if st := e.c.Stats(); st.Lookups != 1+3 || st.Zones[0].CacheHits != 3 || st.Zones[0].CacheEntries != 1 {
		t.Errorf("stats: %+v", st)
	}
}

// Concurrent lookups of many addresses, filling, rebuilding and evicting
// the table while others read it (run with -race).
func TestCacheConcurrent(t *testing.T) {
	const size, n = 300, 1000
	e := newEnv(t, []string{"a.test*3", "b.test"}, func(c *Config) { c.CacheSize = size })
	for i := 0; i < n; i += 3 {
		e.srv.Set(QueryName(ip4(i), "a.test"), addrs("127.0.0.2"), time.Hour)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 2 * n {
				i := (k*7 + g*131) % n
				r, err := e.c.Lookup(context.Background(), ip4(i))
				if err != nil || r.Unknown || r.Listed != (i%3 == 0) {
					t.Errorf("lookup %v: %+v, %v", ip4(i), r, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := e.c.Stats()
	for _, z := range st.Zones {
		if z.CacheEntries > size || z.CacheEntries < size/2 {
			t.Errorf("zone %s: %d entries for cache_size %d", z.Zone, z.CacheEntries, size)
		}
	}
	if st.Lookups != 4*2*n || st.CacheHits+st.CacheMisses != 2*st.Lookups {
		t.Errorf("stats: %+v", st)
	}
}

// Addresses spread over the table's slots whatever bits they differ in.
func TestCacheHashSpread(t *testing.T) {
	for _, tt := range []struct {
		name string
		addr func(i int) netip.Addr
	}{
		{"ipv4 last octets", func(i int) netip.Addr { return netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}) }},
		{"ipv4 first octets", func(i int) netip.Addr { return netip.AddrFrom4([4]byte{byte(i >> 8), byte(i), 0, 1}) }},
		{"ipv6 prefixes", func(i int) netip.Addr {
			return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 8), byte(i), 15: 1})
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			const buckets = 64
			var count [buckets]int
			for i := range 64 * buckets {
				count[hash(tt.addr(i))%buckets]++
			}
			for b, c := range count {
				if c < 32 || c > 96 {
					t.Fatalf("bucket %d has %d of %d addresses (want about 64)", b, c, 64*buckets)
				}
			}
		})
	}
}
