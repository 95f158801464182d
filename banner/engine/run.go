package engine

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/fleet"
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
	// storeRetryMin and storeRetryMax bound the back-off of retried store
	// writes.
	storeRetryMin = time.Second
	storeRetryMax = 30 * time.Second
	// minKernelTimeout: bans with less time left are not re-added.
	minKernelTimeout = time.Second
)

type opKind int

const (
	opBan opKind = iota
	opUnban
	opUnbanAll
	opForget
	opScore
	opTick      // expire + sweep now (tests with a fake clock)
	opReconcile // reconcile now
	opExplain   // an address's story (explain.go)
	opBanMany   // bulk ban (bulk.go)
	opSyncFeed  // make a feed's bans the list's (bulk.go)
)

type op struct {
	kind   opKind
	prefix netip.Prefix
	addr   netip.Addr
	dur    time.Duration
	reason string
	reply  chan opResult
	// bulk operations
	prefixes []netip.Prefix
	feed     string
}

type opResult struct {
	ban     banner.Ban
	n       int
	score   float64
	explain *Explanation
	err     error
	bulk    BulkResult
}

// run is the single writer: it owns the state, the store writes and the
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
	storeRetry := time.NewTimer(storeRetryMin)
	storeRetry.Stop()
	defer storeRetry.Stop()
	storeBackoff := storeRetryMin
	storeRetrying := false // storeRetry is running

	for {
		e.armExpiry(expiry)
		if e.retryArmed {
			retry.Reset(retryDelay)
			e.retryArmed = false
		}
		if e.storeRetryArmed && !storeRetrying {
			storeRetry.Reset(storeBackoff)
			storeRetrying = true
		}
		e.storeRetryArmed = false
		select {
		case <-e.stop:
			e.stopDrain()
			return
		case <-storeRetry.C:
			storeRetrying = false
			// The batch is empty here: this writes only what is pending.
			if err := e.storeWrite(&e.b); err != nil {
				storeBackoff = min(2*storeBackoff, storeRetryMax)
			} else {
				storeBackoff = storeRetryMin
			}
		case it := <-e.events:
			e.handleItem(it)
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

// stopDrain handles every event and operation still queued, in batches,
// and writes them out: what a log source handed over before it stopped is
// handled, and its position saved with it.
func (e *Engine) stopDrain() {
	for {
		n := e.drain()
		e.flush()
		if n == 0 {
			break
		}
	}
	if e.extrasPending() {
		e.storeWrite(&e.b) // the good senders and trails not yet written
	}
	if n := e.unsaved.len(); n > 0 {
		e.log.Error("stopping with bans and unbans the store did not accept: they stay in the firewall until their kernel timeout, but are not restored at the next start",
			"records", n, "err", e.unsaved.err)
	}
}

// drain folds up to maxBatch queued events and operations into the batch
// and returns how many it took.
func (e *Engine) drain() int {
	for n := range maxBatch {
		select {
		case it := <-e.events:
			e.handleItem(it)
		case o := <-e.ops:
			e.handleOp(o)
		default:
			return n
		}
	}
	return maxBatch
}

func (e *Engine) armExpiry(t *time.Timer) {
	t.Stop()
	at, ok := e.ledger.nextExpiry()
	if !ok {
		return
	}
	d := at.Sub(e.cfg.now())
	t.Reset(max(d, 0))
}

func (e *Engine) handleItem(it item) {
	if it.cp != nil {
		e.b.pos[it.cp.Log] = it.cp.Pos
		return
	}
	if it.fm != nil {
		e.handleFleet(*it.fm)
		return
	}
	e.handleEvent(it.ev)
}

func (e *Engine) handleEvent(ev banner.Event) {
	now := e.cfg.now()
	b, ok, p, te := e.ledger.observeTraced(ev, now)
	if ok {
		e.b.addBan(b)
	}
	if p.IsValid() {
		e.trails.add(p, te, now)
	}
	e.ctr.goodSenders.Store(int64(len(e.ledger.good.last)))
	e.ctr.trails.Store(int64(len(e.trails.m)))
	if e.ledger.counted && ev.Source != banner.SourceFleet {
		e.publish(fleet.Message{Op: fleet.OpEvent, Time: ev.Time, Event: ev})
	}
}

func (e *Engine) handleOp(o op) {
	now := e.cfg.now()
	switch o.kind {
	case opBan:
		e.expireAt(now) // so an expired ban of o.prefix does not count as live
		// A ban in force is left as it is, unless it closes only the sasl
		// group's ports: then this one adds the main group's.
		if cur, ok := e.ledger.bans.get(o.prefix); ok && o.dur == 0 && cur.Until.After(now) && cur.Groups.OrMain().Has(banner.GroupMain) {
			o.reply <- opResult{ban: cur, err: fmt.Errorf("ban %v: %w", o.prefix, banner.ErrAlreadyBanned)}
			return
		}
		n, dur := e.ledger.next(o.prefix, now)
		if o.dur > 0 {
			dur = o.dur
		} else {
			dur += e.ledger.jitter()
		}
		reason := o.reason
		if reason == "" {
			reason = "manual"
		}
		b := e.ledger.merged(banner.Ban{Prefix: o.prefix, Since: now, Until: now.Add(dur), Count: n, Reason: reason, Source: banner.SourceCLI, Kind: banner.KindManual, Groups: banner.GroupMain}, now)
		e.ledger.issue(b)
		e.b.addBan(b)
		e.b.waiters = append(e.b.waiters, waiter{reply: o.reply, res: opResult{ban: b}})
	case opUnban:
		e.expireAt(now)
		if lb, h, ok := e.ledger.lift(o.prefix, now); ok {
			e.b.addDel(lb, "unban")
			e.b.hist[o.prefix] = h
			e.b.waiters = append(e.b.waiters, waiter{reply: o.reply})
			return
		}
		err := fmt.Errorf("unban %v: %w", o.prefix, banner.ErrNotBanned)
		if cov := e.ledger.bans.covering(o.prefix.Addr(), now); len(cov) > 0 {
			err = coveredError{prefix: o.prefix, by: cov[0]}
		}
		o.reply <- opResult{err: err}
	case opUnbanAll:
		e.expireAt(now)
		all := e.ledger.bans.list()
		for _, b := range all {
			if lb, h, ok := e.ledger.lift(b.Prefix, now); ok {
				e.b.addDel(lb, "unban all")
				e.b.hist[b.Prefix] = h
			}
		}
		e.b.waiters = append(e.b.waiters, waiter{reply: o.reply, res: opResult{n: len(all)}})
		e.publish(fleet.Message{Op: fleet.OpUnbanAll, Time: now})
	case opForget:
		e.publish(fleet.Message{Op: fleet.OpForget, Time: now, Prefix: o.prefix})
		hist := e.ledger.forget(o.prefix)
		for _, p := range hist {
			e.b.hist[p] = histRec{} // overwrites the stored record
		}
		e.b.waiters = append(e.b.waiters, waiter{reply: o.reply, res: opResult{n: len(hist)}})
	case opScore:
		o.reply <- opResult{score: e.ledger.score(o.addr, now)}
	case opTick:
		e.expireAt(now)
		e.sweep()
		e.b.waiters = append(e.b.waiters, waiter{reply: o.reply})
	case opExplain:
		o.reply <- opResult{explain: e.explainAt(o.addr, now)}
	case opBanMany:
		e.handleBanMany(o, now)
	case opSyncFeed:
		e.handleSyncFeed(o, now)
	case opReconcile:
		_, _, err := e.reconcile(context.Background(), false)
		e.b.waiters = append(e.b.waiters, waiter{reply: o.reply, res: opResult{err: err}})
	}
}

func (e *Engine) expire() { e.expireAt(e.cfg.now()) }

func (e *Engine) expireAt(now time.Time) {
	for _, b := range e.ledger.expire(now) {
		e.b.addDel(b, "expired")
		e.b.hist[b.Prefix] = e.ledger.ended(b)
	}
}

func (e *Engine) sweep() {
	e.ledger.sweep(e.cfg.now())
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

// coveredError is an unban of a prefix with no ban of its own that a wider
// ban covers. It wraps banner.ErrCovered (and so banner.ErrNotBanned).
type coveredError struct{ prefix, by netip.Prefix }

func (e coveredError) Error() string {
	return fmt.Sprintf("unban %v: not banned: it is covered by the ban of %v", e.prefix, e.by)
}

func (e coveredError) Unwrap() error { return banner.ErrCovered }
