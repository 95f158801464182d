package dnsbl

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// cache keeps, per address, one record holding the answer of every zone
// domain, so that a lookup answered wholly from the cache is one table
// probe whatever the number of zones. Reads take no lock and write nothing
// shared but the record's hit counter: the table is an open-addressing
// hash table of atomic pointers to immutable records, changed only by
// writers holding mu, which replace a record by a new one, mark removed
// slots with a tombstone, and rebuild the table into a new one (published
// atomically) when it fills. It holds at most size records; past that,
// the CLOCK algorithm evicts a record not hit since the hand last passed
// it (an approximation of least recently used).
type cache struct {
	tab    atomic.Pointer[table]
	size   int // most records held
	maxCap int // most slots: a power of two, at least 2*size

	mu          sync.Mutex // writers, and the fields below
	live, tombs int        // records and tombstones in the table
	hand        uint64     // CLOCK hand: the next slot to look at
	// Hits of records no longer in the table: whole hits, those listed,
	// and per list index those in which the list matched.
	hits, listed uint64
	listings     []uint64
	entries      []int // per list index: records holding an answer of the list
}

// table is one generation of the cache's hash table.
type table struct {
	slots []atomic.Pointer[record]
	mask  uint64
}

// tomb marks a slot whose record was removed; probes go on past it.
var tomb = new(record)

// retired is set in a record's hit counter when the record leaves the
// table and its hits are folded into the cache's totals; a lookup that
// counts a hit on it afterwards adds that hit to the totals itself.
const retired = 1 << 63

// record is what the cache knows about one address: an answer per list,
// and once every list has one, the verdict they give. Records are
// immutable once stored, but for hits and view.
type record struct {
	ip      netip.Addr
	answers []*entry // per list index; nil while the list has none cached
	// complete is set when every list has an answer; then expires is the
	// earliest of their expiry times, and score, listed and matched (the
	// indexes of the lists that matched) are the verdict.
	complete bool
	expires  time.Time
	score    float64
	listed   bool
	matched  []int
	hits     atomic.Uint64 // lookups answered wholly by the record; retired bit
	seen     uint64        // hits when the CLOCK hand last passed; under cache.mu
	view     atomic.Pointer[view]
}

// view is the Result.Zones of a complete record for lookups at times in
// (lo, hi], during which the TTLs left, in whole seconds, do not change.
// It is shared by every lookup that uses it and never modified.
type view struct {
	zones  []ZoneResult
	lo, hi time.Time
}

// minCap is the initial number of slots.
const minCap = 64

// newCache returns a cache of size records for nlists lists, or nil if
// size is 0.
func newCache(size, nlists int) *cache {
	if size <= 0 {
		return nil
	}
	c := &cache{size: size, maxCap: minCap, listings: make([]uint64, nlists), entries: make([]int, nlists)}
	for c.maxCap < 2*size {
		c.maxCap *= 2
	}
	c.tab.Store(newTable(min(minCap, c.maxCap)))
	return c
}

func newTable(n int) *table {
	return &table{slots: make([]atomic.Pointer[record], n), mask: uint64(n - 1)}
}

// hash spreads ip over the table: splitmix64's finalizer over the address
// bits, so that addresses differing in any bit land far apart.
func hash(ip netip.Addr) uint64 {
	b := ip.As16()
	h := binary.BigEndian.Uint64(b[8:]) ^ binary.BigEndian.Uint64(b[:8])*0x9e3779b97f4a7c15
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

// find returns ip's record in t, or nil. It is safe without the lock: the
// table always has a free slot, so the probe ends.
func (t *table) find(ip netip.Addr) *record {
	for i := hash(ip) & t.mask; ; i = (i + 1) & t.mask {
		r := t.slots[i].Load()
		if r == nil {
			return nil
		}
		if r != tomb && r.ip == ip {
			return r
		}
	}
}

// get returns ip's record, or nil, and whether it answers a lookup at now
// wholly (complete and unexpired); such a hit is counted.
func (c *cache) get(ip netip.Addr, now time.Time) (*record, bool) {
	r := c.tab.Load().find(ip)
	if r == nil || !r.complete || !now.Before(r.expires) {
		return r, false
	}
	if r.hits.Add(1)&retired != 0 {
		c.mu.Lock()
		c.fold(r, 1)
		c.mu.Unlock()
	}
	return r, true
}

// peek returns ip's record, or nil, without counting a hit.
func (c *cache) peek(ip netip.Addr) *record { return c.tab.Load().find(ip) }

// fold adds n hits of r to the totals. Called with mu held.
func (c *cache) fold(r *record, n uint64) {
	c.hits += n
	if r.listed {
		c.listed += n
	}
	for _, li := range r.matched {
		c.listings[li] += n
	}
}

// retire folds the hits of r, leaving the table, into the totals and stops
// its entry counts. Called with mu held.
func (c *cache) retire(r *record) {
	c.fold(r, r.hits.Swap(retired))
	for li, e := range r.answers {
		if e != nil {
			c.entries[li]--
		}
	}
}

// put stores r, replacing the record of its address if there is one,
// evicting one if the cache is full. Called with mu held.
func (c *cache) put(r *record) {
	for li, e := range r.answers {
		if e != nil {
			c.entries[li]++
		}
	}
	t := c.tab.Load()
	if i, old := t.slot(r.ip); old != nil {
		c.retire(old)
		t.slots[i].Store(r)
		return
	}
	if c.live >= c.size {
		c.evict()
	}
	if 4*(c.live+c.tombs+1) > 3*len(t.slots) {
		c.rebuild()
		t = c.tab.Load()
	}
	i, _ := t.slot(r.ip)
	if t.slots[i].Load() == tomb {
		c.tombs--
	}
	t.slots[i].Store(r)
	c.live++
}

// slot returns the index of ip's record in t and the record, or, if ip has
// none, the first free slot (nil or tombstone) on its probe and nil.
func (t *table) slot(ip netip.Addr) (int, *record) {
	free := -1
	for i := hash(ip) & t.mask; ; i = (i + 1) & t.mask {
		switch r := t.slots[i].Load(); {
		case r == nil:
			if free < 0 {
				free = int(i)
			}
			return free, nil
		case r == tomb:
			if free < 0 {
				free = int(i)
			}
		case r.ip == ip:
			return int(i), r
		}
	}
}

// evict removes one record: the first the CLOCK hand finds not hit since
// it last passed, or after two turns the one it is at.
func (c *cache) evict() {
	t := c.tab.Load()
	for n := 0; ; n++ {
		i := c.hand & t.mask
		c.hand++
		r := t.slots[i].Load()
		if r == nil || r == tomb {
			continue
		}
		if h := r.hits.Load(); h != r.seen && n < 2*len(t.slots) {
			r.seen = h
			continue
		}
		t.slots[i].Store(tomb)
		c.tombs++
		c.live--
		c.retire(r)
		return
	}
}

// rebuild copies the live records into a new table without tombstones,
// twice as large while they would fill more than half of it.
func (c *cache) rebuild() {
	old := c.tab.Load()
	n := len(old.slots)
	for n < c.maxCap && 2*(c.live+1) > n {
		n *= 2
	}
	t := newTable(n)
	for i := range old.slots {
		r := old.slots[i].Load()
		if r == nil || r == tomb {
			continue
		}
		j, _ := t.slot(r.ip)
		t.slots[j].Store(r)
	}
	c.tombs, c.hand = 0, 0
	c.tab.Store(t)
}

// answer returns list li's unexpired answer in r, or nil.
func (r *record) answer(li int, now time.Time) *entry {
	if r == nil {
		return nil
	}
	if e := r.answers[li]; e != nil && now.Before(e.expires) {
		return e
	}
	return nil
}

// cacheStats are the cache's counters.
type cacheStats struct {
	hits, listed uint64
	listings     []uint64 // per list: whole hits in which it matched
	entries      []int    // per list: records holding its answer
}

func (c *cache) stats(nlists int) cacheStats {
	st := cacheStats{listings: make([]uint64, nlists), entries: make([]int, nlists)}
	if c == nil {
		return st
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st.hits, st.listed = c.hits, c.listed
	copy(st.listings, c.listings)
	copy(st.entries, c.entries)
	t := c.tab.Load()
	for i := range t.slots {
		r := t.slots[i].Load()
		if r == nil || r == tomb {
			continue
		}
		n := r.hits.Load()
		st.hits += n
		if r.listed {
			st.listed += n
		}
		for _, li := range r.matched {
			st.listings[li] += n
		}
	}
	return st
}

// store caches e as list li's answer for ip.
func (c *Checker) store(ip netip.Addr, li int, e *entry) {
	c.cache.mu.Lock()
	defer c.cache.mu.Unlock()
	c.cache.put(c.newRecord(ip, c.cache.peek(ip), li, e))
}

// newRecord returns old (nil for none) with e as list li's answer, and the
// verdict if every list now has an answer. The score is summed in zone
// order, as Lookup sums it.
func (c *Checker) newRecord(ip netip.Addr, old *record, li int, e *entry) *record {
	r := &record{ip: ip, answers: make([]*entry, len(c.lists))}
	if old != nil {
		copy(r.answers, old.answers)
	}
	r.answers[li] = e
	for i, a := range r.answers {
		if a == nil {
			return r
		}
		if i == 0 || a.expires.Before(r.expires) {
			r.expires = a.expires
		}
	}
	r.complete = true
	matched := make([]bool, len(c.lists))
	for i := range c.zones {
		z := &c.zones[i]
		if matches(&z.Filter, r.answers[c.listOf[i]].answers) {
			r.score += z.Weight
			matched[c.listOf[i]] = true
		}
	}
	for li, m := range matched {
		if m {
			r.matched = append(r.matched, li)
		}
	}
	r.listed = r.score >= c.threshold
	return r
}

// matches reports whether a listing code among answers matches f.
func matches(f *Filter, answers []netip.Addr) bool {
	for _, a := range answers {
		if isListingCode(a) && f.Match(a) {
			return true
		}
	}
	return false
}

// cacheTTL is the time left at now in the cache for an answer expiring at
// expires, in whole seconds, truncated: the TTL a cache hit reports.
func cacheTTL(expires, now time.Time) time.Duration {
	return expires.Sub(now).Truncate(time.Second)
}

// zonesAt returns the ZoneResults of the complete record r for a lookup at
// now (before r.expires), from r's view when it is still valid, or else
// from a new view it stores for the lookups that follow. The slice is
// shared and must not be modified.
func (c *Checker) zonesAt(r *record, now time.Time) []ZoneResult {
	if v := r.view.Load(); v != nil && now.After(v.lo) && !now.After(v.hi) {
		return v.zones
	}
	v := &view{zones: make([]ZoneResult, len(c.zones))}
	for li, l := range c.lists {
		e := r.answers[li]
		ttl := cacheTTL(e.expires, now)
		// The TTL stays ttl while expires-now is in [ttl, ttl+1s).
		lo, hi := e.expires.Add(-ttl-time.Second), e.expires.Add(-ttl)
		if li == 0 || lo.After(v.lo) {
			v.lo = lo
		}
		if li == 0 || hi.Before(v.hi) {
			v.hi = hi
		}
		for _, i := range l.zones {
			c.zoneResult(&v.zones[i], i, l, e, true, ttl)
		}
	}
	r.view.Store(v)
	return v.zones
}

// zoneResult fills z, the result of zone i of list l, from the list's
// answer e, and reports whether the zone matched.
func (c *Checker) zoneResult(z *ZoneResult, i int, l *list, e *entry, cached bool, ttl time.Duration) bool {
	z.Zone = l.domain
	z.Spec = c.specs[i]
	z.Query = e.query
	z.Answers = e.answers
	z.Cached = cached
	z.TTL = ttl
	if matches(&c.zones[i].Filter, e.answers) {
		z.Matched = true
		z.Weight = c.zones[i].Weight
	}
	return z.Matched
}
