package engine

import (
	"context"
	"maps"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/banner-mta/banner/banner"
)

// Explanation is one address's story as the engine knows it: the events it
// saw (newest last), the score and how it adds up, the good-sender status,
// the allowlist entry protecting it, its escalation history and what the
// next offence would bring.
type Explanation struct {
	Addr   netip.Addr   `json:"addr"`
	Prefix netip.Prefix `json:"prefix"` // the prefix it is scored and banned by
	At     time.Time    `json:"at"`
	Events []TrailEvent `json:"events"`
	// Terms are the events counting now (within findtime), oldest first;
	// Score is their sum.
	Terms     []ScoreTerm   `json:"terms"`
	Score     float64       `json:"score"`
	MaxRetry  float64       `json:"maxretry"`
	FindTime  time.Duration `json:"findtime"`
	BanTime   time.Duration `json:"bantime"`
	Factor    float64       `json:"factor"`
	MaxTime   time.Duration `json:"maxtime"`
	Forget    time.Duration `json:"forget_after"`
	GoodSince *time.Time    `json:"good_sender_since,omitempty"` // its last delivery, if a good sender
	// GoodFactor divides a good sender's recipient-probing weights.
	GoodFactor  float64       `json:"good_sender_factor"`
	GoodFor     time.Duration `json:"good_sender_for"`
	Allowlisted *netip.Prefix `json:"allowlisted,omitempty"`
	// AllowedName is its forward-confirmed reverse name when allow_fcrdns
	// allowlists it.
	AllowedName string      `json:"allowed_name,omitempty"`
	Ban         *banner.Ban `json:"ban,omitempty"` // the ban in force covering it
	// BanCount and LastEnd are its escalation history: how many bans it
	// had (not yet forgotten) and when the last ended.
	BanCount int       `json:"ban_count"`
	LastEnd  time.Time `json:"last_end,omitzero"`
	// NextCount and NextBanFor are the level and length of its next ban.
	NextCount  int           `json:"next_count"`
	NextBanFor time.Duration `json:"next_ban_for"`
	// ProbesToBan and OthersToBan are how many more events of weight 1
	// within findtime ban it: recipient probes (unknown_user,
	// too_many_errors; a good sender's weigh 1/good_sender_factor) and
	// other kinds (a DNSBL reject, postscreen). 0 when it is banned or
	// allowlisted.
	ProbesToBan int `json:"probes_to_ban"`
	OthersToBan int `json:"others_to_ban"`
	// BannedGroups are the port groups the live bans covering it close
	// (0: none); a ban of one group lets the offences of the other count.
	BannedGroups banner.Groups `json:"banned_groups,omitempty"`
	// Kinds are the scores of the kinds with a rule of their own
	// ([ban.sasl]), each with its own arithmetic, apart from Terms and
	// Score.
	Kinds []KindScore `json:"kinds,omitempty"`
}

// KindScore is the score of a kind with a rule of its own.
type KindScore struct {
	Kind     banner.Kind   `json:"kind"`
	Terms    []ScoreTerm   `json:"terms"`
	Score    float64       `json:"score"`
	MaxRetry float64       `json:"maxretry"`
	FindTime time.Duration `json:"findtime"`
	// Groups is the port group its bans close.
	Groups banner.Groups `json:"groups"`
	// ToBan is how many more events of weight 1 within FindTime ban it;
	// 0 when it is allowlisted or banned in Groups.
	ToBan int `json:"to_ban"`
}

// ScoreTerm is one event counting in the score.
type ScoreTerm struct {
	Time   time.Time   `json:"time"`
	Kind   banner.Kind `json:"kind"`
	Key    string      `json:"key,omitempty"`
	Weight float64     `json:"weight"`
	// Good: the weight is the event's weight / good_sender_factor.
	Good bool `json:"good_sender,omitempty"`
}

// Explain returns addr's story.
func (e *Engine) Explain(ctx context.Context, addr netip.Addr) (Explanation, error) {
	r, err := e.call(ctx, op{kind: opExplain, addr: addr})
	if err != nil {
		return Explanation{}, err
	}
	return *r.explain, nil
}

func (e *Engine) explainAt(addr netip.Addr, now time.Time) *Explanation {
	x := e.ledger.explain(addr, now)
	x.Events = e.trails.get(x.Prefix)
	if x.Ban != nil && x.Ban.Prefix != x.Prefix {
		x.Events = append(x.Events, e.trails.get(x.Ban.Prefix)...)
		slices.SortStableFunc(x.Events, func(a, b TrailEvent) int { return a.Time.Compare(b.Time) })
	}
	return &x
}

// explain fills in what the ledger knows about addr (not the events).
func (s *ledger) explain(addr netip.Addr, now time.Time) Explanation {
	a := banner.NormalizeAddr(addr)
	p := s.key(a)
	c := s.cfg
	x := Explanation{Addr: a, Prefix: p, At: now, MaxRetry: c.MaxRetry, FindTime: c.FindTime, BanTime: c.BanTime,
		Factor: c.Factor, MaxTime: c.MaxTime, Forget: c.ForgetAfter, GoodFactor: c.GoodSenderFactor, GoodFor: c.GoodSenderFor}
	for _, al := range s.allow {
		if al.Contains(a) {
			x.Allowlisted = &al
			break
		}
	}
	if c.AllowName != nil {
		if name, ok := c.AllowName(a); ok {
			x.AllowedName = name
		}
	}
	if last, ok := s.good.since(p, now); ok {
		x.GoodSince = &last
	}
	if win := s.windows[p]; win != nil {
		cutoff := now.Add(-c.FindTime)
		for _, m := range win.marks {
			if m.t.After(cutoff) {
				x.Terms = append(x.Terms, ScoreTerm{Time: m.t, Kind: m.kind, Key: m.key, Weight: m.w, Good: m.good})
				x.Score += m.w
			}
		}
	}
	if b, ok := s.bans.lookup(a); ok && b.Until.After(now) {
		x.Ban = &b
	}
	for _, g := range []banner.Groups{banner.GroupMain, banner.GroupSASL} {
		if s.bans.lookupGroup(a, g, now) {
			x.BannedGroups |= g
		}
	}
	allowed := x.Allowlisted != nil || x.AllowedName != ""
	for _, k := range slices.Sorted(maps.Keys(c.Kinds)) {
		r := c.Kinds[k]
		ks := KindScore{Kind: k, MaxRetry: r.MaxRetry, FindTime: r.FindTime, Groups: c.group(k)}
		if win := s.kindWindows[kindKey{p, k}]; win != nil {
			cutoff := now.Add(-r.FindTime)
			for _, m := range win.marks {
				if m.t.After(cutoff) {
					ks.Terms = append(ks.Terms, ScoreTerm{Time: m.t, Kind: m.kind, Key: m.key, Weight: m.w, Good: m.good})
					ks.Score += m.w
				}
			}
		}
		if !allowed && !x.BannedGroups.Has(ks.Groups) {
			ks.ToBan = eventsToReach(r.MaxRetry-ks.Score, 1)
		}
		x.Kinds = append(x.Kinds, ks)
	}
	hp := p
	if x.Ban != nil {
		hp = x.Ban.Prefix
	}
	if h, ok := s.hist[hp]; ok {
		x.BanCount, x.LastEnd = h.count, h.lastEnd
	}
	x.NextCount, x.NextBanFor = s.next(hp, now)
	if !x.BannedGroups.Has(banner.GroupMain) && !allowed {
		left := c.MaxRetry - x.Score
		x.OthersToBan = eventsToReach(left, 1)
		w := 1.0
		if x.GoodSince != nil {
			w = 1 / c.GoodSenderFactor
		}
		x.ProbesToBan = eventsToReach(left, w)
	}
	return x
}

// eventsToReach is how many events of weight w add up to left (at least 1).
func eventsToReach(left, w float64) int {
	n := int(math.Ceil((left - scoreEpsilon) / w))
	return max(n, 1)
}

// ExplainEvents replays events (a log, through Simulate's logic) and
// returns addr's story as of now (the last event's time if now is zero),
// replaying the events up to now: what the engine would have known then
// had it seen only these events.
func ExplainEvents(cfg Config, events []banner.Event, addr netip.Addr, now time.Time) Explanation {
	evs := inTimeOrder(events)
	sc := newLedger(cfg, &counters{})
	ts := newTrails()
	a := banner.NormalizeAddr(addr)
	p := sc.key(a)
	for _, ev := range evs {
		t := ev.Time
		if !now.IsZero() && t.After(now) {
			break // after the moment asked about
		}
		for _, lb := range sc.expire(t) {
			if lb.Prefix.Contains(a) {
				ts.add(lb.Prefix, TrailEvent{Time: lb.Until, Outcome: OutcomeExpired, Count: lb.Count}, t)
			}
		}
		// Only this address's prefix is followed: the other events
		// cannot change its story.
		if ev := banner.NormalizeAddr(ev.Addr); !ev.IsValid() || sc.key(ev) != p {
			continue
		}
		_, _, tp, te := sc.observeTraced(ev, t)
		if tp.IsValid() {
			ts.add(tp, te, t)
		}
	}
	if now.IsZero() && len(evs) > 0 {
		now = evs[len(evs)-1].Time
	}
	for _, lb := range sc.expire(now) {
		if lb.Prefix.Contains(a) {
			ts.add(lb.Prefix, TrailEvent{Time: lb.Until, Outcome: OutcomeExpired, Count: lb.Count}, now)
		}
	}
	x := sc.explain(addr, now)
	x.Events = ts.get(x.Prefix)
	for q, t := range ts.m {
		if q != x.Prefix {
			x.Events = append(x.Events, t.events...)
		}
	}
	slices.SortStableFunc(x.Events, func(a, b TrailEvent) int { return a.Time.Compare(b.Time) })
	return x
}
