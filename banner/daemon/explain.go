package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/engine"
	"github.com/banner-mta/banner/banner/logwatch"
	"github.com/banner-mta/banner/dnsbl"
)

// Explanation is `banner explain`'s answer: the engine's story of an
// address and its DNSBL answers now.
type Explanation struct {
	engine.Explanation
	// From says where the story comes from: "daemon" (the running
	// daemon's trail of events) or "log FILE" (a log alone).
	From string `json:"from"`
	// DNSBL is the lookup made for the explanation: the daemon's cache
	// answers what it holds (ZoneResult.Cached, with the TTL left), other
	// zones are asked now.
	DNSBL      []ZoneAnswer `json:"dnsbl"`
	DNSBLAsked bool         `json:"dnsbl_asked"`
	DNSBLError string       `json:"dnsbl_error,omitempty"`
	// Ports are the TCP ports of each firewall port group by name
	// ("main", "sasl"), as configured.
	Ports map[string][]uint16 `json:"ports"`
	// BanPorts are the ports the ban in force (Ban) closes.
	BanPorts []uint16 `json:"ban_ports,omitempty"`
}

// setPorts fills in Ports and BanPorts from the configuration.
func (x *Explanation) setPorts(cfg *config.File) {
	gp := cfg.FirewallConfig(nil).GroupPorts()
	x.Ports = map[string][]uint16{}
	for g, p := range gp {
		x.Ports[g.String()] = p
	}
	if x.Ban != nil {
		x.BanPorts = banPorts(gp, x.Ban.Groups)
	}
}

// ZoneAnswer is one zone's answer about the address.
type ZoneAnswer struct {
	Zone    string        `json:"zone"`
	Answers []netip.Addr  `json:"answers"`
	Matched bool          `json:"matched"`
	Weight  float64       `json:"weight"`
	Cached  bool          `json:"cached"`
	TTL     time.Duration `json:"ttl"` // fresh: the DNS TTL (clamped); cached: the time left
	Error   string        `json:"error,omitempty"`
}

func (x *Explanation) setDNSBL(res dnsbl.Result, err error) {
	x.DNSBLAsked = true
	for _, z := range res.Zones {
		za := ZoneAnswer{Zone: z.Zone, Answers: z.Answers, Matched: z.Matched, Weight: z.Weight, Cached: z.Cached, TTL: z.TTL}
		if z.Err != nil {
			za.Error = z.Err.Error()
		}
		x.DNSBL = append(x.DNSBL, za)
	}
	if err != nil {
		x.DNSBLError = err.Error()
	}
}

// explainLookupTimeout bounds the DNSBL lookup of an explanation.
const explainLookupTimeout = 5 * time.Second

// Explain answers the control socket's explain: the engine's trail and
// state of addr, and a DNSBL lookup through the daemon's cache.
func (h controlHandler) Explain(ctx context.Context, addr netip.Addr) (any, error) {
	x, err := h.d.engine.Explain(ctx, addr)
	if err != nil {
		return nil, err
	}
	out := Explanation{Explanation: x, From: "daemon"}
	out.setPorts(h.d.cfg)
	if h.d.dnsbl != nil && !addr.IsLoopback() {
		lctx, cancel := context.WithTimeout(ctx, explainLookupTimeout)
		res, err := h.d.dnsbl.Lookup(lctx, addr)
		cancel()
		out.setDNSBL(res, err)
	}
	return out, nil
}

// ExplainLog tells addr's story from a log alone (banner explain -log):
// the log's matches replayed through the engine's decisions under cfg, as
// TestLog does, with the lines' times as the clock, up to now (or the last
// line's time if later). name is the log's name for the events' origins.
// With lookup set, the DNSBLs are asked now (without a cache, as banner
// check does). The allowlist is cfg's [ban] allowlist and loopback: the
// host's own networks and Postfix's mynetworks are the daemon's to add.
func ExplainLog(ctx context.Context, cfg *config.File, in io.Reader, name string, addr netip.Addr, now time.Time, lookup bool, log *slog.Logger) (Explanation, error) {
	m, err := LogMatcher(cfg, "")
	if err != nil {
		return Explanation{}, err
	}
	a := banner.NormalizeAddr(addr)
	var events []banner.Event
	_, err = logwatch.AnalyzeTop(in, m, func(mt logwatch.Match) {
		ev := mt.Event()
		if ev.Origin != "" {
			ev.Origin = name + " " + ev.Origin
		}
		events = append(events, ev)
	}, 1)
	if err != nil {
		return Explanation{}, err
	}
	x := engine.ExplainEvents(cfg.EngineConfig(nil), events, a, now)
	out := Explanation{Explanation: x, From: "log " + name}
	out.setPorts(cfg)
	if lookup && !a.IsLoopback() {
		res, _, err := Check(ctx, cfg, a, log)
		out.setDNSBL(res, err)
	}
	return out, nil
}
