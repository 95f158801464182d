package engine

import (
	"net/netip"
	"time"

	"github.com/banner-mta/banner/banner"
)

// kindKey names the window of a kind with rules of its own.
type kindKey struct {
	prefix netip.Prefix
	kind   banner.Kind
}

// rule returns the maxretry and findtime events of kind are scored by,
// and whether the kind has a window of its own.
func (s *ledger) rule(kind banner.Kind) (maxRetry float64, findTime time.Duration, own bool) {
	if r, ok := s.cfg.Kinds[kind]; ok {
		return r.MaxRetry, r.FindTime, true
	}
	return s.cfg.MaxRetry, s.cfg.FindTime, false
}

// group returns the port group a ban for an event of kind closes:
// banner.KindGroups(kind) for a kind whose rule has OwnPorts, else the
// main group.
func (c *Config) group(kind banner.Kind) banner.Groups {
	if r, ok := c.Kinds[kind]; ok && r.OwnPorts {
		return banner.KindGroups(kind)
	}
	return banner.GroupMain
}

// groupsInUse maps g, a ban's groups as stored, to the groups this
// configuration has: a group no kind's rule gives ports of its own now
// (say [ban.sasl] ports was emptied) is the main group's.
func (c *Config) groupsInUse(g banner.Groups) banner.Groups {
	g = g.OrMain()
	if g.Has(banner.GroupSASL) && c.group(banner.KindSASL) != banner.GroupSASL {
		g = g&^banner.GroupSASL | banner.GroupMain
	}
	return g
}

// window returns, creating it, the window an event of kind for p adds to.
func (s *ledger) window(p netip.Prefix, kind banner.Kind, own bool) *window {
	if own {
		k := kindKey{p, kind}
		w := s.kindWindows[k]
		if w == nil {
			w = &window{}
			s.kindWindows[k] = w
		}
		return w
	}
	w := s.windows[p]
	if w == nil {
		w = &window{}
		s.windows[p] = w
	}
	return w
}

// dropWindows drops the scores of p that a ban of p in groups (or a
// narrower ban issued for it) consumes: those of the kinds whose bans
// close those groups' ports. A sasl ban (465 and 587) leaves the score of
// unknown recipients on port 25 counting, and the reverse.
func (s *ledger) dropWindows(p netip.Prefix, groups banner.Groups) {
	if groups.Has(banner.GroupMain) {
		delete(s.windows, p)
	}
	for k := range s.cfg.Kinds {
		if groups.Has(s.cfg.group(k)) {
			delete(s.kindWindows, kindKey{p, k})
		}
	}
	s.scored.del(p)
}
