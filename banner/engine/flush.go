package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/fleet"
	"github.com/banner-mta/banner/banner/store"
)

// batch accumulates the effects of several events and operations, to be
// written in one store transaction and one firewall call per direction.
type batch struct {
	put     map[netip.Prefix]banner.Ban
	del     map[netip.Prefix]lifted
	hist    map[netip.Prefix]histRec
	pos     map[string]banner.LogPosition // log sources' checkpoints
	waiters []waiter
	// bulk are the prefixes deleted by bulk operations (a feed's entries
	// gone from it): no log line each (their operation logs one). Bans
	// put by one say so by their source (bulkSource).
	bulk map[netip.Prefix]bool
}

// lifted is a ban being removed and why: "unban", "unban all", "expired".
type lifted struct {
	ban banner.Ban
	why string
}

type waiter struct {
	reply chan opResult
	res   opResult
}

func (b *batch) empty() bool {
	return len(b.put) == 0 && len(b.del) == 0 && len(b.hist) == 0 && len(b.pos) == 0 && len(b.waiters) == 0
}

// addBan puts ban. Its history record is not written with it: the ban
// record holds the count and end until the ban ends (ledger.issue).
func (b *batch) addBan(ban banner.Ban) {
	delete(b.del, ban.Prefix)
	b.put[ban.Prefix] = ban
}

func (b *batch) addDel(ban banner.Ban, why string) {
	delete(b.put, ban.Prefix)
	b.del[ban.Prefix] = lifted{ban: ban, why: why}
}

// reset empties b for the next batch. Maps a bulk operation grew are
// made anew, not cleared: clear keeps their size, and every later flush
// would walk it.
func (b *batch) reset() {
	resetMap(&b.put)
	resetMap(&b.del)
	resetMap(&b.hist)
	clear(b.pos)
	resetMap(&b.bulk)
	b.waiters = b.waiters[:0]
}

// bigBatch is the size past which reset makes a batch's map anew.
const bigBatch = 4096

func resetMap[V any](m *map[netip.Prefix]V) {
	if len(*m) > bigBatch {
		*m = make(map[netip.Prefix]V)
		return
	}
	clear(*m)
}

// grow makes room in b's maps for n more bans, at once instead of by
// doubling, when they are empty (a bulk ban, the usual first of its
// batch).
func (b *batch) grow(n int) {
	if n <= bigBatch || len(b.put) > 0 {
		return
	}
	b.put = make(map[netip.Prefix]banner.Ban, n)
}

// bulkSource reports whether a ban from s was put by a bulk operation
// (ban -file, a feed), which logs one line for all.
func bulkSource(s banner.Source) bool { return s == banner.SourceFile || s == banner.SourceFeed }

// unsaved holds the store writes that failed (a full disk, an I/O error),
// newest last-wins per prefix, until a write succeeds. The bans and unbans
// in it are in force in the engine and the firewall, but were not
// confirmed to their callers.
type unsaved struct {
	put  map[netip.Prefix]banner.Ban
	del  map[netip.Prefix]struct{}
	hist map[netip.Prefix]histRec
	pos  map[string]banner.LogPosition
	// since is when the first of the pending writes failed; err the last
	// error.
	since time.Time
	err   error
}

func (u *unsaved) len() int { return len(u.put) + len(u.del) + len(u.hist) }

// pending reports whether anything waits to be written.
func (u *unsaved) pending() bool { return u.len() > 0 || len(u.pos) > 0 }

// merge folds b's store writes into u, b's being newer.
func (u *unsaved) merge(b *batch) {
	if u.put == nil {
		u.put = make(map[netip.Prefix]banner.Ban)
		u.del = make(map[netip.Prefix]struct{})
		u.hist = make(map[netip.Prefix]histRec)
		u.pos = make(map[string]banner.LogPosition)
	}
	for p, x := range b.put {
		delete(u.del, p)
		u.put[p] = x
	}
	for p := range b.del {
		delete(u.put, p)
		u.del[p] = struct{}{}
	}
	for p, h := range b.hist {
		u.hist[p] = h
	}
	for name, p := range b.pos {
		u.pos[name] = p
	}
}

func (u *unsaved) reset() {
	clear(u.put)
	clear(u.del)
	clear(u.hist)
	clear(u.pos)
	u.since, u.err = time.Time{}, nil
}

// storeWrite writes the pending unsaved records and b's in one
// transaction. On failure both stay pending (in e.unsaved) and the store
// is retried by the run loop.
func (e *Engine) storeWrite(b *batch) error {
	if e.st == nil {
		return nil
	}
	if len(b.put) == 0 && len(b.del) == 0 && len(b.hist) == 0 && len(b.pos) == 0 && !e.unsaved.pending() && !e.extrasPending() {
		return nil
	}
	u := &e.unsaved
	// With nothing pending (the usual case) b is written as it is; merged
	// into u only should the write fail. A 100,000-ban batch is not
	// copied through u's maps.
	merged := u.pending()
	if merged {
		u.merge(b)
	}
	var put []store.Ban
	var del []netip.Prefix
	var hist []store.History
	var pos map[string]banner.LogPosition
	if merged {
		put, del, hist, pos = storeRecords(u.put, u.del, u.hist, u.pos)
	} else {
		put, del, hist, pos = storeRecords(b.put, b.del, b.hist, b.pos)
	}
	x := e.extrasToWrite()
	err := e.st.ApplyWithExtras(put, del, hist, pos, x)
	if err != nil && !merged {
		u.merge(b)
	}
	if err == nil {
		e.extrasWritten(x)
		if !u.since.IsZero() {
			e.log.Info("store writable again: pending bans and unbans saved", "records", u.len(),
				"failing_for", time.Since(u.since).Round(time.Second).String())
		}
		u.reset()
		e.ctr.storePending.Store(0)
		e.ctr.storeFailingSince.Store(0)
		return nil
	}
	e.ctr.storeErrors.Add(1)
	e.ctr.storePending.Store(int64(u.len()))
	if u.since.IsZero() {
		u.since = time.Now()
		e.ctr.storeFailingSince.Store(u.since.UnixNano())
		e.log.Error("saving bans failed; they are in force but not saved, and the write is retried", "pending", u.len(), "err", err)
	}
	u.err = err
	e.storeRetryArmed = true
	return err
}

// storeRecords are the store's records of bans to put, prefixes to delete
// and history records.
func storeRecords[D any](puts map[netip.Prefix]banner.Ban, dels map[netip.Prefix]D, hists map[netip.Prefix]histRec,
	pos map[string]banner.LogPosition) ([]store.Ban, []netip.Prefix, []store.History, map[string]banner.LogPosition) {
	put := make([]store.Ban, 0, len(puts))
	for _, x := range puts {
		put = append(put, toStore(x))
	}
	del := make([]netip.Prefix, 0, len(dels))
	for p := range dels {
		del = append(del, p)
	}
	hist := make([]store.History, 0, len(hists))
	for p, h := range hists {
		hist = append(hist, store.History{Prefix: p, Count: h.count, LastEnd: h.lastEnd})
	}
	return put, del, hist, pos
}

// flush writes the batch: one store transaction, then one firewall Add and
// one Remove, then logs and answers the waiting callers. A caller is told
// of success only once its change is in the store.
func (e *Engine) flush() {
	b := &e.b
	now := e.cfg.now()
	if b.empty() && !e.extrasDue(now) {
		return
	}
	defer b.reset()
	e.traceBatch(b, now)
	storeErr := e.storeWrite(b)
	var fwErr error
	if e.fw != nil {
		if len(b.put) > 0 {
			entries := make([]firewall.Entry, 0, len(b.put))
			for _, x := range b.put {
				entries = append(entries, banEntry(x, now))
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
		switch {
		case fwErr != nil && onlyRepaired(fwErr):
			// Applied, after the backend rebuilt its sets: reconcile soon
			// to put back the bans the old sets held. Not a failure.
			e.retryArmed = true
			e.log.Warn("the firewall had lost banner's sets and was rebuilt; re-adding every ban now", "firewall", e.fw.Name(), "err", fwErr)
			fwErr = nil
		case fwErr != nil:
			e.ctr.firewallErrors.Add(1)
			e.retryArmed = true
			e.log.Error("firewall update failed; will retry", "firewall", e.fw.Name(), "err", fwErr)
		}
	}
	for _, x := range b.put {
		e.ctr.bans.Add(1)
		e.ctr.bansByKind[x.Kind.Index()].Add(1)
		if bulkSource(x.Source) {
			continue
		}
		e.log.Info("ban", "ip", x.Prefix.String(), "until", x.Until.Format(time.RFC3339),
			"duration", x.Until.Sub(x.Since).Round(time.Second).String(), "count", x.Count,
			"reason", x.Reason, "source", string(x.Source), "kind", string(x.Kind), "node", x.Node)
		if x.Node == "" && x.Source != banner.SourceFeed {
			// A feed's bans stay with the nodes that load the feed: it is
			// configuration, like an allowlist, and its withdrawals are
			// not shared.
			e.publish(fleet.BanMessage(x, ""))
		}
	}
	for p, l := range b.del {
		if l.why == "unban" {
			e.publish(fleet.Message{Op: fleet.OpUnban, Time: now, Prefix: p})
		}
		if l.why == "expired" {
			e.ctr.expiries.Add(1)
		} else {
			e.ctr.unbans.Add(1)
		}
		if b.bulk[p] {
			continue
		}
		e.log.Info("unban", "ip", p.String(), "why", l.why, "since", l.ban.Since.Format(time.RFC3339),
			"until", l.ban.Until.Format(time.RFC3339), "count", l.ban.Count,
			"reason", l.ban.Reason, "source", string(l.ban.Source))
	}
	var err error
	if storeErr != nil {
		err = fmt.Errorf("%w: in force until banner stops, but %v; banner retries the write (banner status shows it)", banner.ErrNotDurable, storeErr)
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

// onlyRepaired reports whether every error joined in err is a backend's
// firewall.ErrRepaired: the batch was applied.
func onlyRepaired(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if e != nil && !onlyRepaired(e) {
				return false
			}
		}
		return true
	}
	return errors.Is(err, firewall.ErrRepaired)
}
