package dnsbl

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// cacheHitKeys is the number of distinct cached addresses the cache-hit
// benchmarks cycle through (a power of two).
const cacheHitKeys = 1024

func cacheHitAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)})
}

// BenchmarkCacheHit measures Lookup answered wholly from the cache, the
// policy service's hot path, beside its floor in the same run: floor-lru is
// one bare golang-lru Get (one mutex) plus an expiry check per lookup on the
// same keys, whatever the number of zones. Both use the real clock. The
// parallel variants run from GOMAXPROCS goroutines, as the policy service
// calls Lookup from many connections.
//
//	go test -run '^$' -bench CacheHit -benchmem -count 8 ./dnsbl/
func BenchmarkCacheHit(b *testing.B) {
	for _, bc := range []struct {
		name  string
		zones []string
	}{
		{"1zone", []string{DefaultZone}},
		{"3zones", threeZones},
	} {
		for _, parallel := range []bool{false, true} {
			name := bc.name
			if parallel {
				name += "-parallel"
			}
			b.Run(name+"/banner", func(b *testing.B) { benchBannerHit(b, bc.zones, parallel) })
			b.Run(name+"/floor-lru", func(b *testing.B) { benchFloorHit(b, parallel) })
		}
	}
}

// run calls op(i) b.N times with i counting up, serially or from parallel
// goroutines each starting at its own offset.
func run(b *testing.B, parallel bool, op func(i int)) {
	b.ReportAllocs()
	b.ResetTimer()
	if !parallel {
		for i := 0; b.Loop(); i++ {
			op(i)
		}
		return
	}
	var g atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		i := int(g.Add(1)) * 397
		for pb.Next() {
			op(i)
			i++
		}
	})
}

func benchBannerHit(b *testing.B, zones []string, parallel bool) {
	e := newEnv(b, zones, func(c *Config) { c.Now = nil })
	for i := range cacheHitKeys {
		ip := cacheHitAddr(i)
		if i%2 == 0 {
			e.srv.Set(QueryName(ip, "zen.spamhaus.org"), addrs("127.0.0.2"), time.Hour)
		}
	}
	ctx := context.Background()
	for i := range cacheHitKeys {
		if r, _ := e.c.Lookup(ctx, cacheHitAddr(i)); r.Unknown || r.Listed != (i%2 == 0) {
			b.Fatalf("warm-up lookup %d: %+v", i, r)
		}
	}
	q := e.srv.TotalQueries()
	run(b, parallel, func(i int) {
		ip := cacheHitAddr(i & (cacheHitKeys - 1))
		if r, _ := e.c.Lookup(ctx, ip); r.Listed != (i%2 == 0) || r.Unknown {
			b.Errorf("lookup %v: %+v", ip, r)
		}
	})
	b.StopTimer()
	if e.srv.TotalQueries() != q {
		b.Fatalf("%d queries; the loop was not served from the cache", e.srv.TotalQueries()-q)
	}
}

func benchFloorHit(b *testing.B, parallel bool) {
	c, _ := lru.New[netip.Addr, *entry](DefaultConfig().CacheSize)
	exp := time.Now().Add(time.Hour)
	for i := range cacheHitKeys {
		c.Add(cacheHitAddr(i), &entry{expires: exp})
	}
	run(b, parallel, func(i int) {
		ip := cacheHitAddr(i & (cacheHitKeys - 1))
		if e, ok := c.Get(ip); !ok || !time.Now().Before(e.expires) {
			b.Errorf("floor: %v missing", ip)
		}
	})
}
