package dnsbl

import (
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds of the query-time histogram's
// buckets, from a resolver's cache (under a millisecond) to a zone that
// times out (query_timeout, 1.5 s by default, times the resolvers tried).
var LatencyBounds = [...]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond,
	500 * time.Millisecond, time.Second, 2500 * time.Millisecond, 5 * time.Second,
}

// Latency is a histogram of how long a zone's answers took from the
// network: one observation per query a lookup waited for (all resolvers
// tried, UDP and a TCP retry), whatever the outcome; a timeout counts as
// the time it took. Cache hits and shared answers are not observed.
type Latency struct {
	Count uint64        `json:"count"`
	Sum   time.Duration `json:"sum"`
	// Buckets[i] counts the observations at most LatencyBounds[i]
	// (cumulative, as Prometheus's histograms); Count includes those above
	// the last bound.
	Buckets []uint64 `json:"buckets"`
}

// latency is a Latency being filled, safe for concurrent use.
type latency struct {
	counts [len(LatencyBounds) + 1]atomic.Uint64 // per bucket, not cumulative; the last is +Inf
	sum    atomic.Int64                          // nanoseconds
}

func (h *latency) observe(d time.Duration) {
	i := 0
	for i < len(LatencyBounds) && d > LatencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.sum.Add(int64(d))
}

func (h *latency) snapshot() Latency {
	l := Latency{Sum: time.Duration(h.sum.Load()), Buckets: make([]uint64, len(LatencyBounds))}
	for i := range h.counts {
		l.Count += h.counts[i].Load()
		if i < len(LatencyBounds) {
			l.Buckets[i] = l.Count
		}
	}
	return l
}
