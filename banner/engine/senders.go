package engine

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/banner-mta/banner/banner"
)

// Good senders: clients whose mail Postfix accepted (a delivered event,
// from the log's client= and queue-active lines or from the policy
// service's END-OF-MESSAGE request). A customer mistyping an address on a
// big provider's outbound host must not get that host banned: for
// GoodSenderFor after its last delivery, a good sender's recipient-probing
// events weigh 1/GoodSenderFactor, so that it takes factor x maxretry of
// them to ban it. Other kinds (DNSBL listings, postscreen, patterns) weigh
// as for anyone.

// maxGoodSendersLimit bounds MaxGoodSenders: each costs about 60 bytes.
const maxGoodSendersLimit = 10_000_000

func (c Config) validateGoodSenders() []error {
	var errs []error
	if c.GoodSenderFor < 0 {
		errs = append(errs, fmt.Errorf("good_sender_days: must be >= 0 (0 is off), got %v", c.GoodSenderFor))
	}
	if c.GoodSenderFor > 0 {
		if !(c.GoodSenderFactor >= 1) || c.GoodSenderFactor > 1000 {
			errs = append(errs, fmt.Errorf("good_sender_factor: must be >= 1 and at most 1000, got %v", c.GoodSenderFactor))
		}
		if c.MaxGoodSenders <= 0 || c.MaxGoodSenders > maxGoodSendersLimit {
			errs = append(errs, fmt.Errorf("good_senders_max: must be > 0 and at most %d, got %d", maxGoodSendersLimit, c.MaxGoodSenders))
		}
	}
	return errs
}

// probing reports whether events of kind k probe recipients, and so weigh
// less for a good sender. too_many_errors counts: a delivering MTA that
// hits smtpd_hard_error_limit does so with the same rejected recipients
// (a mailing list with stale addresses), each of which Postfix counts as
// an error; a good sender does not send bad commands.
func probing(k banner.Kind) bool {
	return k == banner.KindUnknownUser || k == banner.KindTooManyErrors
}

// goodSenders remembers when each prefix last delivered, bounded in size.
// It does no I/O; dirty collects the changes to write (a zero time for a
// record to delete) when track is set.
type goodSenders struct {
	keep  time.Duration
	max   int
	last  map[netip.Prefix]time.Time
	track bool
	dirty map[netip.Prefix]time.Time
}

func newGoodSenders(cfg Config) *goodSenders {
	return &goodSenders{keep: cfg.GoodSenderFor, max: cfg.MaxGoodSenders,
		last: make(map[netip.Prefix]time.Time), dirty: make(map[netip.Prefix]time.Time)}
}

// note records a delivery by p at t (at now, or before: a log read
// late); one older than keep is no longer news.
func (g *goodSenders) note(p netip.Prefix, t, now time.Time) {
	if g.keep <= 0 || now.Sub(t) > g.keep {
		return
	}
	if old, ok := g.last[p]; ok && !t.After(old) {
		return
	}
	if _, ok := g.last[p]; !ok && len(g.last) >= g.max {
		g.evict()
	}
	g.last[p] = t
	g.mark(p, t)
}

func (g *goodSenders) mark(p netip.Prefix, t time.Time) {
	if g.track {
		g.dirty[p] = t
	}
}

// evict forgets the eighth of the good senders that delivered longest
// ago (at least one), so that a full table costs one sort per max/8
// deliveries rather than a scan per delivery.
func (g *goodSenders) evict() {
	type pt struct {
		p netip.Prefix
		t time.Time
	}
	all := make([]pt, 0, len(g.last))
	for p, t := range g.last {
		all = append(all, pt{p, t})
	}
	slices.SortFunc(all, func(a, b pt) int { return a.t.Compare(b.t) })
	for _, x := range all[:max(1, len(all)/8)] {
		delete(g.last, x.p)
		g.mark(x.p, time.Time{})
	}
}

// since returns when p last delivered, if it is a good sender at t.
func (g *goodSenders) since(p netip.Prefix, t time.Time) (time.Time, bool) {
	last, ok := g.last[p]
	if !ok || g.keep <= 0 || t.Sub(last) > g.keep {
		return time.Time{}, false
	}
	return last, true
}

// sweep forgets the good senders whose last delivery is older than keep.
func (g *goodSenders) sweep(now time.Time) {
	for p, t := range g.last {
		if now.Sub(t) > g.keep {
			delete(g.last, p)
			g.mark(p, time.Time{})
		}
	}
}

// restore enters good senders read from the store; the ones too old, or
// over the bound, are marked for deletion.
func (g *goodSenders) restore(p netip.Prefix, last, now time.Time) {
	if g.keep <= 0 || now.Sub(last) > g.keep {
		g.mark(p, time.Time{})
		return
	}
	if len(g.last) >= g.max {
		g.evict()
	}
	if old, ok := g.last[p]; !ok || last.After(old) {
		g.last[p] = last
	}
}

// allowedName reports whether AllowName allowlists a; the first event of
// an address starts its lookup, so its verdict holds from its next event
// on, and then the score it gathered is dropped.
func (s *ledger) allowedName(a netip.Addr) bool {
	if s.cfg.AllowName == nil {
		return false
	}
	if _, ok := s.cfg.AllowName(a); !ok {
		return false
	}
	delete(s.windows, s.key(a))
	return true
}

// goodWeight returns the weight an event of kind at t from p adds, and
// whether the good-sender discount applied.
func (s *ledger) goodWeight(p netip.Prefix, kind banner.Kind, w float64, t time.Time) (float64, bool) {
	if !probing(kind) {
		return w, false
	}
	if _, ok := s.good.since(p, t); !ok {
		return w, false
	}
	return w / s.cfg.GoodSenderFactor, true
}

// goodNote is the reason suffix of a score ban of a good sender.
func (s *ledger) goodNote(w *window) string {
	for _, m := range w.marks {
		if m.good {
			return fmt.Sprintf(" [good sender: recipient probes weigh 1/%g]", s.cfg.GoodSenderFactor)
		}
	}
	return ""
}
