package engine

import (
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/store"
)

// Event trails: the engine keeps, per scored prefix, the newest events it
// saw and what it did with each (banner explain), and writes the changed
// trails with the flush that follows them, in the same transaction as the
// bans and positions, or at the latest trailFlushDelay later: never one
// write per event.

// TrailEvent is one entry of a trail.
type TrailEvent = store.TrailEvent

const (
	// trailLen bounds the events kept per prefix.
	trailLen = 32
	// maxTrails bounds the prefixes with a trail; the least recently
	// touched are dropped first.
	maxTrails = 20_000
	// trailFlushDelay is the longest a changed trail or good sender waits
	// for a flush that writes bans or positions before it is written on
	// its own.
	trailFlushDelay = 30 * time.Second
)

// Outcomes of an event in its trail.
const (
	OutcomeScored      = "scored"
	OutcomeBan         = "ban"
	OutcomeGoodSender  = "good_sender"
	OutcomeEcho        = "echo"
	OutcomeRepeat      = "repeat"
	OutcomeStale       = "stale"
	OutcomeWhileBanned = "while_banned"
	OutcomeAllowlisted = "allowlisted"
	OutcomeInvalid     = "invalid"
	OutcomeUnban       = "unban"
	OutcomeExpired     = "expired"
)

type trail struct {
	events  []TrailEvent
	touched time.Time
}

// trails is the bounded set of trails, and what changed since the last
// write (when track is set).
type trails struct {
	m     map[netip.Prefix]*trail
	track bool
	dirty map[netip.Prefix]struct{}
}

func newTrails() *trails {
	return &trails{m: make(map[netip.Prefix]*trail), dirty: make(map[netip.Prefix]struct{})}
}

func (ts *trails) add(p netip.Prefix, te TrailEvent, now time.Time) {
	t := ts.m[p]
	if t == nil {
		if len(ts.m) >= maxTrails {
			ts.evict()
		}
		t = &trail{}
		ts.m[p] = t
	}
	if len(t.events) >= trailLen {
		copy(t.events, t.events[1:])
		t.events = t.events[:trailLen-1]
	}
	t.events = append(t.events, te)
	t.touched = now
	if ts.track {
		ts.dirty[p] = struct{}{}
	}
}

// evict drops the eighth of the trails touched longest ago.
func (ts *trails) evict() {
	type pt struct {
		p netip.Prefix
		t time.Time
	}
	all := make([]pt, 0, len(ts.m))
	for p, t := range ts.m {
		all = append(all, pt{p, t.touched})
	}
	slices.SortFunc(all, func(a, b pt) int { return a.t.Compare(b.t) })
	for _, x := range all[:max(1, len(all)/8)] {
		delete(ts.m, x.p)
		if ts.track {
			ts.dirty[x.p] = struct{}{} // written as a deletion
		}
	}
}

// get returns a copy of the trail of p.
func (ts *trails) get(p netip.Prefix) []TrailEvent {
	if t := ts.m[p]; t != nil {
		return slices.Clone(t.events)
	}
	return nil
}

// outcomeCounters are the counters observe moves when it drops an event,
// read before and after to name what it did.
type outcomeCounters struct {
	invalid, allowlisted, stale, echo, whileBanned, repeat uint64
}

func readOutcomeCounters(c *counters) outcomeCounters {
	return outcomeCounters{c.droppedInvalid.Load(), c.droppedAllowlisted.Load(), c.droppedStale.Load(),
		c.droppedEcho.Load(), c.droppedWhileBanned.Load(), c.droppedRepeat.Load()}
}

// observeTraced is ledger.observe that also returns the trail entry of ev
// and the prefix it belongs to.
func (s *ledger) observeTraced(ev banner.Event, now time.Time) (banner.Ban, bool, netip.Prefix, TrailEvent) {
	before := readOutcomeCounters(s.ctr)
	b, ok := s.observe(ev, now)
	after := readOutcomeCounters(s.ctr)
	a := banner.NormalizeAddr(ev.Addr)
	t := ev.Time
	if t.IsZero() || t.After(now) {
		t = now
	}
	te := TrailEvent{Time: t, Source: string(ev.Source), Kind: string(ev.Kind), Key: ev.Key, Reason: ev.Reason, Origin: ev.Origin}
	if !a.IsValid() {
		return b, ok, netip.Prefix{}, te
	}
	p := s.key(a)
	switch {
	case ok:
		te.Outcome, te.BanFor, te.Count = OutcomeBan, b.Until.Sub(b.Since), b.Count
		te.Reason = b.Reason
		if b.Prefix != p { // narrowed around the allowlist
			p = b.Prefix
		}
	case after.invalid != before.invalid:
		te.Outcome = OutcomeInvalid
	case after.allowlisted != before.allowlisted:
		te.Outcome = OutcomeAllowlisted
	case after.stale != before.stale:
		te.Outcome = OutcomeStale
	case after.echo != before.echo:
		te.Outcome = OutcomeEcho
	case after.whileBanned != before.whileBanned:
		te.Outcome = OutcomeWhileBanned
	case after.repeat != before.repeat:
		te.Outcome = OutcomeRepeat
	case ev.Kind == banner.KindDelivered:
		te.Outcome = OutcomeGoodSender
	default:
		te.Outcome = OutcomeScored
		// The window the event went to: its kind's own ([ban.sasl]) or
		// the one of every other kind.
		_, findTime, own := s.rule(ev.Kind)
		win := s.windows[p]
		if own {
			win = s.kindWindows[kindKey{p, ev.Kind}]
		}
		if win != nil && len(win.marks) > 0 {
			te.Weight = win.marks[len(win.marks)-1].w
		}
		if own {
			te.Score = win.sumSince(now.Add(-findTime))
		} else {
			te.Score = s.score(a, now)
		}
	}
	return b, ok, p, te
}

// extrasPending reports whether good senders or trails wait to be written.
func (e *Engine) extrasPending() bool {
	return len(e.ledger.good.dirty) > 0 || len(e.trails.dirty) > 0
}

// extrasDue reports whether they have waited long enough to be written
// without bans or positions to go with them.
func (e *Engine) extrasDue(now time.Time) bool {
	if !e.extrasPending() {
		e.extrasSince = time.Time{}
		return false
	}
	if e.extrasSince.IsZero() {
		e.extrasSince = now
	}
	return now.Sub(e.extrasSince) >= trailFlushDelay || e.closed.Load()
}

// extrasToWrite collects the pending good senders and trails.
func (e *Engine) extrasToWrite() store.Extras {
	var x store.Extras
	for p, t := range e.ledger.good.dirty {
		x.Senders = append(x.Senders, store.GoodSender{Prefix: p, Last: t})
	}
	for p := range e.trails.dirty {
		x.Trails = append(x.Trails, store.Trail{Prefix: p, Events: e.trails.get(p)})
	}
	return x
}

// extrasWritten clears what x wrote from the pending sets.
func (e *Engine) extrasWritten(x store.Extras) {
	for _, g := range x.Senders {
		if e.ledger.good.dirty[g.Prefix].Equal(g.Last) {
			delete(e.ledger.good.dirty, g.Prefix)
		}
	}
	for _, t := range x.Trails {
		delete(e.trails.dirty, t.Prefix)
	}
	e.extrasSince = time.Time{}
}

// restoreExtras loads the good senders and trails from the store.
func (e *Engine) restoreExtras(now time.Time) {
	e.ledger.good.track = true
	e.trails.track = true
	gs, err := e.st.GoodSenders()
	if err != nil {
		e.ctr.storeErrors.Add(1)
		e.log.Error("reading good senders", "err", err)
	}
	for _, g := range gs {
		e.ledger.good.restore(g.Prefix, g.Last, now)
	}
	ts, err := e.st.Trails()
	if err != nil {
		e.ctr.storeErrors.Add(1)
		if !errors.Is(err, store.ErrCorrupt) {
			e.log.Error("reading event trails", "err", err)
		}
	}
	for _, t := range ts {
		if len(t.Events) == 0 {
			continue
		}
		if len(e.trails.m) >= maxTrails {
			e.trails.evict()
		}
		evs := t.Events
		if len(evs) > trailLen {
			evs = evs[len(evs)-trailLen:]
		}
		e.trails.m[t.Prefix] = &trail{events: evs, touched: evs[len(evs)-1].Time}
	}
}

// traceBatch adds the bans by hand and the lifted bans of b to the trails,
// but not those of bulk operations (`ban -file`, feeds): 100,000 of them
// would push every offender's trail out of the bounded set, and their
// bans say what they are (source file or feed, and the reason) for as
// long as they last.
func (e *Engine) traceBatch(b *batch, now time.Time) {
	for _, x := range b.put {
		if x.Source == banner.SourceCLI {
			e.trails.add(x.Prefix, TrailEvent{Time: x.Since, Source: string(x.Source), Kind: string(x.Kind),
				Reason: x.Reason, Outcome: OutcomeBan, BanFor: x.Until.Sub(x.Since), Count: x.Count}, now)
		}
	}
	for p, l := range b.del {
		if b.bulk[p] {
			continue
		}
		te := TrailEvent{Time: now, Source: string(banner.SourceCLI), Reason: l.why, Outcome: OutcomeUnban, Count: l.ban.Count}
		if l.why == "expired" {
			te.Source, te.Outcome = "", OutcomeExpired
		}
		e.trails.add(p, te, now)
	}
}
