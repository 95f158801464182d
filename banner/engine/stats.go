package engine

import (
	"sync/atomic"
	"time"

	"github.com/banner-mta/banner/banner"
)

// KindOther is the Stats key for events of a kind banner.Kinds does not list.
const KindOther banner.Kind = "other"

// counters are the engine's metrics, updated atomically.
type counters struct {
	events             [banner.NumKinds + 1]atomic.Uint64
	droppedAllowlisted atomic.Uint64
	droppedEcho        atomic.Uint64
	droppedQueueFull   atomic.Uint64
	backPressure       atomic.Uint64
	droppedInvalid     atomic.Uint64
	droppedStale       atomic.Uint64
	droppedRepeat      atomic.Uint64
	droppedWhileBanned atomic.Uint64
	bans               atomic.Uint64
	bansByKind         [banner.NumKinds + 1]atomic.Uint64
	unbans             atomic.Uint64
	expiries           atomic.Uint64
	reconciles         atomic.Uint64
	reAdded            atomic.Uint64
	strays             atomic.Uint64
	storeErrors        atomic.Uint64
	storePending       atomic.Int64 // records not yet saved
	storeFailingSince  atomic.Int64 // unix nanos; 0 = the store is fine
	firewallErrors     atomic.Uint64
	fleetPublished     atomic.Uint64
	fleetReceived      atomic.Uint64
	fleetApplied       atomic.Uint64
	fleetRefused       atomic.Uint64
	fleetIgnored       atomic.Uint64
	fleetReplayed      atomic.Uint64
	goodSenders        atomic.Int64 // len of the good-sender table, set by the run goroutine
	trails             atomic.Int64 // len of the trail table, likewise
}

// Stats is a snapshot of the engine's counters, for metrics.
type Stats struct {
	// Events counts every event passed to Report, by kind (unknown kinds
	// under KindOther), including those dropped later.
	Events map[banner.Kind]uint64 `json:"events"`
	// DroppedAllowlisted counts events for allowlisted addresses.
	DroppedAllowlisted uint64 `json:"dropped_allowlisted"`
	// DroppedEcho counts events that echoed one from the other source.
	DroppedEcho uint64 `json:"dropped_echo"`
	// DroppedQueueFull counts events Report dropped because the queue was
	// full (or the engine was closed).
	DroppedQueueFull uint64 `json:"dropped_queue_full"`
	// BackPressure counts the times a log source waited for room in the
	// queue (Ingest never drops).
	BackPressure uint64 `json:"back_pressure"`
	// DroppedInvalid counts events with an invalid address, weight or
	// BanFor.
	DroppedInvalid uint64 `json:"dropped_invalid"`
	// DroppedStale counts events older than findtime.
	DroppedStale uint64 `json:"dropped_stale"`
	// DroppedRepeat counts unknown-recipient events for a recipient the
	// client already probed within findtime: a retry, a second message
	// to the same typo, not a new guess.
	DroppedRepeat uint64 `json:"dropped_repeat"`
	// DroppedWhileBanned counts events for addresses already banned.
	DroppedWhileBanned uint64 `json:"dropped_while_banned"`
	// Bans counts bans issued (by score, immediate rules and by hand).
	Bans uint64 `json:"bans"`
	// BansByKind counts them by the kind of the event that decided them
	// (manual by hand, feed from [[feeds]]; unknown kinds under KindOther).
	BansByKind map[banner.Kind]uint64 `json:"bans_by_kind"`
	// Unbans counts bans lifted by hand.
	Unbans uint64 `json:"unbans"`
	// Expiries counts bans that ran out.
	Expiries uint64 `json:"expiries"`
	// ActiveBans is the number of bans in force now.
	ActiveBans int `json:"active_bans"`
	// Reconciles counts comparisons of kernel state with the engine's.
	Reconciles uint64 `json:"reconciles"`
	// ReconcileReAdded counts bans found missing in the kernel and re-added.
	ReconcileReAdded uint64 `json:"reconcile_re_added"`
	// ReconcileStrays counts kernel entries without a ban, removed.
	ReconcileStrays uint64 `json:"reconcile_strays"`
	// StoreErrors counts failed store writes and reads.
	StoreErrors uint64 `json:"store_errors"`
	// StorePending is how many ban, unban and history records failed to be
	// written and wait for the store to accept them.
	StorePending int64 `json:"store_pending"`
	// StoreFailingSince is when the pending writes began to fail; zero when
	// the store is fine.
	StoreFailingSince time.Time `json:"store_failing_since,omitzero"`
	// FirewallErrors counts failed firewall calls.
	FirewallErrors uint64 `json:"firewall_errors"`
	// Fleet counts the fleet messages this engine handed out and handled.
	Fleet FleetStats `json:"fleet"`
	// GoodSenders is how many good senders are remembered, Trails how many
	// addresses have an event trail (banner explain).
	GoodSenders int64 `json:"good_senders"`
	Trails      int64 `json:"trails"`
}

// FleetStats counts the engine's side of the fleet.
type FleetStats struct {
	// Published: decisions and events handed to the fleet to send.
	Published uint64 `json:"published"`
	// Received: messages from other nodes handled.
	Received uint64 `json:"received"`
	// Applied: received bans, unbans, forgets and counted events.
	Applied uint64 `json:"applied"`
	// Refused: received bans of prefixes this node never bans
	// (allowlisted, its own networks, too broad).
	Refused uint64 `json:"refused"`
	// Ignored: received messages with nothing to do (already banned as
	// long, not banned, expired, an event dropped by the scoring).
	Ignored uint64 `json:"ignored"`
	// Replayed: received messages read to catch up (replay or snapshot).
	Replayed uint64 `json:"replayed"`
}

func (c *counters) snapshot() Stats {
	s := Stats{Events: make(map[banner.Kind]uint64, banner.NumKinds+1)}
	for i, k := range banner.Kinds() {
		s.Events[k] = c.events[i].Load()
	}
	s.Events[KindOther] = c.events[banner.NumKinds].Load()
	s.GoodSenders, s.Trails = c.goodSenders.Load(), c.trails.Load()
	s.DroppedAllowlisted = c.droppedAllowlisted.Load()
	s.DroppedEcho = c.droppedEcho.Load()
	s.DroppedQueueFull = c.droppedQueueFull.Load()
	s.BackPressure = c.backPressure.Load()
	s.DroppedInvalid = c.droppedInvalid.Load()
	s.DroppedStale = c.droppedStale.Load()
	s.DroppedRepeat = c.droppedRepeat.Load()
	s.DroppedWhileBanned = c.droppedWhileBanned.Load()
	s.Bans = c.bans.Load()
	s.BansByKind = make(map[banner.Kind]uint64, banner.NumKinds+1)
	for i, k := range banner.Kinds() {
		s.BansByKind[k] = c.bansByKind[i].Load()
	}
	s.BansByKind[KindOther] = c.bansByKind[banner.NumKinds].Load()
	s.Unbans = c.unbans.Load()
	s.Expiries = c.expiries.Load()
	s.Reconciles = c.reconciles.Load()
	s.ReconcileReAdded = c.reAdded.Load()
	s.ReconcileStrays = c.strays.Load()
	s.StoreErrors = c.storeErrors.Load()
	s.StorePending = c.storePending.Load()
	if t := c.storeFailingSince.Load(); t != 0 {
		s.StoreFailingSince = time.Unix(0, t)
	}
	s.FirewallErrors = c.firewallErrors.Load()
	s.Fleet = FleetStats{Published: c.fleetPublished.Load(), Received: c.fleetReceived.Load(), Applied: c.fleetApplied.Load(),
		Refused: c.fleetRefused.Load(), Ignored: c.fleetIgnored.Load(), Replayed: c.fleetReplayed.Load()}
	return s
}
