package engine

import (
	"slices"
	"time"

	"github.com/banner-mta/banner/banner"
)

// Simulate replays events in time order through the engine's scoring,
// allowlist, echo de-duplication, escalation and expiry logic, using each
// event's timestamp as the clock, and returns the bans that would have been
// issued, in order. It touches no store or firewall. Events without a time
// are taken to happen at the time of the previous one. Ban lengths are
// predicted without bantime_jitter. cfg must be valid
// (see Config.Validate); its Now and Logger are ignored.
func Simulate(cfg Config, events []banner.Event) []banner.Ban {
	evs := inTimeOrder(events)
	sc := newLedger(cfg, &counters{})
	sc.noJitter = true
	var out []banner.Ban
	for i, ev := range evs {
		now := ev.Time
		sc.expire(now)
		if i%4096 == 4095 {
			sc.sweep(now)
		}
		if b, ok := sc.observe(ev, now); ok {
			out = append(out, b)
		}
	}
	return out
}

// inTimeOrder returns a copy of events sorted by time (stable), an event
// without a time taking the time of the one before it.
func inTimeOrder(events []banner.Event) []banner.Event {
	evs := slices.Clone(events)
	var last time.Time
	for i := range evs {
		if evs[i].Time.IsZero() {
			evs[i].Time = last
		}
		last = evs[i].Time
	}
	slices.SortStableFunc(evs, func(a, b banner.Event) int { return a.Time.Compare(b.Time) })
	return evs
}
