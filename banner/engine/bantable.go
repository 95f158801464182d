package engine

import (
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/banner-mta/banner/banner"
)

// banTable holds the active bans. One goroutine writes it; any goroutine
// may look addresses up. A lookup costs one map probe per distinct prefix
// length in use (usually one or two), independent of the number of bans.
//
// Bans are held compact (tableBan: times as Unix nanoseconds, source and
// kind as indexes into texts), about 100 bytes less per ban than a
// banner.Ban beside its key; a ban read back has no monotonic clock
// reading, and its times are in UTC if they were, else in the local zone.
type banTable struct {
	mu    sync.RWMutex
	m     map[netip.Prefix]tableBan
	texts []string          // source and kind texts by index; 0 is ""
	index map[string]uint16 // texts' indexes
	lens4 [33]int           // number of IPv4 bans per prefix length
	lens6 [129]int          // number of IPv6 bans per prefix length
	// present lists the prefix lengths in use, longest first, per family.
	present4, present6 []int
}

func newBanTable() *banTable {
	return &banTable{m: make(map[netip.Prefix]tableBan), texts: []string{""}, index: map[string]uint16{"": 0}}
}

// tableBan is a banner.Ban as the table holds it, less its prefix (the
// key).
type tableBan struct {
	since, until       int64 // Unix nanoseconds; noTime for the zero time
	reason             string
	count              int32
	source, kind, node uint16 // indexes into banTable.texts
	utc                uint8  // bit 0: since is in UTC, bit 1: until is
	groups             banner.Groups
}

// noTime stands for the zero time.Time.
const noTime = math.MinInt64

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return noTime
	}
	return t.UnixNano()
}

func fromNanos(n int64, utc bool) time.Time {
	switch {
	case n == noTime:
		return time.Time{}
	case utc:
		return time.Unix(0, n).UTC()
	}
	return time.Unix(0, n)
}

func utcBits(since, until time.Time) uint8 {
	var b uint8
	if since.Location() == time.UTC {
		b |= 1
	}
	if until.Location() == time.UTC {
		b |= 2
	}
	return b
}

// text returns the index of s, adding it. Sources, kinds and fleet nodes are a few
// fixed words; should 65,535 ever be taken, further ones read back as "".
// Callers hold t.mu for writing.
func (t *banTable) text(s string) uint16 {
	if i, ok := t.index[s]; ok {
		return i
	}
	if len(t.texts) > math.MaxUint16 {
		return 0
	}
	i := uint16(len(t.texts))
	t.texts = append(t.texts, s)
	t.index[s] = i
	return i
}

// pack is b as the table holds it; callers hold t.mu for writing.
func (t *banTable) pack(b banner.Ban) tableBan {
	return tableBan{since: nanos(b.Since), until: nanos(b.Until), reason: b.Reason,
		count: int32(min(max(b.Count, math.MinInt32), math.MaxInt32)), source: t.text(string(b.Source)), kind: t.text(string(b.Kind)), node: t.text(b.Node),
		utc: utcBits(b.Since, b.Until), groups: b.Groups}
}

// unpack is the banner.Ban of p held as tb; callers hold t.mu.
func (t *banTable) unpack(p netip.Prefix, tb tableBan) banner.Ban {
	return banner.Ban{Prefix: p, Since: fromNanos(tb.since, tb.utc&1 != 0), Until: fromNanos(tb.until, tb.utc&2 != 0), Count: int(tb.count),
		Reason: tb.reason, Source: banner.Source(t.texts[tb.source]), Kind: banner.Kind(t.texts[tb.kind]), Node: t.texts[tb.node],
		Groups: tb.groups}
}

func (t *banTable) recount() {
	t.present4 = t.present4[:0]
	for l := 32; l >= 0; l-- {
		if t.lens4[l] > 0 {
			t.present4 = append(t.present4, l)
		}
	}
	t.present6 = t.present6[:0]
	for l := 128; l >= 0; l-- {
		if t.lens6[l] > 0 {
			t.present6 = append(t.present6, l)
		}
	}
}

func (t *banTable) count(p netip.Prefix, d int) bool {
	var c *int
	if p.Addr().Is4() {
		c = &t.lens4[p.Bits()]
	} else {
		c = &t.lens6[p.Bits()]
	}
	before := *c
	*c += d
	return (before == 0) != (*c == 0)
}

// put adds or replaces the ban of b.Prefix.
func (t *banTable) put(b banner.Ban) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.m[b.Prefix]; !ok && t.count(b.Prefix, 1) {
		t.recount()
	}
	t.m[b.Prefix] = t.pack(b)
}

// putAll adds or replaces many bans under one lock.
func (t *banTable) putAll(bans []banner.Ban) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) == 0 {
		t.m = make(map[netip.Prefix]tableBan, len(bans))
	}
	for _, b := range bans {
		n := len(t.m)
		t.m[b.Prefix] = t.pack(b) // one map operation: the length tells a new key
		if len(t.m) > n {
			t.count(b.Prefix, 1)
		}
	}
	t.recount()
}

// each calls fn for every ban, in no order, under the read lock.
func (t *banTable) each(fn func(banner.Ban)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for p, tb := range t.m {
		fn(t.unpack(p, tb))
	}
}

// del removes the ban of p and returns it.
func (t *banTable) del(p netip.Prefix) (banner.Ban, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	tb, ok := t.m[p]
	if !ok {
		return banner.Ban{}, false
	}
	delete(t.m, p)
	if t.count(p, -1) {
		t.recount()
	}
	return t.unpack(p, tb), true
}

// get returns the ban of exactly p.
func (t *banTable) get(p netip.Prefix) (banner.Ban, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	tb, ok := t.m[p]
	if !ok {
		return banner.Ban{}, false
	}
	return t.unpack(p, tb), true
}

// lookup returns the most specific ban covering a (already unmapped).
func (t *banTable) lookup(a netip.Addr) (banner.Ban, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	lens := t.present6
	if a.Is4() {
		lens = t.present4
	}
	for _, l := range lens {
		p, err := a.Prefix(l)
		if err != nil {
			continue
		}
		if tb, ok := t.m[p]; ok {
			return t.unpack(p, tb), true
		}
	}
	return banner.Ban{}, false
}

// lookupGroup reports whether a live ban covering a (already unmapped)
// closes the ports of group g.
func (t *banTable) lookupGroup(a netip.Addr, g banner.Groups, now time.Time) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	lens := t.present6
	if a.Is4() {
		lens = t.present4
	}
	n := now.UnixNano()
	for _, l := range lens {
		p, err := a.Prefix(l)
		if err != nil {
			continue
		}
		if tb, ok := t.m[p]; ok && tb.until > n && tb.groups.OrMain().Has(g) {
			return true
		}
	}
	return false
}

// covering returns the live bans covering a, for error hints.
func (t *banTable) covering(a netip.Addr, now time.Time) []netip.Prefix {
	t.mu.RLock()
	defer t.mu.RUnlock()
	var out []netip.Prefix
	lens := t.present6
	if a.Is4() {
		lens = t.present4
	}
	for _, l := range lens {
		p, _ := a.Prefix(l)
		if tb, ok := t.m[p]; ok && fromNanos(tb.until, false).After(now) {
			out = append(out, p)
		}
	}
	return out
}

func (t *banTable) len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.m)
}

// list returns the bans sorted by prefix.
func (t *banTable) list() []banner.Ban {
	t.mu.RLock()
	out := make([]banner.Ban, 0, len(t.m))
	for p, tb := range t.m {
		out = append(out, t.unpack(p, tb))
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(x, y banner.Ban) int { return comparePrefix(x.Prefix, y.Prefix) })
	return out
}

func comparePrefix(x, y netip.Prefix) int {
	if c := x.Addr().Compare(y.Addr()); c != 0 {
		return c
	}
	return x.Bits() - y.Bits()
}
