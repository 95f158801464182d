// Package firewall turns bans into packet drops that reach only the SMTP
// ports. The nftables backend keeps its own table (see NFTables); the
// iptables-based backends create a chain (default BANNER) in the filter
// table of iptables and ip6tables, jumped to from the first position of INPUT
// by a single rule `-p tcp -m multiport --dports <ports> -j BANNER`, so a ban
// never blocks anything but the configured TCP ports. With Drop "new" (the
// default) the jump also carries `-m tcp --tcp-flags FIN,SYN,RST,ACK SYN`
// (iptables' --syn): only connection-opening SYNs reach the chain, so a
// session in progress when its client is banned runs to its end (Postfix
// rejects it through the policy service) instead of hanging on dropped
// packets. Drop "all" sends every packet there, as fail2ban does.
//
// The chain, the jump, the sets and the sets' match rules can vanish under a
// running banner (iptables -F, netfilter-persistent reload, ufw reload):
// Repair checks them cheaply and restores what is missing; the engine calls
// it before every reconcile.
//
// The chain is banner's own. Setup and every Repair also remove from it,
// per family, each rule the configured backend did not make: for ipset
// anything but its set match rule, for iptables anything but its per-ban
// `-s X -j DROP` rules. So a switch of backend without `banner teardown`
// first leaves no rule of the other backend's behind that would keep
// dropping clients no ban names (an unban could never lift it), nor does a
// rule added there by hand. Each removal is logged at Warn and counted in
// Stats.HookRepairs.
//
// Backends:
//
//   - "auto" (default): "nftables" where the nftables netlink API works and
//     iptables is not iptables-legacy with rules in use, else "ipset"; see
//     Choose.
//   - "nftables": table inet banner with two interval sets with kernel
//     timeouts and one drop rule per family in a base input chain, changed
//     over netlink in one transaction per batch; see NFTables.
//   - "ipset": two hash:net sets (banner4, banner6) with kernel
//     per-entry timeouts, matched by one rule per family in the chain. Batches
//     go through one `ipset restore -exist` process, small ones (up to 64
//     entries) over netlink.
//   - "iptables": one `-s X -j DROP` rule per ban in the chain, applied in
//     batches with `iptables-restore --noflush`. No kernel timeouts: the
//     engine expires bans itself.
//   - "none": logs what it would do and keeps an in-memory set, for dry runs
//     and tests.
package firewall

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/banner-mta/banner/banner"
)

// Entry is one ban as the kernel holds it: a prefix (a single address as a
// /32 or /128) and its timeout. A Timeout of 0 means no kernel timeout.
// Groups are the port groups it is dropped on (see Config.SASLPorts): Add
// puts it in those groups' sets, and List reports the groups whose sets
// hold it. 0 means banner.GroupMain. A member backend of one group ignores
// it.
type Entry struct {
	Prefix  netip.Prefix
	Timeout time.Duration
	Groups  banner.Groups
}

// Backend is a firewall that drops the configured SMTP ports for banned
// prefixes. New returns one by Config.Backend; a new backend implements
// this contract and gets a case in New (and in Config.Validate), and the
// engine needs nothing else. Methods are safe for concurrent use; every
// failure counts in Stats.Errors (the counters of stats.go do this and the
// repair bookkeeping for any backend).
type Backend interface {
	// Name returns the backend name, as in Config.Backend: "nftables",
	// "ipset", "iptables" or "none" (never "auto").
	Name() string
	// Setup creates what the backend needs: its sets, the chain and the
	// INPUT jump restricted to the configured ports (and, with Drop "new",
	// to connection-opening SYNs). It is idempotent: it reuses what exists
	// and never destroys existing entries. A jump with other ports than
	// configured is replaced. It refuses a chain that exists and holds
	// none of banner's rules (another tool's). Rules of the chain that the
	// backend did not make are removed, as Repair does, once its own hooks
	// are in place; that counts in Stats.HookRepairs and is logged at Warn.
	Setup(ctx context.Context) error
	// Add bans a batch of entries. The timeout of an existing entry is
	// replaced (a backend without kernel timeouts ignores them). Invalid
	// entries are reported in the error after the valid ones have been
	// applied.
	Add(ctx context.Context, entries []Entry) error
	// Remove lifts a batch of bans. Absent entries are not an error.
	Remove(ctx context.Context, prefixes []netip.Prefix) error
	// List returns what the kernel holds now, with remaining timeouts where
	// the backend knows them (0 where it does not). An error wrapping
	// ErrNotSetUp says Setup's work is missing.
	List(ctx context.Context) ([]Entry, error)
	// Repair checks that what Setup built is still in place (the sets, the
	// chain, the INPUT jump in its configured form and the chain's set
	// match rules, for each family) and restores what is missing or
	// altered, as Setup would, without touching entries. A re-created set
	// is empty: the caller re-adds its entries. Then it removes each rule
	// of the chain the backend did not make (another backend's, left when
	// the backend was switched without a teardown, or one added by hand):
	// for ipset every rule but the set match, for iptables every rule but
	// the per-ban DROP rules, which it never touches. It returns what was
	// missing and what it removed (nil when everything was in place); each
	// piece counts in Stats.HookRepairs and each kind is logged at Warn. It
	// is cheap (a few commands; only the iptables backend's chain listing
	// shows the entries) and idempotent. The engine calls it before every
	// reconcile.
	Repair(ctx context.Context) ([]string, error)
	// Teardown removes what Setup built, for each family: every INPUT
	// jump to the chain (any ports, any drop form), the chain with its
	// rules, and the sets (with the iptables backend: the sets the ipset
	// backend of the same configuration left, if they look like its own,
	// no banner holds their lock and nothing uses them; otherwise they are
	// kept). It reports one line per piece removed and per piece kept.
	// Missing pieces are not an error: a second Teardown removes nothing
	// and returns an empty report.
	//
	// Rules banner did not make are left alone: a jump to the chain from
	// another chain than INPUT, or a rule outside the chain matching one of
	// the sets in any table (filter, raw, mangle, nat, security), would
	// keep the chain or set in use, so Teardown refuses before changing
	// anything and its error names those rules. For the sets it also asks
	// the kernel: if a set's reference count (`ipset list -t`,
	// "References") exceeds the rules of banner's chain matching it,
	// something no listing shows uses it (an iptables-legacy rule beside
	// iptables-nft or the reverse, a list:set, an nft rule with the xt set
	// match), and Teardown refuses naming the set. The "none" backend
	// holds nothing in the kernel and reports nothing.
	Teardown(ctx context.Context) (TeardownReport, error)
	// Stats returns counters for metrics.
	Stats() Stats
}

// Stats are a backend's counters.
type Stats struct {
	Adds          uint64    `json:"adds"`                     // entries added or refreshed
	Removes       uint64    `json:"removes"`                  // entries removed (including ones already absent)
	Errors        uint64    `json:"errors"`                   // failed operations
	LastError     string    `json:"last_error"`               // text of the last failure, "" if none
	LastErrorTime time.Time `json:"last_error_time,omitzero"` // time of the last failure, zero if none
	// HookRepairs counts pieces of the firewall scaffolding (chain, INPUT
	// jump, set match rule, set) that Repair found missing and restored,
	// and the rules Setup or Repair removed from the chain because the
	// backend did not make them (another backend's, or the admin's).
	HookRepairs uint64 `json:"hook_repairs"`
	// LastHookRepair names what the last repair restored or removed, "" if
	// none.
	LastHookRepair string `json:"last_hook_repair"`
	// LastHookRepairTime is the time of the last repair, zero if none.
	LastHookRepairTime time.Time `json:"last_hook_repair_time,omitzero"`
}

// Backend names accepted in Config.Backend.
const (
	BackendIPSet    = "ipset"
	BackendIPTables = "iptables"
	BackendNone     = "none"
	BackendNFTables = "nftables"
	// BackendAuto picks nftables or ipset by what the system uses: see
	// Choose.
	BackendAuto = "auto"
)

// Values of Config.Drop.
const (
	// DropNew drops only connection-opening SYNs from banned clients:
	// sessions already open run to their end.
	DropNew = "new"
	// DropAll drops every packet from banned clients, open sessions too.
	DropAll = "all"
)

// Limits of the kernel and the tools.
const (
	MaxPorts        = 15      // the multiport match takes at most 15 ports
	MaxChainName    = 28      // XT_EXTENSION_MAXNAMELEN - 1
	MaxSetName      = 31      // IPSET_MAXNAMELEN - 1
	MaxIPSetTimeout = 2147483 // largest ipset timeout in seconds
	MaxNFTName      = 255     // NFT_NAME_MAXLEN - 1 (table names)
	// Bounds of nft_priority: wider than any hook priority in use
	// (raw -300, mangle -150, filter 0, security 50) but clear of the
	// conntrack helpers' INT_MAX/INT_MIN priorities.
	MinNFTPriority = -1000
	MaxNFTPriority = 1000
)

// ErrNotSetUp is returned (wrapped) when a set or chain the backend needs
// does not exist: Setup has not run or something removed it.
var ErrNotSetUp = errors.New("firewall not set up")

// ErrRepaired is returned (wrapped) by Add and Remove of a backend that
// found what Setup built gone (the nftables table after `nft flush
// ruleset`), rebuilt it at once and then applied the batch: the batch is
// in force, but the other entries went with the old sets and must be
// re-added (the engine reconciles at once). The nftables backend returns
// it; the others report ErrNotSetUp and leave the repair to Repair.
var ErrRepaired = errors.New("firewall rebuilt: entries outside this batch were lost and must be re-added")

// ErrIPv6Disabled is returned (wrapped) by Add and Remove for IPv6 entries
// when Config.IPv6 is false. The IPv4 entries of the batch are still applied.
var ErrIPv6Disabled = errors.New("ipv6 is disabled (firewall ipv6 = false)")

// Config configures a Backend.
type Config struct {
	Backend        string        // "auto", "nftables", "ipset", "iptables" or "none"
	NFTTable       string        // nftables backend: name of banner's table (family inet)
	NFTPriority    int           // nftables backend: priority of banner's input chain
	Chain          string        // chain in the filter table, jumped to from INPUT
	Ports          []uint16      // TCP destination ports the jump covers
	Drop           string        // DropNew (only new connections) or DropAll
	Set4           string        // ipset name for IPv4 bans
	Set6           string        // ipset name for IPv6 bans
	MaxElem        int           // maxelem of each ipset
	IPv6           bool          // manage ip6tables and the IPv6 set too
	LockWait       time.Duration // how long iptables waits for the xtables lock (-w)
	CommandTimeout time.Duration // bound on every command run
	Logger         *slog.Logger  // nil means slog.Default()
	// SASLPorts are the ports of the sasl group ([ban.sasl] ports): bans
	// of group banner.GroupSASL are dropped on these, in sets, a chain or
	// a table of their own (see GroupConfig). Empty: they are dropped on
	// Ports, with every other ban.
	SASLPorts []uint16
}

// DefaultConfig returns the defaults: backend "auto" (nftables where it
// works, see Choose), nftables table banner at priority -10, chain BANNER,
// port 25, sasl ports DefaultSASLPorts, drop "new", sets banner4/banner6 with maxelem 1048576, IPv6 on,
// a 5 s lock wait and a 10 s command timeout.
func DefaultConfig() Config {
	return Config{
		Backend:        BackendAuto,
		NFTTable:       "banner",
		NFTPriority:    DefaultNFTPriority,
		Chain:          "BANNER",
		Ports:          []uint16{25},
		SASLPorts:      slices.Clone(DefaultSASLPorts),
		Drop:           DropNew,
		Set4:           "banner4",
		Set6:           "banner6",
		MaxElem:        1048576,
		IPv6:           true,
		LockWait:       5 * time.Second,
		CommandTimeout: 10 * time.Second,
	}
}

var (
	chainNameRE = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	setNameRE   = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
)

// reservedChains are names a chain of ours must not take: built-in chains
// and targets.
var reservedChains = []string{"INPUT", "OUTPUT", "FORWARD", "PREROUTING", "POSTROUTING",
	"ACCEPT", "DROP", "REJECT", "RETURN", "QUEUE", "LOG"}

// Validate checks the configuration. Messages name the field as spelled in
// the configuration file.
func (c Config) Validate() error {
	var errs []error
	switch c.Backend {
	case BackendIPSet, BackendIPTables, BackendNone, BackendNFTables, BackendAuto:
	default:
		errs = append(errs, fmt.Errorf("backend: unknown backend %q (want auto, nftables, ipset, iptables or none)", c.Backend))
	}
	if c.Backend == BackendNFTables || c.Backend == BackendAuto {
		if c.NFTTable == "" || len(c.NFTTable) > MaxNFTName || !setNameRE.MatchString(c.NFTTable) {
			errs = append(errs, fmt.Errorf("nft_table: invalid table name %q (want 1..%d characters of A-Z a-z 0-9 _ . -)", c.NFTTable, MaxNFTName))
		}
		if c.NFTPriority < MinNFTPriority || c.NFTPriority > MaxNFTPriority {
			errs = append(errs, fmt.Errorf("nft_priority: %d is out of range %d..%d (filter is 0; the default -10 runs before it)",
				c.NFTPriority, MinNFTPriority, MaxNFTPriority))
		}
	}
	switch {
	case len(c.Ports) == 0:
		errs = append(errs, errors.New("ports: at least one port is needed"))
	case len(c.Ports) > MaxPorts:
		errs = append(errs, fmt.Errorf("ports: %d ports, at most %d fit one multiport match", len(c.Ports), MaxPorts))
	}
	switch c.Drop {
	case DropNew, DropAll:
	default:
		errs = append(errs, fmt.Errorf("drop: unknown value %q (want %q: drop only new connections, so sessions in progress finish; or %q: drop every packet, open sessions too)",
			c.Drop, DropNew, DropAll))
	}
	errs = append(errs, checkPorts("ports", c.Ports)...)
	if len(c.SASLPorts) > MaxPorts {
		errs = append(errs, fmt.Errorf("sasl_ports: %d ports, at most %d fit one multiport match", len(c.SASLPorts), MaxPorts))
	}
	errs = append(errs, checkPorts("sasl_ports", c.SASLPorts)...)
	errs = append(errs, c.checkGroupNames()...)
	switch {
	case c.Chain == "" || len(c.Chain) > MaxChainName || !chainNameRE.MatchString(c.Chain):
		errs = append(errs, fmt.Errorf("chain: invalid chain name %q (want 1..%d characters of A-Z a-z 0-9 _ -)", c.Chain, MaxChainName))
	case slices.Contains(reservedChains, strings.ToUpper(c.Chain)):
		errs = append(errs, fmt.Errorf("chain: %q is a built-in chain or target", c.Chain))
	}
	for _, s := range []struct{ key, v string }{{"set4", c.Set4}, {"set6", c.Set6}} {
		if s.v == "" || len(s.v) > MaxSetName || !setNameRE.MatchString(s.v) {
			errs = append(errs, fmt.Errorf("%s: invalid set name %q (want 1..%d characters of A-Z a-z 0-9 _ . -)", s.key, s.v, MaxSetName))
		}
	}
	if c.Set4 == c.Set6 && c.Set4 != "" {
		errs = append(errs, fmt.Errorf("set6: must differ from set4 (both %q)", c.Set4))
	}
	if c.MaxElem <= 0 || c.MaxElem > math.MaxUint32 {
		errs = append(errs, fmt.Errorf("maxelem: %d is out of range 1..%d", c.MaxElem, uint32(math.MaxUint32)))
	}
	if c.LockWait < 0 {
		errs = append(errs, fmt.Errorf("lock_wait: %v must not be negative", c.LockWait))
	}
	if c.CommandTimeout <= 0 {
		errs = append(errs, fmt.Errorf("command_timeout: %v must be > 0", c.CommandTimeout))
	}
	return errors.Join(errs...)
}

// checkPorts checks that ports are in 1..65535 and listed once.
func checkPorts(key string, ports []uint16) []error {
	var errs []error
	seen := make(map[uint16]bool, len(ports))
	for _, p := range ports {
		if p == 0 {
			errs = append(errs, fmt.Errorf("%s: port 0 is out of range 1..65535", key))
		}
		if seen[p] {
			errs = append(errs, fmt.Errorf("%s: port %d is listed twice", key, p))
		}
		seen[p] = true
	}
	return errs
}

// New returns the backend named by cfg.Backend, with its port groups (see
// Grouped); "auto" is resolved by Choose (callers that report the choice
// call Choose themselves and pass its Backend). It changes nothing in the
// kernel: call Setup before Add.
func New(cfg Config) (*Grouped, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("firewall config: %w", err)
	}
	if cfg.Backend == BackendAuto {
		cfg.Backend = Choose(context.Background(), cfg).Backend
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	g := &Grouped{saslOn: len(cfg.SASLPorts) > 0, log: cfg.Logger.With("component", "firewall", "backend", cfg.Backend)}
	g.main = newMember(cfg.GroupConfig(banner.GroupMain))
	if cfg.saslNamesFit() {
		g.sasl = newMember(cfg.GroupConfig(banner.GroupSASL))
	}
	return g, nil
}

// newMember returns the backend of one port group: cfg as GroupConfig
// gives it, Backend resolved.
func newMember(cfg Config) Backend {
	cfg.Ports = slices.Clone(cfg.Ports)
	slices.Sort(cfg.Ports)
	cfg.SASLPorts = nil
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cfg.Logger = cfg.Logger.With("component", "firewall", "backend", cfg.Backend)
	switch cfg.Backend {
	case BackendIPSet:
		s := &IPSet{}
		s.xt = newXT(cfg, s)
		return s
	case BackendIPTables:
		t := &IPTables{}
		t.xt = newXT(cfg, t)
		return t
	case BackendNFTables:
		return newNFTables(cfg)
	default:
		return &None{cfg: cfg, log: cfg.Logger, set: make(map[netip.Prefix]time.Time)}
	}
}

// normalize returns the canonical form of p: IPv4-mapped IPv6 unmapped, zone
// dropped, host bits cleared. A /0 is refused: it would block every client.
func normalize(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid prefix %q", p)
	}
	a, bits := p.Addr().WithZone(""), p.Bits()
	if a.Is4In6() {
		if bits < 96 {
			return netip.Prefix{}, fmt.Errorf("prefix %s: IPv4-mapped prefix shorter than /96", p)
		}
		a, bits = a.Unmap(), bits-96
	}
	if bits == 0 {
		return netip.Prefix{}, fmt.Errorf("prefix %s: a /0 would block every client", p)
	}
	return netip.PrefixFrom(a, bits).Masked(), nil
}

// parsePrefixOrAddr parses an address or prefix as the kernel tools print
// them ("192.0.2.7", "192.0.2.0/24", "2001:db8::/64") into its canonical
// prefix.
func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	p, err := banner.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return normalize(p)
}

// batch is a validated, de-duplicated batch split by family.
type batch struct {
	v4, v6 []Entry
	errs   []error
}

// split normalizes and de-duplicates entries (the last timeout wins) and
// sorts them by family. IPv6 entries are refused when ipv6 is false.
func split(entries []Entry, ipv6 bool) batch {
	var b batch
	idx := make(map[netip.Prefix]int, len(entries))
	all := make([]Entry, 0, len(entries))
	v4 := 0
	for _, e := range entries {
		p, err := normalize(e.Prefix)
		if err != nil {
			b.errs = append(b.errs, err)
			continue
		}
		if e.Timeout < 0 {
			b.errs = append(b.errs, fmt.Errorf("prefix %s: negative timeout %v", p, e.Timeout))
			continue
		}
		if p.Addr().Is6() && !ipv6 {
			b.errs = append(b.errs, fmt.Errorf("prefix %s: %w", p, ErrIPv6Disabled))
			continue
		}
		if i, ok := idx[p]; ok {
			all[i].Timeout = e.Timeout
			continue
		}
		idx[p] = len(all)
		all = append(all, Entry{Prefix: p, Timeout: e.Timeout})
		if p.Addr().Is4() {
			v4++
		}
	}
	b.v4 = make([]Entry, 0, v4)
	b.v6 = make([]Entry, 0, len(all)-v4)
	for _, e := range all {
		if e.Prefix.Addr().Is4() {
			b.v4 = append(b.v4, e)
		} else {
			b.v6 = append(b.v6, e)
		}
	}
	return b
}

// splitPrefixes is split for Remove.
func splitPrefixes(prefixes []netip.Prefix, ipv6 bool) batch {
	entries := make([]Entry, len(prefixes))
	for i, p := range prefixes {
		entries[i] = Entry{Prefix: p}
	}
	return split(entries, ipv6)
}

// batchErr joins the per-entry errors of a batch of op ("add" or
// "remove").
func batchErr(op string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("firewall %s: %d entries refused: %w", op, len(errs), errors.Join(errs...))
}

// done is op ("add" or "remove") as the logs say it was done.
func done(op string) string {
	if op == "add" {
		return "added"
	}
	return "removed"
}

// seconds returns d in whole seconds, rounded up.
func seconds(d time.Duration) int64 {
	return int64((d + time.Second - 1) / time.Second)
}
