// Package metrics exposes banner's counters to Prometheus. It reads each
// part's Stats snapshot at scrape time, so the parts themselves stay free of
// Prometheus.
package metrics

import (
	"maps"
	"net/http"
	"slices"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/banner-mta/banner/banner/dnslist"
	"github.com/banner-mta/banner/banner/engine"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/fleet"
	"github.com/banner-mta/banner/banner/logwatch"
	"github.com/banner-mta/banner/banner/policy"
	"github.com/banner-mta/banner/banner/recipients"
	"github.com/banner-mta/banner/dnsbl"
	"github.com/banner-mta/banner/policyd"
)

// Sources are the Stats functions of the running parts. A nil function
// leaves its metrics out.
type Sources struct {
	Policyd    func() policyd.Stats
	Policy     func() policy.Stats
	DNSBL      func() dnsbl.Stats
	Engine     func() engine.Stats
	Firewall   func() firewall.Stats
	LogWatch   func() logwatch.Stats
	Recipients func() recipients.Stats
	Fleet      func() fleet.Stats
	DNSList    func() dnslist.Stats
}

// New returns a registry with banner's metrics and the Go runtime's.
func New(src Sources) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(&collector{src: src})
	return reg
}

// Handler serves the registry in the Prometheus text format.
func Handler(reg *prometheus.Registry) http.Handler {
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg})
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("banner_"+name, help, labels, nil)
}

// The metrics, in the order README lists them.
var (
	policyRequests    = desc("policy_requests_total", "Policy requests answered, by decision.", "decision")
	policyConnections = desc("policy_connections", "Policy connections open now.")
	policyAccepted    = desc("policy_connections_accepted_total", "Policy connections accepted.")
	policyRefused     = desc("policy_connections_refused_total", "Policy connections refused, by reason.", "reason")
	policyTimeouts    = desc("policy_request_timeouts_total", "Requests answered with fail_action because the decision took longer than request_timeout.")
	policyErrors      = desc("policy_errors_total", "Policy connections closed for trouble, by reason.", "reason")

	dnsblLookups = desc("dnsbl_lookups_total", "DNSBL lookups (one per client check).")
	dnsblListed  = desc("dnsbl_listed_total", "DNSBL lookups whose score reached the threshold.")
	dnsblQueries = desc("dnsbl_queries_total", "DNS queries sent, by zone.", "zone")
	dnsblHits    = desc("dnsbl_cache_hits_total", "Zone answers served from the cache.")
	dnsblMisses  = desc("dnsbl_cache_misses_total", "Zone answers not in the cache.")
	dnsblRatio   = desc("dnsbl_cache_hit_ratio", "Cache hits / (hits + misses) since start.")
	dnsblListing = desc("dnsbl_zone_listings_total", "Lookups in which a zone listed the client, by zone.", "zone")
	dnsblErrors  = desc("dnsbl_errors_total", "Zone errors, by kind (blocked = 127.255.255.x answers such as 'open resolver').", "kind")
	dnsblFailing = desc("dnsbl_zone_failing", "1 while the last query to a zone ended in an error.", "zone")
	dnsblDown    = desc("dnsbl_zone_down", "1 while a zone is skipped after failed queries in a row (failure_backoff).", "zone")
	dnsblLatency = desc("dnsbl_query_duration_seconds", "How long a zone's answers took from the network (all resolvers tried; timeouts included; cache hits not), by zone.", "zone")
	dnsblSkipped = desc("dnsbl_zone_skipped_total", "Lookups that skipped a zone because it was down (answered as a DNS error without a query), by zone.", "zone")

	events      = desc("events_total", "Offender events reported to the engine, by kind.", "kind")
	dropped     = desc("events_dropped_total", "Events not counted, by reason.", "reason")
	activeBans  = desc("active_bans", "Bans in force now.")
	goodSenders = desc("good_senders", "Clients remembered as good senders (their mail was accepted within good_sender_days).")
	bans        = desc("bans_total", "Bans issued.")
	bansByKind  = desc("bans_by_kind_total", "Bans issued, by the kind of offence that decided them (manual: by hand; feed: [[feeds]]).", "kind")
	unbans      = desc("unbans_total", "Bans lifted by hand.")
	expiries    = desc("ban_expiries_total", "Bans that ran out.")
	reconciles  = desc("reconcile_repairs_total", "Firewall entries repaired by reconciliation, by action.", "action")
	storeErrors = desc("store_errors_total", "Failed store reads and writes.")
	storePend   = desc("store_pending_records", "Ban, unban and history records the store did not accept yet (retried); not 0 means the store cannot be written.")
	fwErrors    = desc("firewall_errors_total", "Failed firewall operations.")
	fwOps       = desc("firewall_entries_total", "Firewall entries added or removed, by operation.", "op")
	fwHooks     = desc("firewall_hook_repairs_total", "Pieces of banner's firewall hooks (chain, INPUT jump, set match rule, set) found missing and restored, or foreign rules removed from banner's chain, by reconciliation.")

	logLines   = desc("log_lines_total", "Log lines read.")
	logMatched = desc("log_lines_matched_total", "Log lines matched, by pattern.", "pattern")
	logOwn     = desc("log_own_rejects_total", "Log lines of banner's own policy rejects (not counted again).")
	logIgnored = desc("log_ignored_service_total", "Pattern matches from an ignore_services service (submission, smtps: not counted).")
	logRotates = desc("log_rotations_total", "Log rotations followed, by kind.", "kind")
	logLag     = desc("log_lag_seconds", "How long after it was logged the newest timed entry (a matched file line, any journal entry) had been handled, engine wait included, by source (file path or journal).", "source")
	logUnread  = desc("log_unread_bytes", "Bytes of a log file not read yet at the last poll (size minus offset), by path.", "path")
	logSkipped = desc("log_lines_skipped_total", "Log lines skipped, by reason: too_long (over max_line), match_panic (matching the line panicked: a bug).", "reason")

	rcptChecks  = desc("recipient_checks_total", "Recipients checked against the valid-recipient tables, by verdict.", "verdict")
	rcptEntries = desc("recipient_table_entries", "Addresses and local parts in the valid-recipient tables.")
	rcptReloads = desc("recipient_table_reloads_total", "Loads of the valid-recipient tables, by result (a failed one keeps the previous table).", "result")
	rcptLoaded  = desc("recipient_table_loaded_timestamp_seconds", "When the valid-recipient tables in use were loaded (Unix time).")

	fleetConnected = desc("fleet_connected", "1 while the fleet's Redis is reachable.")
	fleetLag       = desc("fleet_lag_seconds", "Age of the newest fleet stream entry when it was read.")
	fleetNodes     = desc("fleet_nodes_seen", "Fleet nodes seen (heartbeat or message).")
	fleetMessages  = desc("fleet_messages_total", "Fleet messages, by what happened: sent, dropped (send queue full), received (from other nodes), malformed, replayed (read to catch up), applied, refused (allowlisted here), ignored (nothing to do).", "what")
	dnslistQueries = desc("dnslist_queries_total", "Queries the DNS list answered, by answer.", "answer")
)

type collector struct{ src Sources }

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		policyRequests, policyConnections, policyAccepted, policyRefused, policyTimeouts, policyErrors,
		dnsblLookups, dnsblListed, dnsblQueries, dnsblHits, dnsblMisses, dnsblRatio, dnsblListing, dnsblErrors, dnsblFailing,
		dnsblDown, dnsblSkipped, dnsblLatency,
		events, dropped, activeBans, goodSenders, bans, bansByKind, unbans, expiries, reconciles, storeErrors, storePend, fwErrors, fwOps, fwHooks,
		logLines, logMatched, logOwn, logIgnored, logRotates, logSkipped, logLag, logUnread,
		rcptChecks, rcptEntries, rcptReloads, rcptLoaded,
		fleetConnected, fleetLag, fleetNodes, fleetMessages,
		dnslistQueries,
	} {
		ch <- d
	}
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// histogram sends a dnsbl.Latency as a Prometheus histogram in seconds.
func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, l dnsbl.Latency, labels ...string) {
	buckets := make(map[float64]uint64, len(l.Buckets))
	for i, n := range l.Buckets {
		buckets[dnsbl.LatencyBounds[i].Seconds()] = n
	}
	ch <- prometheus.MustNewConstHistogram(d, l.Count, l.Sum.Seconds(), buckets, labels...)
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	if c.src.Policy != nil {
		s := c.src.Policy()
		for d, n := range s.Decisions {
			counter(ch, policyRequests, n, string(d))
		}
		counter(ch, policyRequests, s.Late, "late")
	}
	if c.src.Policyd != nil {
		s := c.src.Policyd()
		gauge(ch, policyConnections, float64(s.Current))
		counter(ch, policyAccepted, s.Accepted)
		counter(ch, policyRefused, s.Refused, "peer_not_allowed")
		counter(ch, policyRefused, s.RefusedPeerUser, "peer_user_not_allowed")
		counter(ch, policyRefused, s.RefusedUserCap, "max_connections_per_user")
		counter(ch, policyRefused, s.Rejected, "max_connections")
		counter(ch, policyTimeouts, s.Timeouts)
		for r, n := range s.Errors {
			counter(ch, policyErrors, n, string(r))
		}
	}
	if c.src.DNSBL != nil {
		s := c.src.DNSBL()
		counter(ch, dnsblLookups, s.Lookups)
		counter(ch, dnsblListed, s.Listed)
		counter(ch, dnsblHits, s.CacheHits)
		counter(ch, dnsblMisses, s.CacheMisses)
		ratio := 0.0
		if total := s.CacheHits + s.CacheMisses; total > 0 {
			ratio = float64(s.CacheHits) / float64(total)
		}
		gauge(ch, dnsblRatio, ratio)
		for _, z := range s.Zones {
			counter(ch, dnsblQueries, z.Queries, z.Zone)
			counter(ch, dnsblListing, z.Listings, z.Zone)
			failing := 0.0
			if z.Failing {
				failing = 1
			}
			gauge(ch, dnsblFailing, failing, z.Zone)
			down := 0.0
			if z.Down {
				down = 1
			}
			gauge(ch, dnsblDown, down, z.Zone)
			counter(ch, dnsblSkipped, z.Skipped, z.Zone)
			histogram(ch, dnsblLatency, z.Latency, z.Zone)
		}
		e := s.Errors
		for kind, n := range map[string]uint64{"timeout": e.Timeout, "servfail": e.ServFail, "refused": e.Refused,
			"rcode": e.Rcode, "blocked": e.Blocked, "bogus": e.Bogus, "mismatch": e.Mismatch, "network": e.Network} {
			counter(ch, dnsblErrors, n, kind)
		}
	}
	if c.src.Engine != nil {
		s := c.src.Engine()
		for k, n := range s.Events {
			counter(ch, events, n, string(k))
		}
		for reason, n := range map[string]uint64{"allowlisted": s.DroppedAllowlisted, "echo": s.DroppedEcho,
			"queue_full": s.DroppedQueueFull, "invalid": s.DroppedInvalid, "stale": s.DroppedStale,
			"already_banned": s.DroppedWhileBanned, "repeat": s.DroppedRepeat} {
			counter(ch, dropped, n, reason)
		}
		gauge(ch, activeBans, float64(s.ActiveBans))
		gauge(ch, goodSenders, float64(s.GoodSenders))
		counter(ch, bans, s.Bans)
		for _, k := range slices.Sorted(maps.Keys(s.BansByKind)) {
			counter(ch, bansByKind, s.BansByKind[k], string(k))
		}
		counter(ch, unbans, s.Unbans)
		counter(ch, expiries, s.Expiries)
		counter(ch, reconciles, s.ReconcileReAdded, "re_added")
		counter(ch, reconciles, s.ReconcileStrays, "stray_removed")
		counter(ch, storeErrors, s.StoreErrors)
		gauge(ch, storePend, float64(s.StorePending))
		counter(ch, fwErrors, s.FirewallErrors)
	}
	if c.src.Fleet != nil {
		s := c.src.Fleet()
		up := 0.0
		if s.Connected {
			up = 1
		}
		gauge(ch, fleetConnected, up)
		gauge(ch, fleetLag, s.Lag.Seconds())
		gauge(ch, fleetNodes, float64(len(s.NodesSeen)))
		for what, n := range map[string]uint64{"sent": s.Sent, "dropped": s.Dropped, "received": s.Received,
			"malformed": s.Malformed, "replayed": s.Replayed} {
			counter(ch, fleetMessages, n, what)
		}
		if c.src.Engine != nil {
			e := c.src.Engine().Fleet
			for what, n := range map[string]uint64{"applied": e.Applied, "refused": e.Refused, "ignored": e.Ignored} {
				counter(ch, fleetMessages, n, what)
			}
		}
	}
	if c.src.Firewall != nil {
		s := c.src.Firewall()
		counter(ch, fwOps, s.Adds, "add")
		counter(ch, fwOps, s.Removes, "remove")
		counter(ch, fwHooks, s.HookRepairs)
	}
	if c.src.LogWatch != nil {
		s := c.src.LogWatch()
		counter(ch, logLines, s.Lines)
		for p, n := range s.Matched {
			counter(ch, logMatched, n, p)
		}
		counter(ch, logOwn, s.OwnRejects)
		counter(ch, logIgnored, s.IgnoredService)
		counter(ch, logRotates, s.Rotations, "rename")
		counter(ch, logRotates, s.Truncations, "truncate")
		counter(ch, logSkipped, s.LongLines, "too_long")
		counter(ch, logSkipped, s.MatchPanics, "match_panic")
		for _, l := range s.Lags {
			gauge(ch, logLag, l.Lag.Seconds(), l.Source)
		}
		for _, f := range s.Files {
			if f.Open {
				gauge(ch, logUnread, float64(max(f.Size-f.Offset, 0)), f.Path)
			}
		}
	}
	if c.src.Recipients != nil {
		s := c.src.Recipients()
		counter(ch, rcptChecks, s.Known, "known")
		counter(ch, rcptChecks, s.Unknown, "unknown")
		counter(ch, rcptChecks, s.NotProtected, "not_protected")
		gauge(ch, rcptEntries, float64(s.Entries))
		counter(ch, rcptReloads, s.Reloads, "ok")
		counter(ch, rcptReloads, s.ReloadErrors, "failed")
		gauge(ch, rcptLoaded, float64(s.LastReload.UnixNano())/1e9)
	}
	if c.src.DNSList != nil {
		s := c.src.DNSList()
		counter(ch, dnslistQueries, s.Banned, "banned")
		counter(ch, dnslistQueries, s.Scored, "scored")
		counter(ch, dnslistQueries, s.NotListed, "not_listed")
		counter(ch, dnslistQueries, s.TestPoint, "test_point")
		counter(ch, dnslistQueries, s.Refused, "refused")
		counter(ch, dnslistQueries, s.Malformed, "malformed")
	}
}
