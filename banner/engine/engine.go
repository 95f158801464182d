package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/fleet"
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
)

// Engine scores events, decides bans and carries them out. One goroutine
// owns the state and makes every store write and firewall call; the other
// methods talk to it through channels, except Banned, List and Stats, which
// read a shared table and are safe for the hot policy path.
type Engine struct {
	cfg    Config
	log    *slog.Logger
	st     *store.Store
	fw     Firewall
	ledger *ledger
	ctr    counters

	events chan item
	ops    chan op
	stop   chan struct{}
	done   chan struct{}

	started   atomic.Bool
	closed    atomic.Bool
	closeOnce sync.Once
	lastDrop  atomic.Int64 // unix nanos of the last "queue full" warning

	// owned by the run goroutine
	b               batch
	retryArmed      bool      // a firewall change failed: reconcile soon
	unsaved         unsaved   // store writes that failed, retried
	storeRetryArmed bool      // a store write failed: retry with back-off
	trails          *trails   // per-prefix event trails (banner explain)
	extrasSince     time.Time // when good senders or trails first waited to be written
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
		events: make(chan item, cfg.QueueSize),
		ops:    make(chan op),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		b: batch{
			put:  make(map[netip.Prefix]banner.Ban),
			del:  make(map[netip.Prefix]lifted),
			hist: make(map[netip.Prefix]histRec),
			pos:  make(map[string]banner.LogPosition),
			bulk: make(map[netip.Prefix]bool),
		},
	}
	e.ledger = newLedger(cfg, &e.ctr)
	e.trails = newTrails()
	return e, nil
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
func (e *Engine) Report(ev banner.Event) {
	e.ctr.events[ev.Kind.Index()].Add(1)
	if e.closed.Load() {
		e.ctr.droppedQueueFull.Add(1)
		return
	}
	select {
	case e.events <- item{ev: ev}:
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

// item is what the event queue carries: an event, or a log source's
// checkpoint (cp non-nil), which the engine saves with the effects of the
// events queued before it.
type item struct {
	ev banner.Event
	cp *Checkpoint
	fm *fleet.Message // a message from another node of the fleet
}

// Checkpoint is where a log source resumes after a restart: Pos in the log
// named Log. Once Ingest has returned for it, the engine saves it in the
// same store transaction as the bans the events before it decided, or
// later; never before them.
type Checkpoint struct {
	Log string
	Pos banner.LogPosition
}

// Ingest hands a log source's events, then its checkpoint if cp is not
// nil, to the engine. Unlike Report it never drops: it waits while the
// queue is full (back-pressure on the source, whose data is on disk), until
// ctx ends or the engine closes, and returns ErrClosed or ctx's error then.
func (e *Engine) Ingest(ctx context.Context, evs []banner.Event, cp *Checkpoint) error {
	if !e.started.Load() {
		return ErrNotStarted
	}
	for _, ev := range evs {
		e.ctr.events[ev.Kind.Index()].Add(1)
		if err := e.enqueue(ctx, item{ev: ev}); err != nil {
			return err
		}
	}
	if cp == nil {
		return nil
	}
	c := *cp
	return e.enqueue(ctx, item{cp: &c})
}

func (e *Engine) enqueue(ctx context.Context, it item) error {
	select {
	case e.events <- it:
		return nil
	default:
	}
	e.ctr.backPressure.Add(1)
	select {
	case e.events <- it:
		return nil
	case <-e.done:
		return ErrClosed
	case <-e.stop:
		// Closing: the run loop drains what is queued, and may still take
		// this one while it does.
		select {
		case e.events <- it:
			return nil
		case <-e.done:
			return ErrClosed
		}
	case <-ctx.Done():
		return ctx.Err()
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
func (e *Engine) Ban(ctx context.Context, prefix netip.Prefix, dur time.Duration, reason string) (banner.Ban, error) {
	p, err := e.ledger.checkBanPrefix(prefix)
	if err != nil {
		return banner.Ban{}, err // names the prefix and says why it cannot be banned
	}
	if dur < 0 {
		return banner.Ban{}, fmt.Errorf("ban %v: negative duration %v", p, dur)
	}
	r, err := e.call(ctx, op{kind: opBan, prefix: p, dur: dur, reason: reason})
	if err != nil {
		return banner.Ban{}, err
	}
	return r.ban, r.err
}

// Unban lifts the ban of exactly prefix. If prefix is not banned, the error
// wraps ErrNotBanned and names the bans covering it, if any.
func (e *Engine) Unban(ctx context.Context, prefix netip.Prefix) error {
	if !prefix.IsValid() {
		return errors.New("unban: invalid prefix")
	}
	p := banner.UnmapPrefix(prefix)
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
	r, err := e.call(ctx, op{kind: opForget, prefix: banner.UnmapPrefix(prefix).Masked()})
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

// Banned returns the ban covering addr, if any: the most specific; when
// that one closes only the sasl group's ports and a wider live ban closes
// the main group's (a /32 banned for SASL inside a /24 banned by hand),
// its Groups include the main group. It takes a read lock and a few map
// lookups, and is meant for the policy service's hot path.
func (e *Engine) Banned(addr netip.Addr) (banner.Ban, bool) {
	a := banner.NormalizeAddr(addr)
	b, ok := e.ledger.bans.lookup(a)
	if !ok {
		return banner.Ban{}, false // the usual answer, without a clock read
	}
	now := e.cfg.now()
	if !b.Until.After(now) {
		return banner.Ban{}, false
	}
	if !b.Groups.OrMain().Has(banner.GroupMain) && e.ledger.bans.lookupGroup(a, banner.GroupMain, now) {
		b.Groups |= banner.GroupMain // a wider ordinary ban covers it too
	}
	return b, true
}

// List returns the active bans sorted by prefix.
func (e *Engine) List() []banner.Ban { return e.ledger.bans.list() }

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() Stats {
	s := e.ctr.snapshot()
	s.ActiveBans = e.ledger.bans.len()
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
