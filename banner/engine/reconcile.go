package engine

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/firewall"
)

func (e *Engine) reconcileLogged() {
	if _, _, err := e.reconcile(context.Background(), false); err != nil {
		e.log.Error("reconciling firewall", "err", err)
	}
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
	readded, strays, err = e.reconcileWith(ctx, kernel, refresh, true)
	return readded, strays, errors.Join(repairErr, err)
}

// Replacer is a Firewall that can make a list of entries its whole
// content at once (the ipset backend).
type Replacer interface {
	Replace(ctx context.Context, entries []firewall.Entry) error
}

// Reloader is a Replacer whose Setup can tell that listing its content
// would cost more than loading it again (the iptables backend under
// iptables-nft, with its chain in place: the kernel takes seconds to dump
// a chain of 100k rules). When ReplaceAtStart says so after Setup, Start
// makes the live bans the firewall's whole content with Replace, without
// a List: missing bans are back and strays gone by construction, though
// neither is counted.
type Reloader interface {
	Replacer
	ReplaceAtStart() bool
}

// startEntries returns the firewall entries of bans at Start: each ban in
// its port groups with its kernel timeout, leaving out those about to
// expire (left to expiry, as reconcileWith does).
func startEntries(bans []banner.Ban, now time.Time) []firewall.Entry {
	all := make([]firewall.Entry, 0, len(bans))
	for _, b := range bans {
		if b.Until.Sub(now) < minKernelTimeout {
			continue
		}
		all = append(all, banEntry(b, now))
	}
	return all
}

// banEntry is the firewall entry of ban b at now: its prefix in its port
// groups, with its kernel timeout.
func banEntry(b banner.Ban, now time.Time) firewall.Entry {
	return firewall.Entry{Prefix: b.Prefix, Timeout: kernelTimeout(b.Until, now), Groups: b.Groups.OrMain()}
}

// replacer returns the firewall as a Replacer if it is one that can
// replace its entries now, else nil.
func (e *Engine) replacer() Replacer {
	r, ok := e.fw.(Replacer)
	if !ok {
		return nil
	}
	if c, ok := e.fw.(interface{ CanReplace() bool }); ok && !c.CanReplace() {
		return nil
	}
	return r
}

// replaceWith makes entries the firewall's whole content through r (Start,
// for a Reloader or an empty firewall). It counts a reconcile; the caller
// handles a failure.
func (e *Engine) replaceWith(ctx context.Context, r Replacer, entries []firewall.Entry) error {
	e.ctr.reconciles.Add(1)
	ctx, cancel := context.WithTimeout(ctx, firewallTimeout)
	defer cancel()
	return r.Replace(ctx, entries)
}

// replaceMin is the number of missing entries from which Start replaces
// the firewall's content instead of adding to it.
const replaceMin = 1024

// reconcileWith is reconcile given the kernel's entries. With refresh and
// mayReplace, many missing entries are loaded with one Replace (Start).
func (e *Engine) reconcileWith(ctx context.Context, kernel []firewall.Entry, refresh, mayReplace bool) (readded, strays int, err error) {
	e.ctr.reconciles.Add(1)
	ctx, cancel := context.WithTimeout(ctx, firewallTimeout)
	defer cancel()
	now := e.cfg.now()
	// Kernel timeout per prefix (-1 = present, timeout unknown or none),
	// and whether a live ban has it (else it is a stray).
	type kernelEntry struct {
		timeout time.Duration
		banned  bool
		groups  banner.Groups // the port groups whose sets hold it
	}
	inKernel := make(map[netip.Prefix]*kernelEntry, len(kernel))
	entries := make([]kernelEntry, len(kernel))
	for i, k := range kernel {
		d := k.Timeout
		if d <= 0 {
			d = -1
		}
		entries[i].timeout = d
		entries[i].groups = k.Groups.OrMain()
		inKernel[banner.UnmapPrefix(k.Prefix).Masked()] = &entries[i]
	}
	// At Start, with many to add (an empty or re-created set), a
	// Replacer gets the whole content in one swap, about twice as fast as
	// adding to the live set; that drops the strays as well.
	r := e.replacer()
	replace := r != nil && refresh && mayReplace && len(kernel) < e.ledger.bans.len()/2
	// Entries in a port group's sets their ban does not close (a stray
	// in that group): removed from every group, then re-added to theirs.
	var regroup []netip.Prefix
	var add, all []firewall.Entry
	if replace {
		all = make([]firewall.Entry, 0, e.ledger.bans.len())
	}
	e.ledger.bans.each(func(b banner.Ban) {
		left := b.Until.Sub(now)
		ke, present := inKernel[b.Prefix]
		if present && left > 0 {
			ke.banned = true // not a stray
		}
		if left < minKernelTimeout {
			return // about to expire: leave it to expiry
		}
		groups := b.Groups.OrMain()
		entry := banEntry(b, now)
		if replace {
			all = append(all, entry)
		}
		switch {
		case !present:
			readded++
		case ke.groups&^groups != 0: // in a group its ban does not close
			regroup = append(regroup, b.Prefix)
			readded++
		case ke.groups != groups:
			readded++ // missing from one of its groups
		case refresh && ke.timeout > 0 && (ke.timeout-left > timeoutSlack || left-ke.timeout > timeoutSlack):
		default:
			return
		}
		add = append(add, entry)
	})
	var remove []netip.Prefix
	for p, ke := range inKernel {
		if !ke.banned {
			remove = append(remove, p)
		}
	}
	strays = len(remove) + len(regroup)
	var errs []error
	if replace && len(add) >= replaceMin {
		if err := r.Replace(ctx, all); err == nil {
			add, remove, regroup = nil, nil, nil
		} else {
			e.log.Warn("replacing the firewall's entries failed; adding them instead", "err", err)
		}
	}
	if len(regroup) > 0 {
		if err := e.fw.Remove(ctx, regroup); err != nil {
			errs = append(errs, fmt.Errorf("removing %d entries from port groups their bans do not close: %w", len(regroup), err))
		}
	}
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
