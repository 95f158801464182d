// Package daemon assembles banner's parts from a configuration file and runs
// them: the store, the firewall backend, the ban engine, the DNSBL checker,
// the valid-recipient tables, the policy service, the log watcher, the
// control socket and the metrics endpoint.
package daemon

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/control"
	"github.com/banner-mta/banner/banner/dnslist"
	"github.com/banner-mta/banner/banner/engine"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/fleet"
	"github.com/banner-mta/banner/banner/logwatch"
	"github.com/banner-mta/banner/banner/metrics"
	"github.com/banner-mta/banner/banner/ownnets"
	"github.com/banner-mta/banner/banner/policy"
	"github.com/banner-mta/banner/banner/recipients"
	"github.com/banner-mta/banner/banner/store"
	"github.com/banner-mta/banner/dnsbl"
	"github.com/banner-mta/banner/policyd"
)

// shutdownGrace bounds the graceful part of shutdown.
const shutdownGrace = 5 * time.Second

// Daemon is a running banner.
type Daemon struct {
	cfg     *config.File
	log     *slog.Logger
	started time.Time

	store      *store.Store
	firewall   firewall.Backend
	engine     *engine.Engine
	dnsbl      *dnsbl.Checker
	recipients *recipients.Table
	fleet      *fleet.Node // nil unless [fleet] enabled
	policy     *policy.Handler
	server     *policyd.Server
	watcher    *logwatch.Watcher
	control    *control.Server
	dnslist    *dnslist.Server // nil unless [dnslist] listen is set
	metricsLn  net.Listener
	metricsSrv *http.Server
	fwLocks    *firewall.Locks            // held while this daemon manages the firewall chain and sets
	groupPorts map[banner.Groups][]uint16 // the TCP ports of each firewall port group in use
	fwChoice   firewall.Choice            // the backend in use, and why ("auto")
	allowlist  []netip.Prefix             // effective: configured, loopback, own networks
	cfgText    []byte                     // the configuration file as read at start
}

// asRootHint adds "run banner as root" to a permission error: banner run
// changes the firewall and writes root-only directories.
func asRootHint(err error) error {
	if errors.Is(err, fs.ErrPermission) && os.Geteuid() != 0 {
		return fmt.Errorf("%w (banner run needs root: it changes the firewall and keeps its state in root-only directories)", err)
	}
	return err
}

// ownNetworks returns what [ban] allow_local and allow_mynetworks add to
// the allowlist. Failures are logged, not fatal: the configured allowlist
// and loopback still hold, and a box without Postfix has no mynetworks.
func ownNetworks(ctx context.Context, cfg *config.File, log *slog.Logger) []netip.Prefix {
	var own []netip.Prefix
	if cfg.Ban.AllowLocal {
		local, err := ownnets.Local()
		if err != nil {
			log.Warn("not allowlisting this host's addresses", "err", err)
		}
		own = append(own, local...)
	}
	if cfg.Ban.AllowMynetworks {
		nets, skipped, err := ownnets.PostfixMynetworks(ctx, cfg.Ban.PostfixConfigDir, 10*time.Second)
		if err != nil {
			log.Warn("not allowlisting Postfix mynetworks; set [ban] allow_mynetworks = false to silence this", "err", err)
		}
		for _, s := range skipped {
			log.Warn("mynetworks entry not allowlisted; add it to [ban] allowlist if it is yours", "entry", s.Entry, "why", s.Reason)
		}
		own = append(own, narrowOnly(nets, log)...)
	}
	return own
}

// narrowOnly drops (and reports) mynetworks entries wider than /8 (IPv4)
// or /16 (IPv6): see banner.TooBroad.
func narrowOnly(nets []netip.Prefix, log *slog.Logger) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range nets {
		if banner.TooBroad(p) {
			log.Warn("mynetworks entry too broad to allowlist (in Postfix it is an open relay risk too); put the networks you trust in [ban] allowlist",
				"entry", p, "widest_taken", fmt.Sprintf("/%d (IPv4), /%d (IPv6)", banner.MinBits4, banner.MinBits6))
			continue
		}
		out = append(out, p)
	}
	return out
}

// effectiveAllowlist merges the allowlists, sorted and without duplicates
// or prefixes that another one contains.
func effectiveAllowlist(lists ...[]netip.Prefix) []netip.Prefix {
	var all []netip.Prefix
	for _, l := range lists {
		for _, p := range l {
			all = append(all, p.Masked())
		}
	}
	// Widest first, so a prefix is dropped when an earlier one covers it.
	slices.SortFunc(all, func(a, b netip.Prefix) int {
		if c := cmp.Compare(a.Bits(), b.Bits()); c != 0 {
			return c
		}
		return a.Addr().Compare(b.Addr())
	})
	var out []netip.Prefix
next:
	for _, p := range all {
		for _, q := range out {
			if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
				continue next
			}
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return cmp.Compare(a.Bits(), b.Bits())
	})
	return out
}

// New builds every part and opens every socket and file, so that a
// configuration problem is reported before anything runs. On error,
// whatever was opened is closed again.
func New(ctx context.Context, cfg *config.File, log *slog.Logger) (*Daemon, error) {
	if log == nil {
		log = slog.Default()
	}
	d := &Daemon{cfg: cfg, log: log, started: time.Now()}
	if cfg.Path() != "" {
		d.cfgText, _ = os.ReadFile(cfg.Path()) // for Reload's "file changed" notice
	}
	built := false
	defer func() {
		if !built {
			d.closeAfterFailedNew()
		}
	}()
	var err error

	// Everything that can fail cheaply (the store's lock, the chain's lock,
	// the sockets) comes first, and the firewall is touched last: the
	// engine's start reconciles the chain with the store, removing the
	// entries the store does not hold, so a second daemon started by
	// mistake must fail before it gets there.
	if d.store, err = store.Open(cfg.Store.Path); err != nil {
		return nil, asRootHint(err) // "store: ..."
	}
	fwcfg := cfg.FirewallConfig(log.With("part", "firewall"))
	d.fwChoice = firewall.Choose(ctx, fwcfg)
	fwcfg.Backend = d.fwChoice.Backend
	if d.fwChoice.Auto {
		log.Info("firewall backend chosen", "backend", d.fwChoice.Backend, "reason", d.fwChoice.Reason)
	}
	if d.firewall, err = firewall.New(fwcfg); err != nil {
		return nil, err // "firewall config: ..."
	}
	d.groupPorts = fwcfg.GroupPorts()
	lockCfg := fwcfg
	lockCfg.Logger = nil
	if d.fwLocks, err = firewall.Lock(lockCfg); err != nil {
		if errors.Is(err, firewall.ErrLocked) {
			return nil, fmt.Errorf("%w; stop it, or give this one another [firewall] chain, set4 and set6", err)
		}
		return nil, asRootHint(err)
	}
	own := ownNetworks(ctx, cfg, log.With("part", "allowlist"))
	d.allowlist = effectiveAllowlist(cfg.Allowlist(), own)
	if d.dnsbl, err = dnsbl.New(cfg.DNSBLConfig(log.With("part", "dnsbl"))); err != nil {
		return nil, err // "dnsbl: ..."
	}
	ecfg := cfg.EngineConfig(log.With("part", "engine"))
	ecfg.Allowlist = append(ecfg.Allowlist, own...)
	if ecfg.AllowName, err = fcrdnsHook(cfg, d.dnsbl.Resolvers(), log.With("part", "fcrdns")); err != nil {
		return nil, err
	}
	if cfg.Fleet.Enabled {
		if d.fleet, err = newFleet(cfg, d.store, log.With("part", "fleet")); err != nil {
			return nil, err
		}
		ecfg.Fleet = d.fleet
	}
	if d.engine, err = engine.New(ecfg, d.store, d.firewall); err != nil {
		return nil, err
	}
	var rc policy.RecipientChecker
	if len(cfg.Recipients.Domains) > 0 {
		if d.recipients, err = recipients.Load(cfg.RecipientsConfig(log.With("part", "recipients"))); err != nil {
			return nil, fmt.Errorf("recipients: %w", err)
		}
		rc = unknownRecipients{d.recipients}
	}
	pcfg, err := cfg.PolicyConfig(log.With("part", "policy"))
	if err != nil {
		return nil, err
	}
	pcfg.Allowlist = append(pcfg.Allowlist, own...)
	if d.policy, err = policy.New(pcfg, d.engine, d.dnsbl, rc); err != nil {
		return nil, err
	}
	if d.server, err = policyd.New(cfg.PolicydConfig(log.With("part", "policyd")), d.policy); err != nil {
		return nil, err // "policyd config: ..."
	}
	if err = d.server.Listen(cfg.Policy.Listen...); err != nil {
		return nil, err // "policyd listen ADDR: ..."
	}
	if len(cfg.LogWatch.Files) > 0 || cfg.LogWatch.Journal {
		wcfg, err := cfg.LogWatchConfig(log.With("part", "logwatch"))
		if err != nil {
			return nil, err
		}
		wcfg.Positions = logPositions{d}
		wcfg.JournalCommand, wcfg.JournalArgs = journalctlCommand, journalctlArgs
		if d.watcher, err = logwatch.New(wcfg, d.reportMatch); err != nil {
			return nil, err // "logwatch: ..."
		}
	}
	if d.control, err = control.Listen(cfg.Control.Socket, controlHandler{d}, log.With("part", "control")); err != nil {
		return nil, err
	}
	if cfg.DNSList.Listen != "" {
		if d.dnslist, err = dnslist.New(cfg.DNSListConfig(log.With("part", "dnslist")), d.engine); err != nil {
			return nil, err // "dnslist: ..."
		}
		if err = d.dnslist.Listen(""); err != nil {
			return nil, err // "dnslist listen udp ADDR: ..."
		}
	}
	if cfg.Metrics.Listen != "" {
		if d.metricsLn, err = net.Listen("tcp", cfg.Metrics.Listen); err != nil {
			return nil, fmt.Errorf("metrics: %w", err)
		}
		src := metrics.Sources{
			Policyd:  d.server.Stats,
			Policy:   d.policy.Stats,
			DNSBL:    d.dnsbl.Stats,
			Engine:   d.engine.Stats,
			Firewall: d.firewall.Stats,
			LogWatch: d.logwatchStats,
		}
		if d.recipients != nil {
			src.Recipients = d.recipients.Stats
		}
		if d.fleet != nil {
			src.Fleet = d.fleet.Stats
		}
		if d.dnslist != nil {
			src.DNSList = d.dnslist.Stats
		}
		reg := metrics.New(src)
		mux := http.NewServeMux()
		mux.Handle("/metrics", metrics.Handler(reg))
		d.metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	}
	// Nothing is served before Run: policy requests and control commands
	// wait in the listen queues until the engine has started.
	if err = d.engine.Start(ctx); err != nil {
		return nil, err
	}
	built = true
	return d, nil
}

func (d *Daemon) logwatchStats() logwatch.Stats {
	if d.watcher == nil {
		return logwatch.Stats{}
	}
	return d.watcher.Stats()
}

// reportMatch hands a log-watcher match to the engine, waiting while its
// queue is full: the log is on disk, so a backlog slows the reading down
// instead of losing events.
func (d *Daemon) reportMatch(m logwatch.Match) {
	_ = d.engine.Ingest(context.Background(), []banner.Event{m.Event()}, nil)
}

// logPositions gives the log sources their saved positions from the store
// and hands their new positions to the engine, which saves each one with
// the effects of the events read before it (see engine.Checkpoint).
type logPositions struct{ d *Daemon }

func (p logPositions) LogPosition(path string) (banner.LogPosition, bool, error) {
	return p.d.store.LogPosition(path)
}

func (p logPositions) SetLogPosition(path string, pos banner.LogPosition) error {
	return p.d.engine.Ingest(context.Background(), nil, &engine.Checkpoint{Log: path, Pos: pos})
}

// Run serves until ctx ends, then shuts everything down. Bans stay in the
// firewall and the store.
func (d *Daemon) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	spawn := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	spawn("policy service", d.server.Serve)
	spawn("control socket", d.control.Serve)
	if d.watcher != nil {
		spawn("log watcher", d.watcher.Run)
	}
	if d.fleet != nil {
		sink := d.engine.FleetSink(fleet.CursorName(d.cfg.Fleet.KeyPrefix))
		spawn("fleet", func(ctx context.Context) error { return d.fleet.Run(ctx, sink) })
	}
	if d.dnslist != nil {
		spawn("dns list", d.dnslist.Serve)
	}
	for _, fd := range d.cfg.Feeds {
		spawn("feed "+fd.Name, func(ctx context.Context) error { return d.runFeed(ctx, fd) })
	}
	if d.recipients != nil {
		spawn("recipients", func(ctx context.Context) error {
			d.recipients.WatchChanges(ctx, time.Duration(d.cfg.Recipients.ReloadInterval))
			return nil
		})
	}
	if d.metricsSrv != nil {
		spawn("metrics", func(ctx context.Context) error {
			stop := context.AfterFunc(ctx, func() { d.metricsSrv.Close() })
			defer stop()
			if err := d.metricsSrv.Serve(d.metricsLn); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	d.log.Info("banner running", "policy", d.server.Listeners(), "firewall", d.firewall.Name(),
		"ports", d.cfg.Firewall.Ports, "zones", d.cfg.DNSBL.Zones, "logs", d.cfg.LogWatch.Files, "journal", d.cfg.LogWatch.Journal,
		"control", d.cfg.Control.Socket, "metrics", d.cfg.Metrics.Listen, "active_bans", len(d.engine.List()))
	<-ctx.Done()

	sctx, scancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer scancel()
	if err := d.server.Shutdown(sctx); err != nil {
		d.log.Warn("policy service shutdown", "err", err)
	}
	wg.Wait()
	d.close()
	d.log.Info("banner stopped; bans stay in force")
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// Reload re-reads the valid-recipient tables (SIGHUP). Other settings
// need a restart; if the configuration file changed since start, it says
// so (and whether the new file is valid).
func (d *Daemon) Reload() {
	if d.recipients != nil {
		if err := d.recipients.Reload(); err != nil { // logs its own success
			d.log.Error("reloading recipient tables; keeping the old ones", "err", err)
		}
	}
	path := d.cfg.Path()
	if path == "" {
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		d.log.Warn("SIGHUP: cannot read the configuration file", "path", path, "err", err)
		return
	}
	if bytes.Equal(data, d.cfgText) {
		return
	}
	if _, err := config.Parse(path, data); err != nil {
		d.log.Error("SIGHUP: the configuration file changed and is now invalid; the running configuration stays", "err", err)
		return
	}
	d.log.Warn("SIGHUP: the configuration file changed; SIGHUP only re-reads recipient tables, restart banner to apply the rest", "path", path)
}

// closeAfterFailedNew releases what a failed New had opened.
func (d *Daemon) closeAfterFailedNew() {
	if d.server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		d.server.Shutdown(ctx)
		cancel()
	}
	d.close()
}

func (d *Daemon) close() {
	if d.control != nil {
		d.control.Close()
	}
	if d.dnslist != nil {
		d.dnslist.Close() // only what Serve did not run on
	}
	if d.metricsSrv != nil {
		d.metricsSrv.Close()
	} else if d.metricsLn != nil {
		d.metricsLn.Close()
	}
	if d.engine != nil {
		d.engine.Close()
	}
	if d.fleet != nil {
		d.fleet.Close()
	}
	if d.store != nil {
		if err := d.store.Close(); err != nil {
			d.log.Error("closing store", "err", err)
		}
	}
	d.fwLocks.Release()
}

// newFleet builds the fleet node, resuming from the cursor the store saved
// with what the engine last applied.
func newFleet(cfg *config.File, st *store.Store, log *slog.Logger) (*fleet.Node, error) {
	fc := cfg.FleetConfig(log)
	pos, _, err := st.LogPosition(fleet.CursorName(fc.KeyPrefix))
	if err != nil {
		log.Error("fleet: reading the saved stream position; taking a snapshot instead", "err", err)
	}
	n, err := fleet.New(fc, fleet.CursorFromPosition(pos))
	if err != nil {
		return nil, err
	}
	log.Info("fleet enabled", "node", fc.Node, "redis", redactURL(fc.URL), "key_prefix", fc.KeyPrefix)
	return n, nil
}

// redactURL drops a password from a Redis URL for the log.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable)"
	}
	return u.Redacted()
}

// unknownRecipients adapts a recipients.Table to policy.RecipientChecker.
type unknownRecipients struct{ t *recipients.Table }

func (u unknownRecipients) Unknown(rcpt string) bool { return u.t.Check(rcpt) == recipients.Unknown }

// controlHandler answers the CLI through the control socket.
type controlHandler struct{ d *Daemon }

func (d *Daemon) banInfo(b banner.Ban) control.BanInfo {
	return control.BanInfo{Prefix: b.Prefix.String(), Since: b.Since, Until: b.Until, Count: b.Count, Reason: b.Reason, Source: string(b.Source), Node: b.Node,
		Groups: b.Groups.String(), Ports: banPorts(d.groupPorts, b.Groups)}
}

// banPorts returns the TCP ports a ban of groups closes, sorted: the
// union of its groups' ports (a group without ports of its own is the
// main group's).
func banPorts(ports map[banner.Groups][]uint16, groups banner.Groups) []uint16 {
	var out []uint16
	for _, g := range []banner.Groups{banner.GroupMain, banner.GroupSASL} {
		if !groups.OrMain().Has(g) {
			continue
		}
		p, ok := ports[g]
		if !ok {
			p = ports[banner.GroupMain]
		}
		out = append(out, p...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (h controlHandler) Ban(ctx context.Context, p netip.Prefix, dur time.Duration, reason string) (control.BanInfo, error) {
	b, err := h.d.engine.Ban(ctx, p, dur, reason)
	if errors.Is(err, banner.ErrAlreadyBanned) {
		bi := h.d.banInfo(b)
		bi.Already = true
		return bi, nil
	}
	if err != nil && b.Prefix.IsValid() && !errors.Is(err, banner.ErrNotDurable) {
		// Saved, but the firewall update failed: the reconcile retries it.
		bi := h.d.banInfo(b)
		bi.Warning = err.Error()
		return bi, nil
	}
	if err != nil {
		return control.BanInfo{}, err // not saved: not confirmed
	}
	return h.d.banInfo(b), nil
}

func (h controlHandler) BanMany(ctx context.Context, ps []netip.Prefix, dur time.Duration, reason string) (control.BulkInfo, error) {
	r, err := h.d.engine.BanMany(ctx, ps, dur, reason)
	bi := control.BulkInfo{Banned: r.Banned, Already: r.Already, Refusals: r.Refusals}
	for _, x := range r.Refused {
		bi.Refused = append(bi.Refused, x.Why)
	}
	if err != nil && !errors.Is(err, banner.ErrNotDurable) && r.Banned > 0 {
		bi.Warning = err.Error() // saved; the firewall is retried
		return bi, nil
	}
	return bi, err
}

func (h controlHandler) Unban(ctx context.Context, p netip.Prefix) error {
	return h.d.engine.Unban(ctx, p)
}

func (h controlHandler) UnbanAll(ctx context.Context) (int, error) { return h.d.engine.UnbanAll(ctx) }

func (h controlHandler) Forget(ctx context.Context, p netip.Prefix) (int, error) {
	return h.d.engine.Forget(ctx, p)
}

func (h controlHandler) List(context.Context) []control.BanInfo {
	bans := h.d.engine.List()
	out := make([]control.BanInfo, len(bans))
	for i, b := range bans {
		out[i] = h.d.banInfo(b)
	}
	return out
}

func (h controlHandler) Status(context.Context) any { return h.d.Status() }

// Status is what `banner status` shows.
type Status struct {
	Version    string            `json:"version"`
	Started    time.Time         `json:"started"`
	Uptime     string            `json:"uptime"`
	Config     string            `json:"config"`
	Store      string            `json:"store"`
	Listeners  []string          `json:"listeners"`
	Policyd    policyd.Stats     `json:"policy_service"`
	Decisions  policy.Stats      `json:"policy_decisions"`
	DNSBL      dnsbl.Stats       `json:"dnsbl"`
	Engine     engine.Stats      `json:"engine"`
	Allowlist  []string          `json:"allowlist"`
	Firewall   FirewallStatus    `json:"firewall"`
	LogWatch   *logwatch.Stats   `json:"logwatch,omitempty"`
	Recipients *recipients.Stats `json:"recipients,omitempty"`
	Fleet      *fleet.Stats      `json:"fleet,omitempty"`
	DNSList    *dnslist.Stats    `json:"dnslist,omitempty"`
}

// FirewallStatus describes the backend.
type FirewallStatus struct {
	Backend string `json:"backend"`
	// Choice says why Backend is in use: "configured", or what backend
	// "auto" found.
	Choice string `json:"choice"`
	// Chain is where the drops are: the iptables chain, or for nftables
	// "inet TABLE input".
	Chain string         `json:"chain"`
	Ports []uint16       `json:"ports"`
	Stats firewall.Stats `json:"stats"`
	// SASL is the sasl port group ([ban.sasl] ports), when it has ports
	// of its own: where its drops are and its ports.
	SASL *FirewallGroup `json:"sasl,omitempty"`
}

// FirewallGroup describes a port group beside the main one.
type FirewallGroup struct {
	Chain string   `json:"chain"`
	Ports []uint16 `json:"ports"`
}

// firewallWhere names where backend drops banned clients.
func firewallWhere(cfg *config.File, backend string) string {
	if backend == firewall.BackendNFTables {
		return "inet " + cfg.Firewall.NFTTable + " input"
	}
	return cfg.Firewall.Chain
}

// Version describes this binary: the module version ("(devel)" for a
// build from a checkout) and, when the go command recorded them, the
// commit it was built from (with "+dirty" for uncommitted changes) and the
// Go version, e.g. "(devel) commit 3715b01a2c4e+dirty, go1.26.8".
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, dirty string
	for _, st := range bi.Settings {
		switch st.Key {
		case "vcs.revision":
			rev = st.Value
		case "vcs.modified":
			if st.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		v += " commit " + rev[:min(12, len(rev))] + dirty + ","
	}
	return v + " " + bi.GoVersion
}

// Status returns a snapshot of every part's state.
func (d *Daemon) Status() Status {
	s := Status{
		Version:   Version(),
		Started:   d.started,
		Uptime:    time.Since(d.started).Round(time.Second).String(),
		Config:    d.cfg.Path(),
		Store:     d.cfg.Store.Path,
		Listeners: d.server.Listeners(),
		Policyd:   d.server.Stats(),
		Decisions: d.policy.Stats(),
		DNSBL:     d.dnsbl.Stats(),
		Engine:    d.engine.Stats(),
		Firewall: FirewallStatus{Backend: d.firewall.Name(), Choice: d.fwChoice.String(), Chain: firewallWhere(d.cfg, d.firewall.Name()),
			Ports: d.cfg.Firewall.Ports, Stats: d.firewall.Stats()},
	}
	if p, ok := d.groupPorts[banner.GroupSASL]; ok {
		fc := d.cfg.FirewallConfig(nil).GroupConfig(banner.GroupSASL)
		where := fc.Chain
		if d.firewall.Name() == firewall.BackendNFTables {
			where = "inet " + fc.NFTTable + " input"
		}
		s.Firewall.SASL = &FirewallGroup{Chain: where, Ports: p}
	}
	sort.Strings(s.Listeners)
	for _, p := range d.allowlist {
		s.Allowlist = append(s.Allowlist, p.String())
	}
	if d.watcher != nil {
		ws := d.watcher.Stats()
		s.LogWatch = &ws
	}
	if d.recipients != nil {
		rs := d.recipients.Stats()
		s.Recipients = &rs
	}
	if d.fleet != nil {
		fs := d.fleet.Stats()
		s.Fleet = &fs
	}
	if d.dnslist != nil {
		ls := d.dnslist.Stats()
		s.DNSList = &ls
	}
	return s
}
