package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"runtime/debug"
	"strings"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/store"
)

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
	// The firewall's setup and listing run while the store is read. When
	// the firewall is to be loaded whole (a Reloader's restart, or an
	// empty listing and many bans for a Replacer), the load starts as soon
	// as the store's live bans are known, while the engine's tables are
	// still being filled from them.
	type listing struct {
		kernel  []firewall.Entry
		reload  Reloader // not nil: Replace, no List (see Reloader)
		err     error    // setup failed: fatal
		listErr error    // listing failed: retried
		took    time.Duration
		early   bool  // loaded whole from the live bans (loaded, loadErr)
		loaded  int   // entries the early load put in
		loadErr error // the early load's failure
	}
	fwc := make(chan listing, 1)
	livec := make(chan []banner.Ban, 1) // the live bans, read only; closed if the store could not be read
	if e.fw != nil {
		go func() {
			var l listing
			rl, _ := e.fw.(Reloader)
			if err := e.fw.Setup(ctx); err != nil {
				l.err = fmt.Errorf("setting up firewall %s: %w", e.fw.Name(), err)
			} else if rl != nil && rl.ReplaceAtStart() {
				l.reload = rl
			} else if l.kernel, err = e.fw.List(ctx); err != nil {
				l.listErr = fmt.Errorf("listing %s entries: %w", e.fw.Name(), err)
			}
			l.took = time.Since(t0)
			var r Replacer = l.reload
			if r == nil && l.err == nil && l.listErr == nil && len(l.kernel) == 0 {
				r = e.replacer()
			}
			if r != nil {
				if live, ok := <-livec; ok {
					if entries := startEntries(live, e.cfg.now()); l.reload != nil || len(entries) >= replaceMin {
						l.early, l.loaded, l.loadErr = true, len(entries), e.replaceWith(ctx, r, entries)
					}
				}
			}
			fwc <- l
		}()
	}
	sent := false
	rs, err := e.restoreStore(now, func(live []banner.Ban) {
		livec <- live
		sent = true
	})
	if !sent {
		close(livec)
	}
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
	var readded, strays, loaded int
	if e.fw != nil {
		switch {
		case l.early && l.loadErr == nil && l.reload != nil:
			loaded = l.loaded
		case l.early && l.loadErr == nil:
			readded = l.loaded // into an empty firewall: all were missing
		case l.reload != nil:
			e.ctr.firewallErrors.Add(1)
			e.retryArmed = true
			err = fmt.Errorf("loading %d bans into %s: %w", l.loaded, e.fw.Name(), l.loadErr)
		case l.listErr != nil:
			e.ctr.firewallErrors.Add(1)
			e.retryArmed = true
			err = l.listErr
		default:
			if l.early {
				e.log.Warn("replacing the firewall's entries failed; adding them instead", "err", l.loadErr)
			}
			// Not a second Replace after a failed early one.
			readded, strays, err = e.reconcileWith(ctx, l.kernel, true, !l.early)
		}
		if err != nil {
			// The bans hold in the engine (the policy service rejects
			// banned clients); the firewall is retried shortly.
			e.log.Error("restoring bans into the firewall failed; will retry", "err", err)
		}
	}
	e.log.Info("bans restored", "active", rs.restored, "expired", rs.expired, "lifted_allowlisted", rs.allowlisted,
		"missing_in_kernel", readded, "strays_removed", strays, "reloaded", loaded, "store_read", tStore.Round(time.Millisecond),
		"firewall_setup_list", l.took.Round(time.Millisecond), "total", time.Since(t0).Round(time.Millisecond))
	if rs.restored+rs.expired >= freeAfterRestore {
		// Reading a large store leaves garbage several times the live
		// bans' size; the runtime would hand it back to the kernel only
		// slowly, and RSS would show it for minutes. In the background:
		// the bans are in force already.
		go debug.FreeOSMemory()
	}
	go e.run()
	return nil
}

// freeAfterRestore is the number of stored bans from which Start returns
// the memory the restore used to the kernel at once.
const freeAfterRestore = 10_000

// restoreCounts says what restoreStore found in the store.
type restoreCounts struct {
	restored    int // live bans now held again
	expired     int // bans whose time ran out while banner was down
	allowlisted int // live bans lifted because the allowlist now covers them
}

// restoreStore loads the escalation history and the live bans from the
// store and deletes expired bans and bans the allowlist now covers.
// Corrupt records are logged and skipped. onLive, once the bans are read,
// is given the live ones (their port groups those in use) before the
// history is read and the engine's tables are filled (nil without a
// store); whoever reads them meanwhile must not change them, and the
// ledger's restore then writes nothing into them. It is not called if the
// bans could not be read; if the history then cannot be, Start fails with
// the firewall perhaps loaded with the live bans already.
func (e *Engine) restoreStore(now time.Time, onLive func([]banner.Ban)) (rc restoreCounts, err error) {
	if e.st == nil {
		if onLive != nil {
			onLive(nil)
		}
		return rc, nil
	}
	// The bans are sorted out as soon as they are read, and handed to
	// onLive, before the history is read.
	var dead []store.Ban
	var live []banner.Ban
	r, err := e.st.RestoreBansFirst(now.Add(-e.cfg.ForgetAfter), func(bans []store.Ban) {
		live = make([]banner.Ban, 0, len(bans))
		for _, sb := range bans {
			if !sb.Until.After(now) {
				dead = append(dead, sb)
				rc.expired++
				continue
			}
			// The allowlist may have grown since (an admin adding the
			// network of a wrongly banned partner, or a new mynetworks):
			// it wins.
			if a, ok := e.ledger.allowOverlap(sb.Prefix); ok {
				e.log.Warn("lifting stored ban: now allowlisted", "prefix", sb.Prefix, "allowlisted", a,
					"until", sb.Until.Format(time.RFC3339), "reason", sb.Reason)
				dead = append(dead, sb)
				rc.allowlisted++
				continue
			}
			b := fromStore(sb)
			b.Groups = e.ledger.cfg.groupsInUse(b.Groups)
			live = append(live, b)
		}
		if onLive != nil {
			onLive(live)
		}
	})
	if err != nil {
		e.ctr.storeErrors.Add(1)
		if !errors.Is(err, store.ErrCorrupt) {
			return rc, err
		}
		e.log.Error("skipping corrupt records", "err", err)
	}
	if r.PruneErr != nil {
		e.ctr.storeErrors.Add(1)
		e.log.Error("pruning escalation history", "err", r.PruneErr)
	}
	if len(r.Hist) > len(e.ledger.hist) {
		old := e.ledger.hist
		e.ledger.hist = make(map[netip.Prefix]histRec, len(r.Hist)+len(old))
		maps.Copy(e.ledger.hist, old)
	}
	for _, h := range r.Hist {
		e.ledger.hist[h.Prefix] = histRec{count: h.Count, lastEnd: h.LastEnd}
	}
	e.ledger.restore(live)
	if len(dead) > 0 {
		del, hist := e.endedWhileDown(dead, now)
		if err := e.st.Apply(nil, del, hist); err != nil {
			e.ctr.storeErrors.Add(1)
			e.log.Error("deleting expired and allowlisted bans", "count", len(dead), "err", err)
		}
	}
	rc.restored = len(live)
	e.restoreExtras(now)
	return rc, nil
}

// fail marks the engine unusable after a failed Start.
func (e *Engine) fail() {
	e.closed.Store(true)
	close(e.done)
}

// fleetSourcePrefix marks, in a stored ban's source, the fleet node the
// ban came from: "fleet:mx2" (the store's record keeps one source string).
const fleetSourcePrefix = "fleet:"

func toStore(b banner.Ban) store.Ban {
	src := string(b.Source)
	if b.Node != "" {
		src = fleetSourcePrefix + b.Node
	}
	return store.Ban{Prefix: b.Prefix, Since: b.Since, Until: b.Until, Count: b.Count,
		Reason: b.Reason, Source: src, Kind: string(b.Kind), Groups: uint8(b.Groups)}
}

func fromStore(b store.Ban) banner.Ban {
	out := banner.Ban{Prefix: b.Prefix, Since: b.Since, Until: b.Until, Count: b.Count,
		Reason: b.Reason, Source: banner.Source(b.Source), Kind: banner.Kind(b.Kind), Groups: banner.Groups(b.Groups).OrMain()}
	if node, ok := strings.CutPrefix(b.Source, fleetSourcePrefix); ok {
		out.Source, out.Node = banner.SourceFleet, node
	}
	return out
}

// endedWhileDown returns the prefixes of dead, bans that expired while
// banner was down or that the allowlist now covers, to delete, and the
// history records to write with that: a ban's history is its own record
// until it ends (ledger.issue), so the escalation it earned is kept as
// when it ends while banner runs. The ledger's history is updated too.
func (e *Engine) endedWhileDown(dead []store.Ban, now time.Time) ([]netip.Prefix, []store.History) {
	forgetBefore := now.Add(-e.cfg.ForgetAfter)
	del := make([]netip.Prefix, 0, len(dead))
	var hist []store.History
	for _, sb := range dead {
		del = append(del, sb.Prefix)
		end := sb.Until
		if end.After(now) { // lifted now: allowlisted
			end = now
		}
		h, ok := e.ledger.hist[sb.Prefix]
		if sb.Count <= 0 || end.Before(forgetBefore) || ok && h.count >= sb.Count && !h.lastEnd.Before(end) {
			continue
		}
		h = histRec{count: max(h.count, sb.Count), lastEnd: end}
		e.ledger.hist[sb.Prefix] = h
		hist = append(hist, store.History{Prefix: sb.Prefix, Count: h.count, LastEnd: h.lastEnd})
	}
	return del, hist
}
