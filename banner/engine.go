package banner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/store"
)

// Firewall is the part of a banner/firewall Backend the engine uses.
type Firewall interface {
	Name() string
	Setup(ctx context.Context) error
	// Repair restores missing sets, chains, jumps and match rules; every
	// reconcile calls it first. It returns what was missing.
	Repair(ctx context.Context) ([]string, error)
	Add(ctx context.Context, entries []firewall.Entry) error
	Remove(ctx context.Context, prefixes []netip.Prefix) error
	List(ctx context.Context) ([]firewall.Entry, error)
}

// Errors returned by the engine.
var (
	// ErrNotStarted is returned by calls made before Start.
	ErrNotStarted = errors.New("ban engine not started")
	// ErrClosed is returned by calls made after Close.
	ErrClosed = errors.New("ban engine closed")
	// ErrNotBanned is wrapped by Unban when the prefix has no ban.
	ErrNotBanned = errors.New("not banned")
	// ErrAlreadyBanned is wrapped by Ban, with the ban in force returned
	// unchanged, when the prefix is banned and no duration was given.
	ErrAlreadyBanned = errors.New("already banned")
)

const (
	// maxBatch bounds how many queued events and operations are folded
	// into one store transaction and one firewall call.
	maxBatch = 1024
	// firewallTimeout bounds each firewall call.
	firewallTimeout = 30 * time.Second
	// retryDelay is how soon a failed firewall change is retried by a
	// reconcile.
	retryDelay = 10 * time.Second
	// sweepInterval is how often idle score windows are dropped.
	sweepInterval = time.Minute
	// dropLogInterval rate-limits the "queue full" warning.
	dropLogInterval = 10 * time.Second
	// minKernelTimeout: bans with less time left are not re-added.
	minKernelTimeout = time.Second
)

// Engine scores events, decides bans and carries them out. One goroutine
// owns the state and makes every store write and firewall call; the other
// methods talk to it through channels, except Banned, List and Stats, which
// read a shared table and are safe for the hot policy path.
type Engine struct {
	cfg Config
	log *slog.Logger
	st  *store.Store
	fw  Firewall
	sc  *scorer
	ctr counters

	events chan Event
	ops    chan op
	stop   chan struct{}
	done   chan struct{}

	started   atomic.Bool
	closed    atomic.Bool
	closeOnce sync.Once
	lastDrop  atomic.Int64 // unix nanos of the last "queue full" warning

	// owned by the run goroutine
	b          batch
	retryArmed bool
}

type opKind int

const (
	opBan opKind = iota
	opUnban
	opUnbanAll
	opForget
	opScore
	opTick      // expire + sweep now (tests with a fake clock)
	opReconcile // reconcile now
)

type op struct {
	kind   opKind
	prefix netip.Prefix
	addr   netip.Addr
	dur    time.Duration
	reason string
	reply  chan opResult
}

type opResult struct {
	ban   Ban
	n     int
	score float64
	err   error
}

// batch accumulates the effects of several events and operations, to be
// written in one store transaction and one firewall call per direction.
type batch struct {
	put     map[netip.Prefix]Ban
	del     map[netip.Prefix]lifted
	hist    map[netip.Prefix]histRec
	waiters []waiter
}

// lifted is a ban being removed and why: "unban", "unban all", "expired".
type lifted struct {
	ban Ban
	why string
}

type waiter struct {
	reply chan opResult
	res   opResult
}

func (b *batch) empty() bool {
	return len(b.put) == 0 && len(b.del) == 0 && len(b.hist) == 0 && len(b.waiters) == 0
}

func (b *batch) addBan(ban Ban, h histRec) {
	delete(b.del, ban.Prefix)
	b.put[ban.Prefix] = ban
	b.hist[ban.Prefix] = h
}

func (b *batch) addDel(ban Ban, why string) {
	delete(b.put, ban.Prefix)
	b.del[ban.Prefix] = lifted{ban: ban, why: why}
}

func (b *batch) reset() {
	clear(b.put)
	clear(b.del)
	clear(b.hist)
	b.waiters = b.waiters[:0]
}

// New returns an engine. st may be nil for an engine that persists nothing;
// fw may be nil for one that changes no firewall. Call Start before use.
func New(cfg Config, st *store.Store, fw Firewall) (*Engine, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("banner: %w", err)
	}
	e := &Engine{
		cfg:    cfg,
		log:    cfg.logger(),
		st:     st,
		fw:     fw,
		events: make(chan Event, cfg.QueueSize),
		ops:    make(chan op),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		b: batch{
			put:  make(map[netip.Prefix]Ban),
			del:  make(map[netip.Prefix]lifted),
			hist: make(map[netip.Prefix]histRec),
		},
	}
	e.sc = newScorer(cfg, &e.ctr)
	return e, nil
}

// Start restores the bans saved in the store (dropping expired ones),
// prepares the firewall, re-applies every live ban in one batch and removes
// stray kernel entries, then starts the engine's goroutine. ctx bounds the
// restore only; the engine runs until Close.
func (e *Engine) Start(ctx context.Context) error {
	if e.closed.Load() {
		return ErrClosed
	}
	if !e.started.CompareAndSwap(false, true) {
		return errors.New("ban engine already started")
	}
	now := e.cfg.now()
	t0 := time.Now()
	// The firewall's setup and listing run while the store is read.
	type listing struct {
		kernel  []firewall.Entry
		err     error // setup failed: fatal
		listErr error // listing failed: retried
		took    time.Duration
	}
	fwc := make(chan listing, 1)
	if e.fw != nil {
		go func() {
			var l listing
			if err := e.fw.Setup(ctx); err != nil {
				l.err = fmt.Errorf("setting up firewall %s: %w", e.fw.Name(), err)
			} else if l.kernel, err = e.fw.List(ctx); err != nil {
				l.listErr = fmt.Errorf("listing %s entries: %w", e.fw.Name(), err)
			}
			l.took = time.Since(t0)
			fwc <- l
		}()
	}
	rs, err := e.restoreStore(now)
	tStore := time.Since(t0)
	var l listing
	if e.fw != nil {
		l = <-fwc
	}
	if err != nil {
		e.fail()
		return fmt.Errorf("banner: restoring: %w", err)
	}
	if l.err != nil {
		e.ctr.firewallErrors.Add(1)
		e.fail()
		return fmt.Errorf("banner: %w", l.err)
	}
	var readded, strays int
	if e.fw != nil {
		if l.listErr != nil {
			e.ctr.firewallErrors.Add(1)
			e.retryArmed = true
			err = l.listErr
		} else {
			readded, strays, err = e.reconcileWith(ctx, l.kernel, true)
		}
		if err != nil {
			// The bans hold in the engine (the policy service rejects
			// banned clients); the firewall is retried shortly.
			e.log.Error("restoring bans into the firewall failed; will retry", "err", err)
		}
	}
	e.log.Info("bans restored", "active", rs.restored, "expired", rs.expired, "lifted_allowlisted", rs.allowlisted,
		"missing_in_kernel", readded, "strays_removed", strays, "store_read", tStore.Round(time.Millisecond),
		"firewall_setup_list", l.took.Round(time.Millisecond), "total", time.Since(t0).Round(time.Millisecond))
	go e.run()
	return nil
}

// restoreCounts says what restoreStore found in the store.
type restoreCounts struct {
	restored    int // live bans now held again
	expired     int // bans whose time ran out while banner was down
	allowlisted int // live bans lifted because the allowlist now covers them
}

// restoreStore loads the escalation history and the live bans from the
// store and deletes expired bans and bans the allowlist now covers.
// Corrupt records are logged and skipped.
func (e *Engine) restoreStore(now time.Time) (rc restoreCounts, err error) {
	if e.st == nil {
		return rc, nil
	}
	hs, err := e.st.Histories()
	if err != nil {
		e.ctr.storeErrors.Add(1)
		if !errors.Is(err, store.ErrCorrupt) {
			return rc, err
		}
		e.log.Error("skipping corrupt escalation history records", "err", err)
	}
	for _, h := range hs {
		if now.Sub(h.LastEnd) <= e.cfg.ForgetAfter {
			e.sc.hist[h.Prefix] = histRec{count: h.Count, lastEnd: h.LastEnd}
		}
	}
	if _, err := e.st.PruneHistory(now.Add(-e.cfg.ForgetAfter)); err != nil {
		e.ctr.storeErrors.Add(1)
		e.log.Error("pruning escalation history", "err", err)
	}
	bans, err := e.st.Bans()
	if err != nil {
		e.ctr.storeErrors.Add(1)
		if !errors.Is(err, store.ErrCorrupt) {
			return rc, err
		}
		e.log.Error("skipping corrupt ban records", "err", err)
	}
	var dead []netip.Prefix
	live := make([]Ban, 0, len(bans))
	for _, sb := range bans {
		if !sb.Until.After(now) {
			dead = append(dead, sb.Prefix)
			rc.expired++
			continue
		}
		// The allowlist may have grown since (an admin adding the network
		// of a wrongly banned partner, or a new mynetworks): it wins.
		if a, ok := e.sc.allowOverlap(sb.Prefix); ok {
			e.log.Warn("lifting stored ban: now allowlisted", "prefix", sb.Prefix, "allowlisted", a,
				"until", sb.Until.Format(time.RFC3339), "reason", sb.Reason)
			dead = append(dead, sb.Prefix)
			rc.allowlisted++
			continue
		}
		live = append(live, fromStore(sb))
	}
	e.sc.restore(live)
	if len(dead) > 0 {
		if err := e.st.DeleteBans(dead); err != nil {
			e.ctr.storeErrors.Add(1)
			e.log.Error("deleting expired and allowlisted bans", "count", len(dead), "err", err)
		}
	}
	rc.restored = len(live)
	return rc, nil
}

// fail marks the engine unusable after a failed Start.
func (e *Engine) fail() {
	e.closed.Store(true)
	close(e.done)
}

// Close stops the engine after writing out pending changes. Bans stay in
// the firewall and the store; kernel timeouts still expire them on time.
// Close does not close the store.
func (e *Engine) Close() {
	e.closeOnce.Do(func() {
		e.closed.Store(true)
		close(e.stop)
		if e.started.Load() {
			<-e.done
		}
	})
}

// Report hands an event to the engine without blocking: if the queue is
// full, the event is dropped and counted.
func (e *Engine) Report(ev Event) {
	e.ctr.events[kindIndex(ev.Kind)].Add(1)
	if e.closed.Load() {
		e.ctr.droppedQueueFull.Add(1)
		return
	}
	select {
	case e.events <- ev:
	default:
		e.ctr.droppedQueueFull.Add(1)
		now := time.Now().UnixNano()
		last := e.lastDrop.Load()
		if now-last >= int64(dropLogInterval) && e.lastDrop.CompareAndSwap(last, now) {
			e.log.Warn("ban engine queue full, dropping events", "queue_size", e.cfg.QueueSize,
				"dropped_total", e.ctr.droppedQueueFull.Load())
		}
	}
}

// Ban bans prefix for dur (0 = the escalated default for its next ban) and
// returns once the ban is stored and applied to the firewall. Prefixes
// overlapping the allowlist, too broad, or with host bits set are refused
// before anything is changed. Banning an already banned prefix with dur > 0
// replaces its ban (a new length, counted as a new ban); with dur 0 it
// leaves the ban as it is and returns it with an error wrapping
// ErrAlreadyBanned, rather than escalate it. If the store or the firewall fails, the ban still holds in the engine
// (and the firewall is retried by reconciliation) and the error says so.
func (e *Engine) Ban(ctx context.Context, prefix netip.Prefix, dur time.Duration, reason string) (Ban, error) {
	p, err := e.sc.checkBanPrefix(prefix)
	if err != nil {
		return Ban{}, err // names the prefix and says why it cannot be banned
	}
	if dur < 0 {
		return Ban{}, fmt.Errorf("ban %v: negative duration %v", p, dur)
	}
	r, err := e.call(ctx, op{kind: opBan, prefix: p, dur: dur, reason: reason})
	if err != nil {
		return Ban{}, err
	}
	return r.ban, r.err
}

// Unban lifts the ban of exactly prefix. If prefix is not banned, the error
// wraps ErrNotBanned and names the bans covering it, if any.
func (e *Engine) Unban(ctx context.Context, prefix netip.Prefix) error {
	if !prefix.IsValid() {
		return errors.New("unban: invalid prefix")
	}
	p := unmapPrefix(prefix)
	if p.Masked() != p {
		return fmt.Errorf("unban: %v has host bits set: did you mean %v?", p, p.Masked())
	}
	r, err := e.call(ctx, op{kind: opUnban, prefix: p})
	if err != nil {
		return err
	}
	return r.err
}

// UnbanAll lifts every ban and returns how many there were.
func (e *Engine) UnbanAll(ctx context.Context) (int, error) {
	r, err := e.call(ctx, op{kind: opUnbanAll})
	if err != nil {
		return 0, err
	}
	return r.n, r.err
}

// Forget drops the escalation history and the current scores of every
// prefix overlapping prefix (for an IPv6 address: its /ipv6_prefix), so
// that its next ban is a first ban again (for a false positive). It does
// not lift bans: Unban first, since a ban still in force keeps its count
// (and a restart rebuilds the history from it). It returns how many
// history records were dropped.
func (e *Engine) Forget(ctx context.Context, prefix netip.Prefix) (int, error) {
	if !prefix.IsValid() {
		return 0, errors.New("forget: invalid prefix")
	}
	r, err := e.call(ctx, op{kind: opForget, prefix: unmapPrefix(prefix).Masked()})
	if err != nil {
		return 0, err
	}
	return r.n, r.err
}

// Score returns the current score of addr (of its /ipv6_prefix for IPv6).
func (e *Engine) Score(addr netip.Addr) float64 {
	r, err := e.call(context.Background(), op{kind: opScore, addr: addr})
	if err != nil {
		return 0
	}
	return r.score
}

// Banned returns the ban covering addr, if any. It takes a read lock and a
// few map lookups, and is meant for the policy service's hot path.
func (e *Engine) Banned(addr netip.Addr) (Ban, bool) {
	b, ok := e.sc.bans.lookup(normalize(addr))
	if !ok || !b.Until.After(e.cfg.now()) {
		return Ban{}, false
	}
	return b, true
}

// List returns the active bans sorted by prefix.
func (e *Engine) List() []Ban { return e.sc.bans.list() }

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() Stats {
	s := e.ctr.snapshot()
	s.ActiveBans = e.sc.bans.len()
	return s
}

// call sends an operation to the run goroutine and waits for its result.
func (e *Engine) call(ctx context.Context, o op) (opResult, error) {
	if !e.started.Load() {
		return opResult{}, ErrNotStarted
	}
	o.reply = make(chan opResult, 1)
	select {
	case e.ops <- o:
	case <-e.done:
		return opResult{}, ErrClosed
	case <-ctx.Done():
		return opResult{}, ctx.Err()
	}
	select {
	case r := <-o.reply:
		return r, nil
	case <-ctx.Done():
		return opResult{}, ctx.Err()
	}
}

// run is the single writer: it owns the scorer, the store writes and the
// firewall calls.
func (e *Engine) run() {
	defer close(e.done)
	expiry := time.NewTimer(time.Hour)
	defer expiry.Stop()
	var reconcileC <-chan time.Time
	if e.cfg.ReconcileInterval > 0 {
		t := time.NewTicker(e.cfg.ReconcileInterval)
		defer t.Stop()
		reconcileC = t.C
	}
	sweep := time.NewTicker(sweepInterval)
	defer sweep.Stop()
	retry := time.NewTimer(retryDelay)
	retry.Stop()
	defer retry.Stop()

	for {
		e.armExpiry(expiry)
		if e.retryArmed {
			retry.Reset(retryDelay)
			e.retryArmed = false
		}
		select {
		case <-e.stop:
			e.drain()
			e.flush()
			return
		case ev := <-e.events:
			e.handleEvent(ev)
		case o := <-e.ops:
			e.handleOp(o)
		case <-expiry.C:
			e.expire()
		case <-reconcileC:
			e.periodic()
		case <-retry.C:
			e.reconcileLogged()
		case <-sweep.C:
			e.sweep()
		}
		e.drain()
		e.flush()
	}
}

// drain folds up to maxBatch queued events and operations into the batch.
func (e *Engine) drain() {
	for range maxBatch {
		select {
		case ev := <-e.events:
			e.handleEvent(ev)
		case o := <-e.ops:
			e.handleOp(o)
		default:
			return
		}
	}
}

func (e *Engine) armExpiry(t *time.Timer) {
	t.Stop()
	at, ok := e.sc.nextExpiry()
	if !ok {
		return
	}
	d := at.Sub(e.cfg.now())
	t.Reset(max(d, 0))
}

func (e *Engine) handleEvent(ev Event) {
	now := e.cfg.now()
	if b, h, ok := e.sc.observe(ev, now); ok {
		e.b.addBan(b, h)
	}
}

func (e *Engine) handleOp(o op) {
	now := e.cfg.now()
	switch o.kind {
	case opBan:
		e.expireAt(now) // so an expired ban of o.prefix does not count as live
		if cur, ok := e.sc.bans.get(o.prefix); ok && o.dur == 0 && cur.Until.After(now) {
			o.reply <- opResult{ban: cur, err: fmt.Errorf("ban %v: %w", o.prefix, ErrAlreadyBanned)}
			return
		}
		n, dur := e.sc.next(o.prefix, now)
		if o.dur > 0 {
			dur = o.dur
		}
		reason := o.reason
		if reason == "" {
			reason = "manual"
		}
		b := Ban{Prefix: o.prefix, Since: now, Until: now.Add(dur), Count: n, Reason: reason, Source: SourceCLI, Kind: KindManual}
		e.b.addBan(b, e.sc.issue(b))
		e.b.waiters = append(e.b.waiters, waiter{reply: o.reply, res: opResult{ban: b}})
	case opUnban:
		e.expireAt(now)
		if lb, h, ok := e.sc.lift(o.prefix, now); ok {
			e.b.addDel(lb, "unban")
			e.b.hist[o.prefix] = h
			e.b.waiters = append(e.b.waiters, waiter{reply: o.reply})
			return
		}
		err := fmt.Errorf("unban %v: %w", o.prefix, ErrNotBanned)
		if cov := e.sc.bans.covering(o.prefix.Addr(), now); len(cov) > 0 {
			err = fmt.Errorf("unban %v: %w (it is covered by the ban of %v)", o.prefix, ErrNotBanned, cov[0])
		}
		o.reply <- opResult{err: err}
	case opUnbanAll:
		e.expireAt(now)
		all := e.sc.bans.list()
		for _, b := range all {
			if lb, h, ok := e.sc.lift(b.Prefix, now); ok {
				e.b.addDel(lb, "unban all")
				e.b.hist[b.Prefix] = h
			}
		}
		e.b.waiters = append(e.b.waiters, waiter{reply: o.reply, res: opResult{n: len(all)}})
	case opForget:
		hist := e.sc.forget(o.prefix)
		for _, p := range hist {
			e.b.hist[p] = histRec{} // overwrites the stored record
		}
		e.b.waiters = append(e.b.waiters, waiter{reply: o.reply, res: opResult{n: len(hist)}})
	case opScore:
		o.reply <- opResult{score: e.sc.score(o.addr, now)}
	case opTick:
		e.expireAt(now)
		e.sweep()
		e.b.waiters = append(e.b.waiters, waiter{reply: o.reply})
	case opReconcile:
		_, _, err := e.reconcile(context.Background(), false)
		e.b.waiters = append(e.b.waiters, waiter{reply: o.reply, res: opResult{err: err}})
	}
}

func (e *Engine) expire() { e.expireAt(e.cfg.now()) }

func (e *Engine) expireAt(now time.Time) {
	for _, b := range e.sc.expire(now) {
		e.b.addDel(b, "expired")
	}
}

func (e *Engine) sweep() {
	e.sc.sweep(e.cfg.now())
}

// periodic runs the reconcile and prunes the stored escalation history.
func (e *Engine) periodic() {
	e.reconcileLogged()
	if e.st != nil {
		if _, err := e.st.PruneHistory(e.cfg.now().Add(-e.cfg.ForgetAfter)); err != nil {
			e.ctr.storeErrors.Add(1)
			e.log.Error("pruning escalation history", "err", err)
		}
	}
}

func (e *Engine) reconcileLogged() {
	if _, _, err := e.reconcile(context.Background(), false); err != nil {
		e.log.Error("reconciling firewall", "err", err)
	}
}

// flush writes the batch: one store transaction, then one firewall Add and
// one Remove, then logs and answers the waiting callers.
func (e *Engine) flush() {
	b := &e.b
	if b.empty() {
		return
	}
	defer b.reset()
	now := e.cfg.now()
	var storeErr, fwErr error
	if e.st != nil && (len(b.put) > 0 || len(b.del) > 0 || len(b.hist) > 0) {
		put := make([]store.Ban, 0, len(b.put))
		for _, x := range b.put {
			put = append(put, toStore(x))
		}
		del := make([]netip.Prefix, 0, len(b.del))
		for p := range b.del {
			del = append(del, p)
		}
		hist := make([]store.History, 0, len(b.hist))
		for p, h := range b.hist {
			hist = append(hist, store.History{Prefix: p, Count: h.count, LastEnd: h.lastEnd})
		}
		if err := e.st.Apply(put, del, hist); err != nil {
			e.ctr.storeErrors.Add(1)
			storeErr = err
			e.log.Error("saving bans failed; applying them to the firewall anyway", "bans", len(put), "unbans", len(del), "err", err)
		}
	}
	if e.fw != nil {
		if len(b.put) > 0 {
			entries := make([]firewall.Entry, 0, len(b.put))
			for _, x := range b.put {
				entries = append(entries, firewall.Entry{Prefix: x.Prefix, Timeout: kernelTimeout(x.Until, now)})
			}
			ctx, cancel := context.WithTimeout(context.Background(), firewallTimeout)
			if err := e.fw.Add(ctx, entries); err != nil {
				fwErr = err
			}
			cancel()
		}
		if len(b.del) > 0 {
			del := make([]netip.Prefix, 0, len(b.del))
			for p := range b.del {
				del = append(del, p)
			}
			ctx, cancel := context.WithTimeout(context.Background(), firewallTimeout)
			if err := e.fw.Remove(ctx, del); err != nil {
				fwErr = errors.Join(fwErr, err)
			}
			cancel()
		}
		if fwErr != nil {
			e.ctr.firewallErrors.Add(1)
			e.retryArmed = true
			e.log.Error("firewall update failed; will retry", "firewall", e.fw.Name(), "err", fwErr)
		}
	}
	for _, x := range b.put {
		e.ctr.bans.Add(1)
		e.log.Info("ban", "ip", x.Prefix.String(), "until", x.Until.Format(time.RFC3339),
			"duration", x.Until.Sub(x.Since).Round(time.Second).String(), "count", x.Count,
			"reason", x.Reason, "source", string(x.Source), "kind", string(x.Kind))
	}
	for p, l := range b.del {
		if l.why == "expired" {
			e.ctr.expiries.Add(1)
		} else {
			e.ctr.unbans.Add(1)
		}
		e.log.Info("unban", "ip", p.String(), "why", l.why, "since", l.ban.Since.Format(time.RFC3339),
			"until", l.ban.Until.Format(time.RFC3339), "count", l.ban.Count,
			"reason", l.ban.Reason, "source", string(l.ban.Source))
	}
	var err error
	if storeErr != nil {
		err = fmt.Errorf("in force but not saved: %w", storeErr)
	}
	if fwErr != nil {
		err = errors.Join(err, fmt.Errorf("saved but the firewall update failed (will retry): %w", fwErr))
	}
	for _, w := range b.waiters {
		if w.res.err == nil && err != nil {
			w.res.err = fmt.Errorf("banner: %w", err)
		}
		w.reply <- w.res
	}
}

// kernelTimeout is the kernel timeout for a ban ending at until: the time
// left rounded up to whole seconds, never 0 (which would mean "forever").
func kernelTimeout(until, now time.Time) time.Duration {
	d := until.Sub(now)
	if d < time.Second {
		return time.Second
	}
	return (d + time.Second - 1).Truncate(time.Second)
}

// timeoutSlack is how far a kernel timeout may be from the time a ban has
// left before Start refreshes it.
const timeoutSlack = 10 * time.Second

// reconcile first has the firewall restore its hooks (chain, INPUT jump,
// sets, match rules) if something removed them, then compares the kernel's
// entries with the active bans, re-adds missing bans and removes entries
// without a ban, in one Add and one Remove.
// With refresh (at Start), it also re-adds entries whose kernel timeout is
// off by more than timeoutSlack. It returns how many bans were missing and
// how many strays were removed.
func (e *Engine) reconcile(ctx context.Context, refresh bool) (readded, strays int, err error) {
	if e.fw == nil {
		return 0, 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, firewallTimeout)
	defer cancel()
	// The hooks first: a flushed INPUT or chain, or a destroyed set, stops
	// every ban while the entries look fine. A re-created set or chain is
	// empty: the listing below then finds its bans missing and re-adds them.
	// The backend counts and logs what it restored.
	var repairErr error
	if _, err := e.fw.Repair(ctx); err != nil {
		e.ctr.firewallErrors.Add(1)
		e.retryArmed = true
		repairErr = fmt.Errorf("repairing %s hooks: %w", e.fw.Name(), err)
	}
	kernel, err := e.fw.List(ctx)
	if err != nil {
		e.ctr.reconciles.Add(1)
		e.ctr.firewallErrors.Add(1)
		e.retryArmed = true
		return 0, 0, errors.Join(repairErr, fmt.Errorf("listing %s entries: %w", e.fw.Name(), err))
	}
	readded, strays, err = e.reconcileWith(ctx, kernel, refresh)
	return readded, strays, errors.Join(repairErr, err)
}

// reconcileWith is reconcile given the kernel's entries.
func (e *Engine) reconcileWith(ctx context.Context, kernel []firewall.Entry, refresh bool) (readded, strays int, err error) {
	e.ctr.reconciles.Add(1)
	ctx, cancel := context.WithTimeout(ctx, firewallTimeout)
	defer cancel()
	now := e.cfg.now()
	// Kernel timeout per prefix; -1 = present, timeout unknown or none.
	inKernel := make(map[netip.Prefix]time.Duration, len(kernel))
	for _, k := range kernel {
		d := k.Timeout
		if d <= 0 {
			d = -1
		}
		inKernel[unmapPrefix(k.Prefix).Masked()] = d
	}
	var add []firewall.Entry
	e.sc.bans.each(func(b Ban) {
		left := b.Until.Sub(now)
		if left < minKernelTimeout {
			return // about to expire: leave it to expiry
		}
		kt, present := inKernel[b.Prefix]
		switch {
		case !present:
			readded++
		case refresh && kt > 0 && (kt-left > timeoutSlack || left-kt > timeoutSlack):
		default:
			return
		}
		add = append(add, firewall.Entry{Prefix: b.Prefix, Timeout: kernelTimeout(b.Until, now)})
	})
	var remove []netip.Prefix
	for p := range inKernel {
		if b, ok := e.sc.bans.get(p); !ok || !b.Until.After(now) {
			remove = append(remove, p)
		}
	}
	strays = len(remove)
	var errs []error
	if len(add) > 0 {
		if err := e.fw.Add(ctx, add); err != nil {
			errs = append(errs, fmt.Errorf("re-adding %d bans: %w", len(add), err))
		}
	}
	if len(remove) > 0 {
		if err := e.fw.Remove(ctx, remove); err != nil {
			errs = append(errs, fmt.Errorf("removing %d stray entries: %w", len(remove), err))
		}
	}
	if len(errs) > 0 {
		e.ctr.firewallErrors.Add(1)
		e.retryArmed = true
		return readded, strays, errors.Join(errs...)
	}
	e.ctr.reAdded.Add(uint64(readded))
	e.ctr.strays.Add(uint64(strays))
	if !refresh && (readded > 0 || strays > 0) {
		e.log.Info("firewall reconciled", "firewall", e.fw.Name(), "re_added", readded, "strays_removed", strays)
	}
	return readded, strays, nil
}

func toStore(b Ban) store.Ban {
	return store.Ban{Prefix: b.Prefix, Since: b.Since, Until: b.Until, Count: b.Count,
		Reason: b.Reason, Source: string(b.Source), Kind: string(b.Kind)}
}

func fromStore(b store.Ban) Ban {
	return Ban{Prefix: b.Prefix, Since: b.Since, Until: b.Until, Count: b.Count,
		Reason: b.Reason, Source: Source(b.Source), Kind: Kind(b.Kind)}
}
