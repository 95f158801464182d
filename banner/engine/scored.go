package engine

import (
	"net/netip"
	"sync"
	"time"

	"github.com/banner-mta/banner/banner"
)

// scoredTable mirrors, for readers on other goroutines (the DNS list),
// which prefixes have a score: the sum of their window at their last event
// and that event's time. The run goroutine writes it whenever it changes a
// window; any goroutine may read it.
type scoredTable struct {
	mu sync.RWMutex
	m  map[netip.Prefix]scoredRec
}

type scoredRec struct {
	score float64
	until time.Time // when the last event leaves its findtime
}

func newScoredTable() *scoredTable { return &scoredTable{m: make(map[netip.Prefix]scoredRec)} }

func (t *scoredTable) set(p netip.Prefix, score float64, until time.Time) {
	t.mu.Lock()
	t.m[p] = scoredRec{score: score, until: until}
	t.mu.Unlock()
}

func (t *scoredTable) del(p netip.Prefix) {
	t.mu.Lock()
	delete(t.m, p)
	t.mu.Unlock()
}

// keep drops every prefix for which keep returns false.
func (t *scoredTable) keep(keep func(netip.Prefix) bool) {
	t.mu.Lock()
	for p := range t.m {
		if !keep(p) {
			delete(t.m, p)
		}
	}
	t.mu.Unlock()
}

func (t *scoredTable) get(p netip.Prefix) (scoredRec, bool) {
	t.mu.RLock()
	r, ok := t.m[p]
	t.mu.RUnlock()
	return r, ok
}

// Scored returns the score addr's prefix (its /ipv6_prefix for IPv6) had
// at its last event, if that event is within findtime and no ban has
// consumed the score since. Unlike Score it never waits for the engine's
// loop: a read lock and one map probe, for the DNS list's goroutines. The
// score is the sum at the last event; marks that aged out since are not
// subtracted.
func (e *Engine) Scored(addr netip.Addr) (float64, bool) {
	a := banner.NormalizeAddr(addr)
	if !a.IsValid() {
		return 0, false
	}
	r, ok := e.ledger.scored.get(e.ledger.key(a))
	if !ok || !r.until.After(e.cfg.now()) {
		return 0, false
	}
	return r.score, true
}
