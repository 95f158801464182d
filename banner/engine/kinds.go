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

// dropWindows drops every score of p: a ban of p (or a narrower ban issued
// for it) consumes them all.
func (s *ledger) dropWindows(p netip.Prefix) {
	delete(s.windows, p)
	for k := range s.cfg.Kinds {
		delete(s.kindWindows, kindKey{p, k})
	}
	s.scored.del(p)
}
