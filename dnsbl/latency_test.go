package dnsbl

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

func TestLatencyBuckets(t *testing.T) {
	var h latency
	for _, d := range []time.Duration{0, time.Millisecond, time.Millisecond + 1, 30 * time.Millisecond, 6 * time.Second} {
		h.observe(d)
	}
	got := h.snapshot()
	// cumulative: <=1ms: 2, <=2.5ms: 3, ... <=50ms: 4, ... <=5s: 4; +Inf: 5
	want := []uint64{2, 3, 3, 3, 3, 4, 4, 4, 4, 4, 4, 4}
	if got.Count != 5 || !slices.Equal(got.Buckets, want) || got.Sum != 6*time.Second+32*time.Millisecond+1 {
		t.Errorf("got %+v, want count 5, buckets %v", got, want)
	}
}

// TestZoneLatency: each zone's histogram observes the queries a lookup
// waited for, a timeout included, and not the answers served from the
// cache.
func TestZoneLatency(t *testing.T) {
	e := newEnv(t, []string{"slow.test*1", "fast.test*1", "dead.test*1"}, func(c *Config) { c.QueryTimeout = 300 * time.Millisecond })
	ip := netip.MustParseAddr("192.0.2.77")
	e.srv.Set(QueryName(ip, "fast.test"), addrs("127.0.0.2"), time.Hour)
	e.srv.Set(QueryName(ip, "slow.test"), addrs("127.0.0.2"), time.Hour)
	e.srv.SetLatency("slow.test", 100*time.Millisecond)
	e.srv.Drop("dead.test", true)
	e.lookup(t, ip.String())
	e.lookup(t, ip.String()) // slow and fast from the cache; dead asked again

	bucket := func(d time.Duration) int { return slices.Index(LatencyBounds[:], d) }
	zones := e.c.Stats().Zones
	for _, c := range []struct {
		zone  string
		count uint64
		least time.Duration // every observation took at least this
	}{
		{"slow.test", 1, 100 * time.Millisecond},
		{"fast.test", 1, 0},
		{"dead.test", 2, 300 * time.Millisecond},
	} {
		i := slices.IndexFunc(zones, func(z ZoneStats) bool { return z.Zone == c.zone })
		l := zones[i].Latency
		if l.Count != c.count || l.Sum < time.Duration(c.count)*c.least {
			t.Errorf("%s: %+v, want %d observations of at least %v", c.zone, l, c.count, c.least)
		}
		if c.least > 0 && l.Buckets[bucket(50*time.Millisecond)] != 0 {
			t.Errorf("%s: %+v counted under 50ms", c.zone, l)
		}
	}
}
