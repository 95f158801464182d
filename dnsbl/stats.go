package dnsbl

import "time"

// Stats are the Checker's counters since New, for metrics and status.
type Stats struct {
	Lookups     uint64      `json:"lookups"`      // Lookup calls
	Listed      uint64      `json:"listed"`       // lookups whose score reached the threshold
	Unknown     uint64      `json:"unknown"`      // lookups with at least one zone unanswered
	CacheHits   uint64      `json:"cache_hits"`   // zone answers served from the cache
	CacheMisses uint64      `json:"cache_misses"` // zone answers not in the cache
	Queries     uint64      `json:"queries"`      // DNS queries sent (UDP, and TCP after truncation)
	Shared      uint64      `json:"shared"`       // zone answers shared between concurrent lookups
	Skipped     uint64      `json:"skipped"`      // zone answers skipped without a query because the zone was down
	Errors      ErrorCounts `json:"errors"`
	Zones       []ZoneStats `json:"zones"` // one per distinct zone domain
}

// ErrorCounts counts zone errors by kind.
type ErrorCounts struct {
	Timeout  uint64 `json:"timeout"`  // no reply within query_timeout
	ServFail uint64 `json:"servfail"` // SERVFAIL
	Refused  uint64 `json:"refused"`  // REFUSED
	Rcode    uint64 `json:"rcode"`    // other error rcodes
	Blocked  uint64 `json:"blocked"`  // 127.255.255.x answers: public resolver, rate limit, DQS errors
	Bogus    uint64 `json:"bogus"`    // only answers outside 127.0.0.0/8
	Mismatch uint64 `json:"mismatch"` // reply to another question
	Network  uint64 `json:"network"`  // socket errors and unreadable replies
	Deadline uint64 `json:"deadline"` // caller's context ended first (not a zone error)
}

// ZoneStats are the counters and error state of one zone domain.
type ZoneStats struct {
	Zone          string    `json:"zone"`  // configured domain
	Query         string    `json:"query"` // domain queried, DQS key masked
	Queries       uint64    `json:"queries"`
	CacheHits     uint64    `json:"cache_hits"`
	CacheMisses   uint64    `json:"cache_misses"`
	CacheEntries  int       `json:"cache_entries"`
	Listings      uint64    `json:"listings"` // lookups in which the zone matched
	Errors        uint64    `json:"errors"`
	LastError     time.Time `json:"last_error,omitzero"` // zero if none
	LastErrorText string    `json:"last_error_text"`
	LastSuccess   time.Time `json:"last_success,omitzero"` // last answered query; zero if none
	// Failing is true while the last query ended in an error.
	Failing bool `json:"failing"`
	// Down is true while the zone is skipped after FailuresToOpen failed
	// queries in a row (failure_backoff): since DownSince, until a probe
	// query answers; the next probe goes out with the first lookup at or
	// after NextProbe. Both times are zero while the zone is up.
	Down      bool      `json:"down"`
	DownSince time.Time `json:"down_since,omitzero"`
	NextProbe time.Time `json:"next_probe,omitzero"`
	// ConsecutiveFailures counts the latest queries in a row that failed
	// with a timeout, a network error, SERVFAIL or REFUSED, each within
	// failure_backoff (or one query's timeouts, if longer) of the previous
	// one; 0 once the last is older than that while the zone is up.
	ConsecutiveFailures int `json:"consecutive_failures"`
	// Skipped counts the lookups answered without asking the zone while it
	// was down (reported as ErrZoneDown).
	Skipped uint64 `json:"skipped"`
	// Latency is how long the zone's answers took from the network.
	Latency Latency `json:"latency"`
}

// Stats returns a snapshot of the counters.
func (c *Checker) Stats() Stats {
	cs := c.cache.stats(len(c.lists))
	s := Stats{
		Lookups: c.lookups.Load() + cs.hits,
		Listed:  c.listed.Load() + cs.listed,
		Unknown: c.unknown.Load(),
		Queries: c.queries.Load(),
		Shared:  c.shared.Load(),
		Skipped: c.skipped.Load(),
		Errors: ErrorCounts{
			Timeout:  c.errs[kindTimeout].Load(),
			ServFail: c.errs[kindServFail].Load(),
			Refused:  c.errs[kindRefused].Load(),
			Rcode:    c.errs[kindRcode].Load(),
			Blocked:  c.errs[kindBlocked].Load(),
			Bogus:    c.errs[kindBogus].Load(),
			Mismatch: c.errs[kindMismatch].Load(),
			Network:  c.errs[kindNetwork].Load(),
			Deadline: c.errs[kindDeadline].Load(),
		},
	}
	now, window := c.now(), c.failWindow()
	for li, l := range c.lists {
		z := ZoneStats{
			Zone:         l.domain,
			Query:        l.shown,
			Queries:      l.queries.Load(),
			CacheHits:    l.hits.Load() + cs.hits,
			CacheMisses:  l.misses.Load(),
			CacheEntries: cs.entries[li],
			Listings:     l.listings.Load() + cs.listings[li],
			Errors:       l.errors.Load(),
			Skipped:      l.skipped.Load(),
			Latency:      l.latency.snapshot(),
		}
		l.mu.Lock()
		z.LastError, z.LastErrorText, z.LastSuccess, z.Failing = l.lastErr, l.lastErrText, l.lastOK, l.failing
		z.Down, z.ConsecutiveFailures = l.down.Load(), l.fails
		if !z.Down && z.ConsecutiveFailures > 0 && now.Sub(l.failAt) > window {
			z.ConsecutiveFailures = 0
		}
		if z.Down {
			z.DownSince, z.NextProbe = l.downSince, l.nextProbe
		}
		l.mu.Unlock()
		s.Zones = append(s.Zones, z)
		s.CacheHits += z.CacheHits
		s.CacheMisses += z.CacheMisses
	}
	return s
}
