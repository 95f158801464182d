package dnsbl

import (
	"context"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkLookupCached measures a lookup answered wholly from the cache,
// the policy service's hot path.
func BenchmarkLookupCached(b *testing.B) {
	for _, bc := range []struct {
		name  string
		zones []string
	}{
		{"zen", []string{DefaultZone}},
		{"3zones", threeZones},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := newEnv(b, bc.zones, nil)
			ip := netip.MustParseAddr("192.0.2.1")
			e.srv.Set(QueryName(ip, "zen.spamhaus.org"), addrs("127.0.0.2"), time.Hour)
			ctx := context.Background()
			if r := e.lookup(b, ip.String()); !r.Listed {
				b.Fatal("warm-up lookup not listed")
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				r, _ := e.c.Lookup(ctx, ip)
				if !r.Listed {
					b.Fatal("not listed")
				}
			}
			b.StopTimer()
			if q := e.srv.TotalQueries(); q != len(bc.zones) {
				b.Fatalf("%d queries; the loop was not served from the cache", q)
			}
		})
	}
	b.Run("zen-parallel", func(b *testing.B) {
		e := newEnv(b, []string{DefaultZone}, nil)
		ip := netip.MustParseAddr("192.0.2.1")
		e.lookup(b, ip.String())
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = e.c.Lookup(context.Background(), ip)
			}
		})
	})
}

// BenchmarkLookupUncached looks up a new address every time against the
// loopback DNS server (NXDOMAIN with SOA), serially and with 32 concurrent
// callers, and reports lookups per second. Run with -benchtime=10000x for
// 10k distinct addresses.
func BenchmarkLookupUncached(b *testing.B) {
	for _, par := range []int{1, 32} {
		name := "serial"
		if par > 1 {
			name = "parallel32"
		}
		b.Run(name, func(b *testing.B) {
			e := newEnv(b, []string{DefaultZone}, func(c *Config) { c.QueryTimeout = 2 * time.Second })
			var n atomic.Uint32
			next := func() netip.Addr {
				i := n.Add(1)
				return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			if par == 1 {
				for b.Loop() {
					if r, _ := e.c.Lookup(context.Background(), next()); r.Unknown {
						b.Fatal(r.Err())
					}
				}
			} else {
				b.SetParallelism((par + 1) / 2) // GOMAXPROCS=2 here
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if r, _ := e.c.Lookup(context.Background(), next()); r.Unknown {
							b.Error(r.Err())
							return
						}
					}
				})
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lookups/s")
			b.StopTimer()
			if q := e.srv.TotalQueries(); q != b.N {
				b.Errorf("%d queries for %d distinct addresses", q, b.N)
			}
		})
	}
}
