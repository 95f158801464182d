package engine

import (
	"container/heap"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/banner-mta/banner/banner"
)

// ledger is the engine's state and the decision logic over it, shared by
// the live Engine and Simulate: allowlist, echo de-duplication, per-prefix
// sliding-window scores, escalation history and the table of active bans
// with their expiry order.
// It does no I/O and reads no clock: every method takes the time. It is not
// safe for concurrent use, except that its banTable may be read
// concurrently.
type ledger struct {
	cfg     Config
	allow   []netip.Prefix
	windows map[netip.Prefix]*window
	// kindWindows are the windows of the kinds with rules of their own
	// (Config.Kinds).
	kindWindows map[kindKey]*window
	echoes      map[echoKey][]echoMark
	hist        map[netip.Prefix]histRec
	bans        *banTable
	scored      *scoredTable // windows' scores, for concurrent readers
	expiry      expiryHeap
	ctr         *counters
	good        *goodSenders
	// noJitter: Simulate predicts ban lengths without bantime_jitter.
	noJitter bool
	// counted: the last observe added its event to a score (it was not
	// dropped), so the engine shares it with the fleet.
	counted bool
}

type window struct {
	marks []scoreMark
}

type scoreMark struct {
	t    time.Time
	w    float64
	why  string // the event's reason: the evidence a ban's reason lists
	kind banner.Kind
	key  string // the event's Key: an unknown recipient counts once
	good bool   // a good sender's probe: w is the weight / good_sender_factor
}

type echoKey struct {
	addr netip.Addr
	kind banner.Kind
	key  string
}

type echoMark struct {
	t   time.Time
	src banner.Source
}

// histRec is the escalation record of a prefix.
type histRec struct {
	count   int
	lastEnd time.Time
}

// scoreEpsilon absorbs float rounding in sums such as 10 x 0.2 >= 2.
const scoreEpsilon = 1e-9

func newLedger(cfg Config, ctr *counters) *ledger {
	allow := banner.LoopbackPrefixes()
	for _, p := range cfg.Allowlist {
		allow = append(allow, banner.UnmapPrefix(p).Masked())
	}
	return &ledger{
		cfg:         cfg,
		allow:       allow,
		windows:     make(map[netip.Prefix]*window),
		kindWindows: make(map[kindKey]*window),
		echoes:      make(map[echoKey][]echoMark),
		hist:        make(map[netip.Prefix]histRec),
		bans:        newBanTable(),
		scored:      newScoredTable(),
		ctr:         ctr,
		good:        newGoodSenders(cfg),
	}
}

// key returns the prefix an address is scored and banned by.
func (s *ledger) key(a netip.Addr) netip.Prefix {
	bits := 32
	if a.Is6() {
		bits = s.cfg.IPv6Prefix
	}
	p, _ := a.Prefix(bits)
	return p
}

func (s *ledger) allowed(a netip.Addr) bool {
	for _, p := range s.allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// checkBanPrefix validates p for a manual ban: banner.CheckBanPrefix, and
// no overlap with the allowlist.
func (s *ledger) checkBanPrefix(p netip.Prefix) (netip.Prefix, error) {
	p, err := banner.CheckBanPrefix(p)
	if err != nil {
		return p, err
	}
	if a, ok := s.allowOverlap(p); ok {
		return p, fmt.Errorf("%v overlaps allowlisted %v: refusing to ban: %w", p, a, banner.ErrAllowlisted)
	}
	return p, nil
}

func (s *ledger) allowOverlap(p netip.Prefix) (netip.Prefix, bool) {
	for _, a := range s.allow {
		if a.Overlaps(p) {
			return a, true
		}
	}
	return netip.Prefix{}, false
}

// echo reports whether ev echoes an earlier event from the other source,
// consuming that event's mark; otherwise it records ev's mark.
func (s *ledger) echo(a netip.Addr, ev banner.Event, t time.Time) bool {
	if s.cfg.EchoWindow <= 0 || (ev.Source != banner.SourcePolicy && ev.Source != banner.SourceLog) {
		return false
	}
	k := echoKey{addr: a, kind: ev.Kind, key: ev.Key}
	marks := s.echoes[k]
	for i, m := range marks {
		d := t.Sub(m.t)
		if m.src != ev.Source && d <= s.cfg.EchoWindow && d >= -s.cfg.EchoWindow {
			s.echoes[k] = append(marks[:i], marks[i+1:]...)
			if len(s.echoes[k]) == 0 {
				delete(s.echoes, k)
			}
			return true
		}
	}
	s.echoes[k] = append(marks, echoMark{t: t, src: ev.Source})
	return false
}

// observe scores ev at time now and returns the ban it triggers, if any.
// The ban is already entered in the table and the history.
func (s *ledger) observe(ev banner.Event, now time.Time) (banner.Ban, bool) {
	s.counted = false
	a := banner.NormalizeAddr(ev.Addr)
	w := ev.Weight
	if w == 0 {
		w = 1
	}
	if !a.IsValid() || w < 0 || math.IsNaN(w) || math.IsInf(w, 0) || ev.BanFor < 0 {
		s.ctr.droppedInvalid.Add(1)
		return banner.Ban{}, false
	}
	if s.allowed(a) || s.allowedName(a) {
		s.ctr.droppedAllowlisted.Add(1)
		return banner.Ban{}, false
	}
	t := ev.Time
	if t.IsZero() || t.After(now) {
		t = now
	}
	if ev.Kind == banner.KindDelivered { // no offence: it counts for good_sender_days
		s.good.note(s.key(a), t, now)
		return banner.Ban{}, false
	}
	maxRetry, findTime, own := s.rule(ev.Kind)
	cutoff := now.Add(-findTime)
	if !t.After(cutoff) {
		s.ctr.droppedStale.Add(1)
		return banner.Ban{}, false
	}
	if s.echo(a, ev, t) {
		s.ctr.droppedEcho.Add(1)
		return banner.Ban{}, false
	}
	grp := s.cfg.group(ev.Kind)
	if s.bans.lookupGroup(a, grp, now) {
		s.ctr.droppedWhileBanned.Add(1)
		return banner.Ban{}, false
	}
	p := s.key(a)
	win := s.window(p, ev.Kind, own)
	win.prune(cutoff)
	// A dictionary attack is many distinct recipients. The same unknown
	// recipient again (a retry after 450, one more message to the same
	// typo) is not a new guess and adds nothing.
	if ev.Kind == banner.KindUnknownUser && ev.Key != "" && win.has(ev.Kind, ev.Key) {
		s.ctr.droppedRepeat.Add(1)
		return banner.Ban{}, false
	}
	why := ev.Reason
	if why == "" {
		why = string(ev.Kind)
	}
	w, good := s.goodWeight(p, ev.Kind, w, t)
	win.marks = append(win.marks, scoreMark{t: t, w: w, why: why, kind: ev.Kind, key: ev.Key, good: good})
	s.counted = true
	s.scored.set(p, win.sum(), t.Add(findTime))
	if ev.BanFor <= 0 && win.sum() < maxRetry-scoreEpsilon {
		return banner.Ban{}, false
	}
	reason := why
	if ev.BanFor <= 0 {
		reason = evidence(win, maxRetry, findTime) + s.goodNote(win)
	}
	if q, a, ok := s.narrow(p, a); ok {
		s.dropWindows(p, grp)
		reason += fmt.Sprintf(" [banned as %v: %v overlaps allowlisted %v]", q, p, a)
		p = q
	}
	n, dur := s.next(p, now)
	if ev.BanFor > dur {
		dur = min(ev.BanFor, s.cfg.MaxTime)
	}
	dur += s.jitter()
	b := banner.Ban{Prefix: p, Since: now, Until: now.Add(dur), Count: n, Reason: reason, Source: ev.Source, Kind: ev.Kind, Groups: grp}
	b = s.merged(b, now)
	s.issue(b)
	return b, true
}

// merged is ban b of p joined with the live ban of p in other port groups,
// if there is one: an address banned for both is dropped on the union,
// until the later end.
func (s *ledger) merged(b banner.Ban, now time.Time) banner.Ban {
	cur, ok := s.bans.get(b.Prefix)
	if !ok {
		return b
	}
	return mergedWith(b, cur, now)
}

// mergedWith is merged for cur, the ban in force of b.Prefix.
func mergedWith(b, cur banner.Ban, now time.Time) banner.Ban {
	if !cur.Until.After(now) || b.Groups.OrMain().Has(cur.Groups.OrMain()) {
		return b
	}
	b.Groups = b.Groups.OrMain() | cur.Groups.OrMain()
	if cur.Until.After(b.Until) {
		b.Until = cur.Until
	}
	return b
}

// narrow returns, when p (the prefix addr is banned by) overlaps the
// allowlist, the widest prefix that holds addr and overlaps nothing
// allowlisted, and the allowlisted prefix p overlapped. addr itself is not
// allowlisted, so its host prefix always qualifies.
func (s *ledger) narrow(p netip.Prefix, addr netip.Addr) (netip.Prefix, netip.Prefix, bool) {
	a, ok := s.allowOverlap(p)
	if !ok {
		return p, netip.Prefix{}, false
	}
	for bits := p.Bits() + 1; bits <= addr.BitLen(); bits++ {
		q, _ := addr.Prefix(bits)
		if _, ok := s.allowOverlap(q); !ok {
			return q, a, true
		}
	}
	return netip.PrefixFrom(addr, addr.BitLen()), a, true
}

// maxEvidence is how many distinct event reasons a ban's reason lists.
const maxEvidence = 3

// evidence is the reason of a ban by score: what added up, e.g.
// "log: 550 user unknown <a@example.com>; unknown recipient b@example.com
// (score 2 >= maxretry 2 within 10m)".
func evidence(w *window, maxRetry float64, findTime time.Duration) string {
	var whys []string
	more := 0
	for _, m := range w.marks {
		switch {
		case slices.Contains(whys, m.why):
		case len(whys) < maxEvidence:
			whys = append(whys, m.why)
		default:
			more++
		}
	}
	s := strings.Join(whys, "; ")
	if more > 0 {
		s += fmt.Sprintf("; %d more", more)
	}
	return fmt.Sprintf("%s (score %s >= maxretry %s within %s)", s,
		strconv.FormatFloat(w.sum(), 'g', 4, 64), strconv.FormatFloat(maxRetry, 'g', 4, 64), shortDuration(findTime))
}

// shortDuration prints 10m rather than 10m0s, 1h rather than 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// has reports whether the window holds a mark of kind with key.
func (w *window) has(kind banner.Kind, key string) bool {
	for _, m := range w.marks {
		if m.kind == kind && m.key == key {
			return true
		}
	}
	return false
}

func (w *window) prune(cutoff time.Time) {
	keep := w.marks[:0]
	for _, m := range w.marks {
		if m.t.After(cutoff) {
			keep = append(keep, m)
		}
	}
	clear(w.marks[len(keep):])
	w.marks = keep
}

func (w *window) sum() float64 {
	var s float64
	for _, m := range w.marks {
		s += m.w
	}
	return s
}

// sumSince is the sum of w's marks after cutoff (0 for a nil window).
func (w *window) sumSince(cutoff time.Time) float64 {
	if w == nil {
		return 0
	}
	var s float64
	for _, m := range w.marks {
		if m.t.After(cutoff) {
			s += m.w
		}
	}
	return s
}

// score returns the current score of the prefix a is scored by.
func (s *ledger) score(a netip.Addr, now time.Time) float64 {
	win := s.windows[s.key(banner.NormalizeAddr(a))]
	if win == nil {
		return 0
	}
	cutoff := now.Add(-s.cfg.FindTime)
	var sum float64
	for _, m := range win.marks {
		if m.t.After(cutoff) {
			sum += m.w
		}
	}
	return sum
}

// next returns the escalation level and duration of a new ban of p at now.
func (s *ledger) next(p netip.Prefix, now time.Time) (int, time.Duration) {
	n := 1
	if h, ok := s.hist[p]; ok && now.Sub(h.lastEnd) <= s.cfg.ForgetAfter {
		n = h.count + 1
	}
	return n, s.cfg.escalated(n)
}

// escalated returns bantime * factor^(n-1), capped at maxtime.
func (c Config) escalated(n int) time.Duration {
	d := float64(c.BanTime) * math.Pow(c.Factor, float64(n-1))
	if d >= float64(c.MaxTime) || math.IsNaN(d) {
		return c.MaxTime
	}
	return time.Duration(d)
}

// issue enters ban b in the table and the history. The store's history
// record is written when the ban ends (expired or lifted): until then the
// ban's own record holds its count and end, and restoring the store
// derives the history from it.
func (s *ledger) issue(b banner.Ban) {
	s.bans.put(b)
	s.pushExpiry(b)
	s.dropWindows(b.Prefix, b.Groups.OrMain())
	s.hist[b.Prefix] = histRec{count: b.Count, lastEnd: b.Until}
}

// restore enters bans read back from the store.
func (s *ledger) restore(bans []banner.Ban) {
	for i := range bans {
		// Written only if changed: Start's early firewall load may be
		// reading bans meanwhile, their groups already mapped.
		if g := s.cfg.groupsInUse(bans[i].Groups); g != bans[i].Groups {
			bans[i].Groups = g
		}
	}
	s.bans.putAll(bans)
	if len(bans) > len(s.hist) { // grow once, not by doubling
		old := s.hist
		s.hist = make(map[netip.Prefix]histRec, len(bans)+len(old))
		maps.Copy(s.hist, old)
	}
	s.expiry = slices.Grow(s.expiry, len(bans))
	for _, b := range bans {
		s.expiry = append(s.expiry, expiryItem{until: b.Until, prefix: b.Prefix})
		if h, ok := s.hist[b.Prefix]; !ok || h.count < b.Count || h.lastEnd.Before(b.Until) {
			s.hist[b.Prefix] = histRec{count: max(b.Count, h.count), lastEnd: b.Until}
		}
	}
	heap.Init(&s.expiry)
}

// ended returns the history record to store for b, a ban that just
// expired: the escalation record issue made (a zero record, which deletes
// the stored one, if the history was forgotten since).
func (s *ledger) ended(b banner.Ban) histRec {
	return s.hist[b.Prefix]
}

// lift removes the ban of exactly p before its time. The history's last end
// becomes now, so the quiet period counts from the unban; the escalation
// count is kept.
func (s *ledger) lift(p netip.Prefix, now time.Time) (banner.Ban, histRec, bool) {
	b, ok := s.bans.del(p)
	if !ok {
		return banner.Ban{}, histRec{}, false
	}
	h := s.hist[p]
	if h.count == 0 {
		h.count = b.Count
	}
	if h.lastEnd.After(now) {
		h.lastEnd = now
	}
	s.hist[p] = h
	return b, h, true
}

// forget drops the scores and escalation history of every prefix that
// overlaps p (inside it, or, for an address, the /ipv6_prefix or wider
// manual ban it belongs to) and returns the history keys dropped.
func (s *ledger) forget(p netip.Prefix) []netip.Prefix {
	for k := range s.windows {
		if k.Overlaps(p) {
			delete(s.windows, k)
		}
	}
	for k := range s.kindWindows {
		if k.prefix.Overlaps(p) {
			delete(s.kindWindows, k)
		}
	}
	s.scored.keep(func(k netip.Prefix) bool { return !k.Overlaps(p) })
	var dropped []netip.Prefix
	for k := range s.hist {
		if k.Overlaps(p) {
			delete(s.hist, k)
			dropped = append(dropped, k)
		}
	}
	return dropped
}

// expire removes and returns the bans whose time is up at now.
func (s *ledger) expire(now time.Time) []banner.Ban {
	var out []banner.Ban
	for s.expiry.Len() > 0 {
		top := s.expiry[0]
		if top.until.After(now) {
			break
		}
		heap.Pop(&s.expiry)
		if b, ok := s.bans.get(top.prefix); ok && b.Until.Equal(top.until) {
			s.bans.del(top.prefix)
			out = append(out, b)
		}
	}
	return out
}

// nextExpiry returns when the soonest ban ends.
func (s *ledger) nextExpiry() (time.Time, bool) {
	for s.expiry.Len() > 0 {
		top := s.expiry[0]
		if b, ok := s.bans.get(top.prefix); ok && b.Until.Equal(top.until) {
			return top.until, true
		}
		heap.Pop(&s.expiry) // stale: the ban was lifted or replaced
	}
	return time.Time{}, false
}

// sweep drops idle score windows, old echo marks and forgotten histories,
// and returns the prefixes whose history it forgot.
func (s *ledger) sweep(now time.Time) []netip.Prefix {
	cutoff := now.Add(-s.cfg.FindTime)
	for p, w := range s.windows {
		if w.prune(cutoff); len(w.marks) == 0 {
			delete(s.windows, p)
		}
	}
	for k, w := range s.kindWindows {
		if w.prune(now.Add(-s.cfg.Kinds[k.kind].FindTime)); len(w.marks) == 0 {
			delete(s.kindWindows, k)
		}
	}
	s.scored.keep(func(p netip.Prefix) bool {
		if _, ok := s.windows[p]; ok {
			return true
		}
		for k := range s.cfg.Kinds {
			if _, ok := s.kindWindows[kindKey{p, k}]; ok {
				return true
			}
		}
		return false
	})
	ecut := now.Add(-s.cfg.EchoWindow)
	for k, marks := range s.echoes {
		keep := marks[:0]
		for _, m := range marks {
			if !m.t.Before(ecut) {
				keep = append(keep, m)
			}
		}
		if len(keep) == 0 {
			delete(s.echoes, k)
		} else {
			s.echoes[k] = keep
		}
	}
	s.good.sweep(now)
	var forgot []netip.Prefix
	for p, h := range s.hist {
		if now.Sub(h.lastEnd) > s.cfg.ForgetAfter {
			if _, banned := s.bans.get(p); !banned {
				delete(s.hist, p)
				forgot = append(forgot, p)
			}
		}
	}
	return forgot
}

type expiryItem struct {
	until  time.Time
	prefix netip.Prefix
}

type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].until.Before(h[j].until) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
