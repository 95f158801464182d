// Package policy is banner's answer to Postfix's policy requests: it joins
// the DNSBL checker, the ban engine and the valid-recipient tables into one
// decision per request, and reports what it saw to the engine as events.
package policy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/dnsbl"
	"github.com/banner-mta/banner/policyd"
)

// Engine is the part of the ban engine the policy decision uses.
type Engine interface {
	Report(ev banner.Event)
	Banned(addr netip.Addr) (banner.Ban, bool)
}

// Lookuper looks a client up in the configured DNSBLs.
type Lookuper interface {
	Lookup(ctx context.Context, ip netip.Addr) (dnsbl.Result, error)
}

// RecipientChecker tells whether a recipient address is known to be invalid
// (in a protected domain and not in the valid-recipient tables).
type RecipientChecker interface {
	Unknown(rcpt string) bool
}

// ImmediateRule bans a client at once when a zone answers one of Codes.
type ImmediateRule struct {
	Zone   string
	Codes  dnsbl.Filter
	BanFor time.Duration
}

// Config configures the decision. Field comments name the TOML key.
type Config struct {
	// DNSBLAction is the reply to a listed client (dnsbl_action); {client}
	// and {zone} are replaced.
	DNSBLAction string
	// BannedAction is the reply to a banned client (banned_action).
	BannedAction string
	// DNSErrorAction is the reply when a DNSBL could not be asked and the
	// other zones do not list the client (dns_error_action).
	DNSErrorAction string
	// SkipSASL answers DUNNO to SASL-authenticated clients (skip_sasl).
	SkipSASL bool
	// DNSBLWeight is the event weight of one DNSBL reject (dnsbl_weight).
	DNSBLWeight float64
	// RecipientWeight is the event weight of one RCPT to an unknown
	// address in a protected domain ([recipients] weight).
	RecipientWeight float64
	// Allowlist: clients here are never checked (the [ban] allowlist plus
	// loopback).
	Allowlist []netip.Prefix
	// Immediate lists the immediate-ban rules ([[policy.immediate]]).
	Immediate []ImmediateRule
	// SASLPorts are the ports a ban of the sasl port group closes ([ban.sasl]
	// ports). A client banned for SASL only is refused (banned_action)
	// only when the request's server_port is one of them (25 when Postfix
	// sends none), so that a client whose port 25 the firewall leaves
	// open can deliver there. Empty: every ban refuses, as bans of the
	// main group do.
	SASLPorts []uint16
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults of conf/banner.toml.
func DefaultConfig() Config {
	return Config{
		DNSBLAction:     "554 5.7.1 Service unavailable; Client host [{client}] blocked using {zone}",
		BannedAction:    "554 5.7.1 Service unavailable; Client host [{client}] is temporarily banned",
		DNSErrorAction:  "DUNNO",
		SkipSASL:        true,
		DNSBLWeight:     1,
		RecipientWeight: 1,
		Allowlist:       banner.LoopbackPrefixes(),
		SASLPorts:       []uint16{25, 465, 587}, // firewall.DefaultSASLPorts (a test keeps them equal)
		Immediate: []ImmediateRule{{
			// Spamhaus XBL codes: infected hosts and proxies (SBL, CSS and
			// PBL answers are scored, not banned at once).
			Zone:   "zen.spamhaus.org",
			Codes:  mustFilter("127.0.0.[4..7]"),
			BanFor: 3 * 24 * time.Hour,
		}},
	}
}

func mustFilter(s string) dnsbl.Filter {
	f, err := dnsbl.ParseFilter(s)
	if err != nil {
		panic(err)
	}
	return f
}

// Validate checks the reply templates and weights; errors name the key.
func (c Config) Validate() error {
	var errs []error
	for _, a := range []struct{ key, v string }{
		{"dnsbl_action", c.DNSBLAction}, {"banned_action", c.BannedAction}, {"dns_error_action", c.DNSErrorAction},
	} {
		if err := policyd.ValidAction(expand(a.v, "192.0.2.1", "zen.spamhaus.org")); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.key, err))
		}
	}
	if c.DNSBLWeight < 0 {
		errs = append(errs, fmt.Errorf("dnsbl_weight: must be >= 0, got %v", c.DNSBLWeight))
	}
	if c.RecipientWeight < 0 {
		errs = append(errs, fmt.Errorf("recipients.weight: must be >= 0, got %v", c.RecipientWeight))
	}
	for i, r := range c.Immediate {
		if r.Zone == "" {
			errs = append(errs, fmt.Errorf("immediate[%d].zone: empty", i))
		}
		if r.BanFor <= 0 {
			errs = append(errs, fmt.Errorf("immediate[%d].bantime: must be > 0", i))
		}
	}
	return errors.Join(errs...)
}

func expand(tmpl, client, zone string) string {
	return strings.NewReplacer("{client}", client, "{zone}", zone).Replace(tmpl)
}

// Decision names what the handler decided, for counters and logs.
type Decision string

// Decisions.
const (
	DecisionDUNNO       Decision = "dunno"       // nothing against the client
	DecisionAllowlisted Decision = "allowlisted" // allowlisted client
	DecisionSASL        Decision = "sasl"        // authenticated client
	DecisionBanned      Decision = "banned"      // client is banned
	DecisionDNSBL       Decision = "dnsbl"       // client is listed
	DecisionDNSError    Decision = "dns_error"   // DNSBL could not be asked
	DecisionBadRequest  Decision = "bad_request" // no usable client address
)

var decisions = []Decision{DecisionDUNNO, DecisionAllowlisted, DecisionSASL, DecisionBanned, DecisionDNSBL, DecisionDNSError, DecisionBadRequest}

// Handler makes the policy decision. It implements policyd.Handler.
type Handler struct {
	cfg        Config
	engine     Engine
	dnsbl      Lookuper
	recipients atomic.Pointer[RecipientChecker]
	log        *slog.Logger

	counts         [7]atomic.Uint64
	unknownRcpts   atomic.Uint64
	dnsblEvents    atomic.Uint64
	immediateBans  atomic.Uint64
	lookupFailures atomic.Uint64
	late           atomic.Uint64
	deliveries     atomic.Uint64
}

// New makes a Handler. rcpts may be nil: then unknown recipients are not
// tracked on the policy side (the log watcher still sees Postfix's rejects).
func New(cfg Config, engine Engine, lists Lookuper, rcpts RecipientChecker) (*Handler, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if engine == nil || lists == nil {
		return nil, errors.New("policy: engine and DNSBL checker are required")
	}
	h := &Handler{cfg: cfg, engine: engine, dnsbl: lists, log: cfg.Logger}
	if h.log == nil {
		h.log = slog.Default()
	}
	h.SetRecipients(rcpts)
	return h, nil
}

// SetRecipients replaces the recipient checker (nil turns tracking off).
func (h *Handler) SetRecipients(r RecipientChecker) {
	if r == nil {
		h.recipients.Store(nil)
		return
	}
	h.recipients.Store(&r)
}

func (h *Handler) count(d Decision) {
	for i, x := range decisions {
		if x == d {
			h.counts[i].Add(1)
			return
		}
	}
}

func (h *Handler) allowlisted(a netip.Addr) bool {
	for _, p := range h.cfg.Allowlist {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// refuses reports whether ban b refuses the client of req: a ban of the
// main group always; a ban of the sasl group alone when the server port
// is one of SASLPorts.
func (h *Handler) refuses(b banner.Ban, req *policyd.Request) bool {
	if b.Groups.OrMain().Has(banner.GroupMain) || len(h.cfg.SASLPorts) == 0 {
		return true
	}
	port := uint16(25)
	if s := req.Get("server_port"); s != "" {
		p, err := strconv.ParseUint(s, 10, 16)
		if err != nil {
			return true
		}
		port = uint16(p)
	}
	return slices.Contains(h.cfg.SASLPorts, port)
}

// HandlePolicy answers one policy request.
func (h *Handler) HandlePolicy(ctx context.Context, req *policyd.Request) string {
	action, d := h.decide(ctx, req)
	if ctx.Err() != nil {
		// The policy service answered fail_action when the request
		// timed out and throws this answer away: it is no decision.
		h.late.Add(1)
		return action
	}
	h.count(d)
	return action
}

func (h *Handler) decide(ctx context.Context, req *policyd.Request) (string, Decision) {
	addr, err := req.ClientAddr()
	if err != nil {
		// Postfix sends client_address for every smtpd request; without
		// one there is nothing to decide.
		h.log.Debug("policy request without a usable client_address", "err", err)
		return "DUNNO", DecisionBadRequest
	}
	addr = addr.Unmap()
	if h.allowlisted(addr) {
		return "DUNNO", DecisionAllowlisted
	}
	if h.cfg.SkipSASL && req.SASLUsername() != "" {
		return "DUNNO", DecisionSASL
	}
	if b, banned := h.engine.Banned(addr); banned && h.refuses(b, req) {
		return expand(h.cfg.BannedAction, addr.String(), ""), DecisionBanned
	}
	state := strings.ToUpper(req.ProtocolState())
	if state == "END-OF-MESSAGE" {
		// Postfix took the whole message: the client delivers mail (a
		// good sender, see [ban] good_sender_days).
		h.delivered(addr, req)
		return "DUNNO", DecisionDUNNO
	}
	if state == "DATA" || state == "BDAT" {
		// The client already passed the RCPT stage.
		return "DUNNO", DecisionDUNNO
	}

	res, err := h.dnsbl.Lookup(ctx, addr)
	if err == nil && res.Listed {
		zones := res.MatchedZones()
		zoneText := strings.Join(zones, ", ")
		ev := banner.Event{
			Addr: addr, Kind: banner.KindDNSBL, Weight: h.cfg.DNSBLWeight, Time: time.Now(),
			Source: banner.SourcePolicy, Key: zoneText, Reason: "listed by " + describeListing(res),
			Origin: "policy " + state,
		}
		for i := range h.cfg.Immediate {
			r := &h.cfg.Immediate[i]
			for j := range res.Zones {
				z := &res.Zones[j]
				if z.Zone == r.Zone && z.Listing(&r.Codes) && r.BanFor > ev.BanFor {
					ev.BanFor = r.BanFor
				}
			}
		}
		if ev.BanFor > 0 {
			h.immediateBans.Add(1)
		}
		h.dnsblEvents.Add(1)
		h.engine.Report(ev)
		return expand(h.cfg.DNSBLAction, addr.String(), zoneText), DecisionDNSBL
	}

	if state == "RCPT" {
		if rc := h.recipients.Load(); rc != nil {
			if rcpt := req.Recipient(); rcpt != "" && (*rc).Unknown(rcpt) {
				h.unknownRcpts.Add(1)
				h.engine.Report(banner.Event{
					Addr: addr, Kind: banner.KindUnknownUser, Weight: h.cfg.RecipientWeight, Time: time.Now(),
					Source: banner.SourcePolicy, Key: strings.ToLower(rcpt), Reason: "unknown recipient " + rcpt,
					Origin: "policy RCPT",
				})
			}
		}
	}

	if err != nil || res.Unknown {
		h.lookupFailures.Add(1)
		return expand(h.cfg.DNSErrorAction, addr.String(), ""), DecisionDNSError
	}
	return "DUNNO", DecisionDUNNO
}

// describeListing names the zones and answer codes that listed a client.
func describeListing(res dnsbl.Result) string {
	var parts []string
	for i := range res.Zones {
		z := &res.Zones[i]
		if !z.Matched {
			continue
		}
		codes := make([]string, 0, len(z.Answers))
		for _, a := range z.Answers {
			codes = append(codes, a.String())
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", z.Zone, strings.Join(codes, ",")))
	}
	return strings.Join(parts, ", ")
}

// Stats counts decisions and reported events.
type Stats struct {
	Decisions         map[Decision]uint64 `json:"decisions"`
	UnknownRecipients uint64              `json:"unknown_recipients"` // unknown-recipient events reported
	DNSBLEvents       uint64              `json:"dnsbl_events"`       // DNSBL events reported
	ImmediateBans     uint64              `json:"immediate_bans"`     // DNSBL events carrying an immediate ban
	LookupFailures    uint64              `json:"lookup_failures"`    // requests where a DNSBL could not be asked
	// Late counts decisions made after request_timeout, when the policy
	// service had answered fail_action instead: not counted in Decisions.
	Late uint64 `json:"late"`
	// Deliveries counts END-OF-MESSAGE requests reported as deliveries.
	Deliveries uint64 `json:"deliveries"`
}

// Stats returns a snapshot of the counters.
func (h *Handler) Stats() Stats {
	s := Stats{Decisions: make(map[Decision]uint64, len(decisions))}
	for i, d := range decisions {
		s.Decisions[d] = h.counts[i].Load()
	}
	s.UnknownRecipients = h.unknownRcpts.Load()
	s.DNSBLEvents = h.dnsblEvents.Load()
	s.ImmediateBans = h.immediateBans.Load()
	s.LookupFailures = h.lookupFailures.Load()
	s.Late = h.late.Load()
	s.Deliveries = h.deliveries.Load()
	return s
}
