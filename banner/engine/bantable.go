package engine

import (
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/banner-mta/banner/banner"
)

// banTable holds the active bans. One goroutine writes it; any goroutine
// may look addresses up. A lookup costs one map probe per distinct prefix
// length in use (usually one or two), independent of the number of bans.
type banTable struct {
	mu    sync.RWMutex
	m     map[netip.Prefix]banner.Ban
	lens4 [33]int  // number of IPv4 bans per prefix length
	lens6 [129]int // number of IPv6 bans per prefix length
	// present lists the prefix lengths in use, longest first, per family.
	present4, present6 []int
}

func newBanTable() *banTable {
	return &banTable{m: make(map[netip.Prefix]banner.Ban)}
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
	t.m[b.Prefix] = b
}

// putAll adds or replaces many bans under one lock.
func (t *banTable) putAll(bans []banner.Ban) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) == 0 {
		t.m = make(map[netip.Prefix]banner.Ban, len(bans))
	}
	for _, b := range bans {
		if _, ok := t.m[b.Prefix]; !ok {
			t.count(b.Prefix, 1)
		}
		t.m[b.Prefix] = b
	}
	t.recount()
}

// each calls fn for every ban, in no order, under the read lock.
func (t *banTable) each(fn func(banner.Ban)) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	for _, b := range t.m {
		fn(b)
	}
}

// del removes the ban of p and returns it.
func (t *banTable) del(p netip.Prefix) (banner.Ban, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	b, ok := t.m[p]
	if !ok {
		return banner.Ban{}, false
	}
	delete(t.m, p)
	if t.count(p, -1) {
		t.recount()
	}
	return b, true
}

// get returns the ban of exactly p.
func (t *banTable) get(p netip.Prefix) (banner.Ban, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	b, ok := t.m[p]
	return b, ok
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
		if b, ok := t.m[p]; ok {
			return b, true
		}
	}
	return banner.Ban{}, false
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
		if b, ok := t.m[p]; ok && b.Until.After(now) {
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
	for _, b := range t.m {
		out = append(out, b)
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
