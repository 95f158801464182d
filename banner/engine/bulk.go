package engine

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/banner-mta/banner/banner"
)

// BulkResult is what a bulk ban or feed sync did.
type BulkResult struct {
	// Banned is how many prefixes got a new ban (or, for a feed, a longer
	// one).
	Banned int `json:"banned"`
	// Already is how many were left as they were: banned already (by
	// anything but this feed, or by it with time enough left).
	Already int `json:"already"`
	// Removed is how many of a feed's bans were lifted because the list no
	// longer holds them.
	Removed int `json:"removed,omitempty"`
	// Refused are the prefixes not banned (allowlisted, too broad), with
	// why; at most maxRefusals of them, Refusals counts them all.
	Refused  []Refusal `json:"refused,omitempty"`
	Refusals int       `json:"refusals"`
}

// Refusal is a prefix a bulk ban refused.
type Refusal struct {
	Prefix netip.Prefix `json:"prefix"`
	Why    string       `json:"why"`
}

// maxRefusals bounds BulkResult.Refused.
const maxRefusals = 20

func (r *BulkResult) refuse(p netip.Prefix, err error) {
	r.Refusals++
	if len(r.Refused) < maxRefusals {
		r.Refused = append(r.Refused, Refusal{Prefix: p, Why: err.Error()})
	}
}

// BanMany bans every prefix for dur (0: the escalated default of each,
// like Ban) with one reason, in one store transaction and one firewall
// call, and returns once they are stored and applied. Prefixes banned
// already are left as they are; those overlapping the allowlist or too
// broad are refused and listed in the result, the others banned anyway.
// The error is the store's or the firewall's, as for Ban.
func (e *Engine) BanMany(ctx context.Context, prefixes []netip.Prefix, dur time.Duration, reason string) (BulkResult, error) {
	if dur < 0 {
		return BulkResult{}, fmt.Errorf("ban: negative duration %v", dur)
	}
	r, err := e.call(ctx, op{kind: opBanMany, prefixes: prefixes, dur: dur, reason: reason})
	if err != nil {
		return BulkResult{}, err
	}
	return r.bulk, r.err
}

// SyncFeed makes the bans of feed name those of prefixes: each listed
// prefix is banned until now + ttl (a ban with less than half of ttl left
// is extended, so that while the feed is reloaded every ttl/2 or more
// often its bans never lapse, and they run out by themselves within ttl
// once banner stops reloading it), and the feed's bans of prefixes no
// longer listed are lifted. A prefix banned by anything else is left to
// that ban; allowlisted or too broad ones are refused.
func (e *Engine) SyncFeed(ctx context.Context, name string, prefixes []netip.Prefix, ttl time.Duration) (BulkResult, error) {
	if name == "" || ttl < time.Second {
		return BulkResult{}, errors.New("sync feed: want a name and a ttl of at least 1s")
	}
	r, err := e.call(ctx, op{kind: opSyncFeed, feed: name, prefixes: prefixes, dur: ttl})
	if err != nil {
		return BulkResult{}, err
	}
	return r.bulk, r.err
}

// FeedReason is the reason of the bans of feed name; it marks them as the
// feed's.
func FeedReason(name string) string { return "feed " + name }

func (e *Engine) handleBanMany(o op, now time.Time) {
	e.expireAt(now)
	reason := o.reason
	if reason == "" {
		reason = "manual"
	}
	var res BulkResult
	e.b.grow(len(o.prefixes))
	for _, p := range o.prefixes {
		p, err := e.ledger.checkBanPrefix(p)
		if err != nil {
			res.refuse(p, err)
			continue
		}
		cur, ok := e.ledger.bans.get(p)
		if ok && cur.Until.After(now) && cur.Groups.OrMain().Has(banner.GroupMain) {
			res.Already++
			continue
		}
		n, dur := e.ledger.next(p, now)
		if o.dur > 0 {
			dur = o.dur
		} else {
			dur += e.ledger.jitter()
		}
		b := banner.Ban{Prefix: p, Since: now, Until: now.Add(dur), Count: n, Reason: reason, Source: banner.SourceFile, Kind: banner.KindManual, Groups: banner.GroupMain}
		if ok {
			b = mergedWith(b, cur, now)
		}
		e.ledger.issue(b)
		e.b.addBan(b) // no log line or trail each: its source says bulk (batch.quiet)
		res.Banned++
	}
	e.log.Info("bulk ban", "banned", res.Banned, "already", res.Already, "refused", res.Refusals, "reason", reason)
	e.b.waiters = append(e.b.waiters, waiter{reply: o.reply, res: opResult{bulk: res}})
}

// isFeedBan reports whether b is a ban of feed name.
func isFeedBan(b banner.Ban, name string) bool {
	return b.Source == banner.SourceFeed && b.Reason == FeedReason(name)
}

func (e *Engine) handleSyncFeed(o op, now time.Time) {
	e.expireAt(now)
	reason := FeedReason(o.feed)
	want := make(map[netip.Prefix]bool, len(o.prefixes))
	var res BulkResult
	for _, p := range o.prefixes {
		p, err := e.ledger.checkBanPrefix(p)
		if err != nil {
			res.refuse(p, err)
			continue
		}
		want[p] = true
		cur, ok := e.ledger.bans.get(p)
		if ok && cur.Until.After(now) && cur.Groups.OrMain().Has(banner.GroupMain) {
			if !isFeedBan(cur, o.feed) || cur.Until.Sub(now) >= o.dur/2 {
				res.Already++
				continue
			}
		}
		b := e.ledger.merged(banner.Ban{Prefix: p, Since: now, Until: now.Add(o.dur), Count: 1, Reason: reason, Source: banner.SourceFeed, Kind: banner.KindFeed, Groups: banner.GroupMain}, now)
		if ok && isFeedBan(cur, o.feed) {
			b.Since = cur.Since
		}
		e.ledger.bans.put(b)
		e.ledger.pushExpiry(b)
		e.b.put[p] = b
		delete(e.b.del, p)
		res.Banned++
	}
	// The feed's bans no longer listed.
	var gone []banner.Ban
	e.ledger.bans.each(func(b banner.Ban) {
		if isFeedBan(b, o.feed) && !want[b.Prefix] {
			gone = append(gone, b)
		}
	})
	for _, b := range gone {
		if lb, _, ok := e.ledger.lift(b.Prefix, now); ok {
			e.b.addDel(lb, "gone from feed "+o.feed)
			e.b.bulk[b.Prefix] = true
			res.Removed++
		}
	}
	e.log.Info("feed synced", "feed", o.feed, "listed", len(o.prefixes), "banned_or_extended", res.Banned,
		"left", res.Already, "removed", res.Removed, "refused", res.Refusals)
	if res.Refusals > 0 {
		var first []string
		for _, r := range res.Refused[:min(3, len(res.Refused))] {
			first = append(first, r.Why)
		}
		e.log.Warn("feed entries refused (allowlisted or too broad)", "feed", o.feed, "count", res.Refusals, "first", strings.Join(first, "; "))
	}
	e.b.waiters = append(e.b.waiters, waiter{reply: o.reply, res: opResult{bulk: res}})
}

// pushExpiry schedules the expiry of b, a ban entered in the table without
// issue (a feed's: no escalation history).
func (s *ledger) pushExpiry(b banner.Ban) {
	// heap.Push would box the item, one allocation per ban
	s.expiry = append(s.expiry, expiryItem{until: b.Until, prefix: b.Prefix})
	heap.Fix(&s.expiry, len(s.expiry)-1)
}
