package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/fleet"
)

// Publisher shares this node's decisions with its fleet; *fleet.Node is
// one. Publish must not block (it queues, or drops and counts).
type Publisher interface {
	Publish(fleet.Message)
}

// publish hands m to the fleet, if there is one. Called by the run
// goroutine only.
func (e *Engine) publish(m fleet.Message) {
	if e.cfg.Fleet == nil {
		return
	}
	if m.Time.IsZero() {
		m.Time = e.cfg.now()
	}
	e.cfg.Fleet.Publish(m)
	e.ctr.fleetPublished.Add(1)
}

// FleetSink returns the fleet.Sink through which a fleet node hands this
// engine what other nodes decided and saw, and saves its cursor (under
// name, among the log positions) with their effects.
func (e *Engine) FleetSink(name string) fleet.Sink { return fleetSink{e: e, name: name} }

type fleetSink struct {
	e    *Engine
	name string
}

// Apply queues msgs, then the cursor, like a log source's events and
// checkpoint: it waits while the queue is full, never drops.
func (s fleetSink) Apply(ctx context.Context, msgs []fleet.Message, cur fleet.Cursor) error {
	e := s.e
	if !e.started.Load() {
		return ErrNotStarted
	}
	for i := range msgs {
		m := msgs[i]
		if err := e.enqueue(ctx, item{fm: &m}); err != nil {
			return err
		}
	}
	return e.enqueue(ctx, item{cp: &Checkpoint{Log: s.name, Pos: cur.Position()}})
}

// Active returns the live bans, for republishing.
func (s fleetSink) Active() []banner.Ban { return s.e.List() }

// handleFleet applies a message from another node through the engine's
// usual checks: the allowlist (with this host's and Postfix's own
// networks) refuses a fleet ban as it refuses a local one.
func (e *Engine) handleFleet(m fleet.Message) {
	now := e.cfg.now()
	e.ctr.fleetReceived.Add(1)
	if m.Replay {
		e.ctr.fleetReplayed.Add(1)
	}
	switch m.Op {
	case fleet.OpEvent:
		ev := m.Event
		ev.Source, ev.BanFor, ev.Origin = banner.SourceFleet, 0, "fleet:"+m.Node
		if ev.Reason != "" {
			ev.Reason = m.Node + ": " + ev.Reason
		}
		if ev.Time.IsZero() {
			ev.Time = m.Time
		}
		if b, ok := e.ledger.observe(ev, now); ok {
			e.b.addBan(b)
		}
		if e.ledger.counted {
			e.ctr.fleetApplied.Add(1)
		} else {
			e.ctr.fleetIgnored.Add(1)
		}
	case fleet.OpBan:
		p, err := e.ledger.checkBanPrefix(m.Prefix)
		if err != nil {
			e.ctr.fleetRefused.Add(1)
			e.log.Warn("refusing fleet ban", "ip", m.Prefix.String(), "node", m.OriginNode(), "reason", m.Reason, "err", err)
			return
		}
		until := m.Until
		if !until.After(now) {
			e.ctr.fleetIgnored.Add(1)
			return
		}
		if until.Sub(now) > e.cfg.MaxTime {
			until = now.Add(e.cfg.MaxTime)
		}
		e.expireAt(now)
		// The groups the deciding node closed, as this node has them
		// (without [ban.sasl] ports, sasl is the main group); by kind
		// from an older node.
		grp := e.cfg.group(m.Kind)
		if m.Groups != 0 {
			grp = e.cfg.groupsInUse(m.Groups)
		}
		if cur, ok := e.ledger.bans.get(p); ok && !cur.Until.Before(until.Add(-time.Second)) && cur.Groups.OrMain().Has(grp) {
			e.ctr.fleetIgnored.Add(1) // already banned as long: a second node's ban of the same client
			return
		}
		since := m.Since
		if since.IsZero() || since.After(now) {
			since = now
		}
		reason := m.Reason
		if reason == "" {
			reason = fmt.Sprintf("fleet ban from %s", m.OriginNode())
		}
		b := banner.Ban{Prefix: p, Since: since, Until: until, Count: max(m.Count, 1), Reason: reason,
			Source: banner.SourceFleet, Kind: m.Kind, Node: m.OriginNode(), Groups: grp}
		b = e.ledger.merged(b, now)
		e.ledger.issue(b)
		e.b.addBan(b)
		e.ctr.fleetApplied.Add(1)
	case fleet.OpUnban:
		e.expireAt(now)
		if lb, h, ok := e.ledger.lift(m.Prefix, now); ok {
			reason := "fleet unban from " + m.Node
			if m.Reason != "" {
				reason = m.Reason
			}
			e.b.addDel(lb, reason)
			e.b.hist[m.Prefix] = h
			e.ctr.fleetApplied.Add(1)
			return
		}
		e.ctr.fleetIgnored.Add(1)
	case fleet.OpUnbanAll:
		e.expireAt(now)
		for _, b := range e.ledger.bans.list() {
			if lb, h, ok := e.ledger.lift(b.Prefix, now); ok {
				e.b.addDel(lb, "fleet unban all from "+m.Node)
				e.b.hist[b.Prefix] = h
			}
		}
		e.ctr.fleetApplied.Add(1)
	case fleet.OpForget:
		for _, p := range e.ledger.forget(m.Prefix) {
			e.b.hist[p] = histRec{}
		}
		e.ctr.fleetApplied.Add(1)
	default:
		e.ctr.fleetIgnored.Add(1)
	}
}
