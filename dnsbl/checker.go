// Package dnsbl checks client IP addresses against DNS block and allow
// lists, in the manner of Postfix postscreen: weighted zones in
// postscreen_dnsbl_sites syntax, all queried in parallel, answers filtered
// by return code, a score compared with a threshold, and results cached for
// the DNS TTL clamped to [min_ttl, max_ttl].
//
// It improves on postscreen where DNS lists bite: answers in
// 127.255.255.0/24 (Spamhaus's "you query through a public resolver",
// "excessive queries", "typing error", DQS key errors) and answers outside
// 127.0.0.0/8 are errors, never listings, logged loudly with the fix and kept
// per zone in Stats; a zone that fails is reported as unknown so the caller
// can fail open or defer; NXDOMAIN is cached for the SOA's negative TTL
// (RFC 2308); concurrent lookups of one address share one query per zone;
// a zone whose queries keep failing (timeouts, network errors, SERVFAIL,
// REFUSED) is marked down for failure_backoff and skipped at once, with one
// probe query per backoff period, instead of making every client wait for
// query_timeout during a resolver outage; a Spamhaus DQS key rewrites
// *.spamhaus.org zones and never shows in output.
//
// Defaults: one zone, DefaultZone = zen.spamhaus.org=127.0.0.[2..11]*3 with
// threshold 3, so any ZEN listing code lists the client: SBL 127.0.0.2,
// SBL CSS .3, XBL .4-.7, DROP .9, PBL .10-.11 (PBL lists dynamic and
// end-user ranges that should not talk SMTP to an MX directly; drop
// [10..11] for a submission-facing server). cbl.abuseat.org is not enabled
// and should not be added beside ZEN: since 2021 the CBL is the Spamhaus
// XBL, i.e. ZEN's 127.0.0.4-7, served by Spamhaus with the same error
// codes, so using both counts one listing twice.
//
// A zone entry with a filter adds its weight at most once per lookup,
// however many of its answers match, as postconf(5) documents for
// postscreen_dnsbl_sites ("When one postscreen_dnsbl_sites entry produces
// multiple DNSBL responses, postscreen(8) applies the weight at most
// once"). Entries naming the same domain with different filters share one
// query and are scored separately.
package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// maxAnswers bounds the addresses kept from one reply.
const maxAnswers = 16

// FailuresToOpen is the number of queries of one zone in a row that must
// fail with a timeout, a network error, SERVFAIL or REFUSED before the zone
// is marked down for Config.FailureBackoff.
const FailuresToOpen = 3

// Checker looks up addresses in the configured zones. It is safe for
// concurrent use.
type Checker struct {
	zones     []Zone
	specs     []string
	lists     []*list // one per distinct domain, queried once per lookup
	listOf    []int   // per zone, the index of its list
	cache     *cache  // nil when cache_size is 0
	threshold float64
	servers   []string
	timeout   time.Duration
	minTTL    time.Duration
	maxTTL    time.Duration
	negTTL    time.Duration
	key       string
	logEvery  time.Duration
	backoff   time.Duration // failure_backoff; 0 = breaker off
	now       func() time.Time
	log       *slog.Logger
	udp, tcp  *dns.Client

	lookups, listed, unknown atomic.Uint64
	queries, shared, skipped atomic.Uint64
	errs                     [numKinds]atomic.Uint64
}

// list is one distinct DNS domain, shared by every zone entry naming it.
type list struct {
	domain string // as configured
	query  string // as queried; may hold the DQS key
	shown  string // as queried, key masked
	zones  []int  // indexes into Checker.zones
	group  singleflight.Group

	queries, hits, misses, listings, errors atomic.Uint64
	skipped                                 atomic.Uint64 // lookups that skipped the zone while down
	latency                                 latency       // how long its queries took

	// down is the circuit breaker: set while the zone is skipped after
	// FailuresToOpen failed queries in a row. Written under mu; read
	// without it on the cache-miss path.
	down atomic.Bool

	mu          sync.Mutex
	fails       int        // recent queries in a row that tripped the breaker
	failAt      time.Time  // when the last of them failed
	downSince   time.Time  // when down was set
	nextProbe   time.Time  // while down: the next lookup at or after this queries
	downErr     *ZoneError // while down: reported for skipped lookups
	downSkipped uint64     // skipped when down was set, for the recovery log
	lastErr     time.Time
	lastErrText string
	lastOK      time.Time
	failing     bool
	logged      [numKinds]time.Time
}

// entry is one zone's answer for one address. Entries are immutable.
type entry struct {
	query   string       // query name, key masked, no trailing dot
	answers []netip.Addr // A records of the query name
	ttl     time.Duration
	expires time.Time
}

// New checks cfg and returns a Checker. With no resolvers configured it
// reads the nameservers of cfg.ResolvConf.
func New(cfg Config) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dnsbl: %w", err)
	}
	c := &Checker{
		threshold: cfg.Threshold,
		timeout:   cfg.QueryTimeout,
		minTTL:    cfg.MinTTL,
		maxTTL:    cfg.MaxTTL,
		negTTL:    cfg.NegativeTTL,
		key:       cfg.DQSKey,
		logEvery:  cfg.ErrorLogInterval,
		backoff:   cfg.FailureBackoff,
		now:       cfg.Now,
		log:       cfg.Logger,
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	c.udp = &dns.Client{Net: "udp", Timeout: c.timeout}
	c.tcp = &dns.Client{Net: "tcp", Timeout: c.timeout}

	for _, r := range cfg.Resolvers {
		a, _ := resolverAddr(r) // checked by Validate
		c.servers = append(c.servers, a)
	}
	if len(c.servers) == 0 {
		rc, err := dns.ClientConfigFromFile(cfg.ResolvConf)
		if err != nil {
			return nil, fmt.Errorf("dnsbl: resolv_conf %q: %w", cfg.ResolvConf, err)
		}
		for _, s := range rc.Servers {
			c.servers = append(c.servers, net.JoinHostPort(s, rc.Port))
		}
		if len(c.servers) == 0 {
			return nil, fmt.Errorf("dnsbl: resolv_conf %q: no nameserver lines; set resolvers", cfg.ResolvConf)
		}
	}

	byDomain := map[string]int{}
	for i, s := range cfg.Zones {
		z, _ := ParseZone(s) // checked by Validate
		c.zones = append(c.zones, z)
		c.specs = append(c.specs, z.String())
		li, ok := byDomain[z.Domain]
		if !ok {
			q := queryDomain(z.Domain, c.key)
			l := &list{domain: z.Domain, query: q, shown: q}
			if c.key != "" {
				l.shown = strings.Replace(q, c.key, maskedKey, 1)
			}
			li = len(c.lists)
			byDomain[z.Domain] = li
			c.lists = append(c.lists, l)
		}
		c.lists[li].zones = append(c.lists[li].zones, i)
		c.listOf = append(c.listOf, li)
	}
	c.cache = newCache(cfg.CacheSize, len(c.lists))
	c.warnConfig()
	return c, nil
}

// publicResolvers are well-known public resolvers that Spamhaus refuses to
// answer (they get 127.255.255.254 or NXDOMAIN).
var publicResolvers = map[netip.Addr]string{
	netip.MustParseAddr("8.8.8.8"):              "Google",
	netip.MustParseAddr("8.8.4.4"):              "Google",
	netip.MustParseAddr("2001:4860:4860::8888"): "Google",
	netip.MustParseAddr("2001:4860:4860::8844"): "Google",
	netip.MustParseAddr("1.1.1.1"):              "Cloudflare",
	netip.MustParseAddr("1.0.0.1"):              "Cloudflare",
	netip.MustParseAddr("2606:4700:4700::1111"): "Cloudflare",
	netip.MustParseAddr("2606:4700:4700::1001"): "Cloudflare",
	netip.MustParseAddr("9.9.9.9"):              "Quad9",
	netip.MustParseAddr("149.112.112.112"):      "Quad9",
	netip.MustParseAddr("2620:fe::fe"):          "Quad9",
	netip.MustParseAddr("208.67.222.222"):       "OpenDNS",
	netip.MustParseAddr("208.67.220.220"):       "OpenDNS",
}

// ConfigWarning is a configuration that works badly: New logs it, and
// `banner run -check` prints it.
type ConfigWarning struct {
	Key   string // the [dnsbl] key at fault: "zones" or "resolvers"
	Msg   string // what is wrong
	Fix   string // what to do about it
	Attrs []any  // more slog key/value pairs (resolver, operator)
}

// ConfigWarnings returns the warnings for zones queried through servers
// ("ip" or "ip:port") with the DQS key dqsKey: CBL beside ZEN, and Spamhaus
// zones through a public resolver without a DQS key.
func ConfigWarnings(zones []Zone, servers []string, dqsKey string) []ConfigWarning {
	var zen, cbl, spamhaus bool
	for _, z := range zones {
		zen = zen || z.Domain == "zen.spamhaus.org" || z.Domain == "xbl.spamhaus.org"
		cbl = cbl || z.Domain == "cbl.abuseat.org"
		spamhaus = spamhaus || strings.HasSuffix(z.Domain, ".spamhaus.org") || z.Domain == "cbl.abuseat.org"
	}
	var out []ConfigWarning
	if zen && cbl {
		out = append(out, ConfigWarning{Key: "zones",
			Msg: "cbl.abuseat.org is the Spamhaus XBL, already in zen.spamhaus.org (127.0.0.4-7); using both counts one listing twice",
			Fix: "remove cbl.abuseat.org from dnsbl.zones"})
	}
	if spamhaus && dqsKey == "" {
		for _, s := range servers {
			a, err := resolverAddr(s)
			ap, perr := netip.ParseAddrPort(a)
			if name, public := publicResolvers[ap.Addr().Unmap()]; err == nil && perr == nil && public {
				out = append(out, ConfigWarning{Key: "resolvers",
					Msg:   "Spamhaus does not answer queries from public resolvers; every lookup will fail",
					Fix:   "use a local recursive resolver such as unbound, or set dnsbl.dqs_key",
					Attrs: []any{"resolver", s, "operator", name}})
			}
		}
	}
	return out
}

// warnConfig logs the ConfigWarnings of the checker's zones and resolvers.
func (c *Checker) warnConfig() {
	for _, w := range ConfigWarnings(c.zones, c.servers, c.key) {
		c.log.Warn("dnsbl: "+w.Msg, append(w.Attrs, "fix", w.Fix)...)
	}
}

// Zones returns the configured zones in configuration order.
func (c *Checker) Zones() []Zone { return append([]Zone(nil), c.zones...) }

// Resolvers returns the DNS servers queried, as ip:port.
func (c *Checker) Resolvers() []string { return append([]string(nil), c.servers...) }

// outcome is what one zone's query produced, shared by concurrent lookups.
type outcome struct {
	e      *entry
	err    *ZoneError
	cached bool
}

// Lookup checks ip against every zone, from the cache where it can, and
// querying the rest in parallel. A zone marked down after failed queries
// (Config.FailureBackoff) is not asked: it is reported at once as unknown
// with ErrZoneDown, unless this lookup is the backoff period's probe. It
// returns once every zone has answered or ctx ends; zones still unanswered
// then are marked unknown (ErrDeadline) while their queries go on to fill
// the cache for later lookups. The error is non-nil only for an invalid
// address; DNS failures are reported in the Result (Unknown, Err and
// ZoneResult.Err). IPv4-mapped IPv6 addresses are checked as IPv4.
func (c *Checker) Lookup(ctx context.Context, ip netip.Addr) (Result, error) {
	if !ip.IsValid() {
		return Result{}, errors.New("dnsbl: lookup of an invalid IP address")
	}
	ip = ip.Unmap().WithZone("")
	if len(c.zones) == 0 {
		c.lookups.Add(1)
		return Result{IP: ip, Threshold: c.threshold}, nil
	}
	now := c.now()
	var rec *record
	if c.cache != nil {
		var whole bool
		if rec, whole = c.cache.get(ip, now); whole {
			return Result{IP: ip, Threshold: c.threshold, Score: rec.score, Listed: rec.listed,
				Zones: c.zonesAt(rec, now)}, nil
		}
	}
	c.lookups.Add(1)
	res := Result{IP: ip, Threshold: c.threshold}
	res.Zones = make([]ZoneResult, len(c.zones))
	var buf [8]int
	var pbuf [8]bool
	pending, probes := buf[:0], pbuf[:0]
	for i, l := range c.lists {
		if e := rec.answer(i, now); e != nil {
			l.hits.Add(1)
			c.fill(&res, l, outcome{e: e, cached: true}, now)
			continue
		}
		l.misses.Add(1)
		probe, zerr := l.admit(now, c.backoff)
		if zerr != nil {
			l.skipped.Add(1)
			c.skipped.Add(1)
			q := QueryName(ip, l.shown)
			c.fill(&res, l, outcome{e: &entry{query: q[:len(q)-1]}, err: zerr}, now)
			continue
		}
		pending, probes = append(pending, i), append(probes, probe)
	}
	if len(pending) > 0 {
		c.resolve(ctx, &res, ip, pending, probes, now)
	}
	for i := range res.Zones {
		res.Score += res.Zones[i].Weight
	}
	res.Listed = res.Score >= c.threshold
	if res.Listed {
		c.listed.Add(1)
	}
	if res.Unknown {
		c.unknown.Add(1)
	}
	return res, nil
}

// resolve queries the pending lists, sharing each query with concurrent
// lookups of the same address. The query runs on its own context bounded
// by the query timeout, so a caller giving up does not fail the others.
// probes[j] is true when pending[j] is a down zone's probe, admitted at
// now: if its answer came from the cache after all (another flight stored
// it meanwhile), no query tested the zone, so the probe is handed back.
func (c *Checker) resolve(ctx context.Context, res *Result, ip netip.Addr, pending []int, probes []bool, now time.Time) {
	key := ip.String()
	chans := make([]<-chan singleflight.Result, len(pending))
	for j, i := range pending {
		l := c.lists[i]
		chans[j] = l.group.DoChan(key, func() (any, error) { return c.flight(i, ip), nil })
	}
	for j, i := range pending {
		l := c.lists[i]
		var (
			r  singleflight.Result
			ok bool
		)
		select {
		case r, ok = <-chans[j]:
		default:
			select {
			case r, ok = <-chans[j]:
			case <-ctx.Done():
			}
		}
		if !ok {
			c.errs[kindDeadline].Add(1)
			q := QueryName(ip, l.shown)
			c.fill(res, l, outcome{
				e: &entry{query: q[:len(q)-1]},
				err: &ZoneError{Zone: l.shown, kind: kindDeadline,
					Detail: fmt.Sprintf("%v (%v)", ErrDeadline, context.Cause(ctx))},
			}, c.now())
			continue
		}
		if r.Shared {
			c.shared.Add(1)
		}
		o := r.Val.(outcome)
		if probes[j] && o.cached {
			l.unprobe(now, c.backoff)
		}
		c.fill(res, l, o, c.now())
	}
}

// fill writes one list's outcome into the results of its zones.
func (c *Checker) fill(res *Result, l *list, o outcome, now time.Time) {
	matched := false
	for _, i := range l.zones {
		z := &res.Zones[i]
		if o.err != nil {
			z.Zone, z.Spec, z.Query, z.Answers = l.domain, c.specs[i], o.e.query, o.e.answers
			z.Err = o.err
			res.Unknown = true
			continue
		}
		ttl := o.e.ttl
		if o.cached {
			ttl = cacheTTL(o.e.expires, now)
		}
		if c.zoneResult(z, i, l, o.e, o.cached, ttl) {
			matched = true
		}
	}
	if matched {
		l.listings.Add(1)
	}
}

// isListingCode reports whether a can be a listing: in 127.0.0.0/8 but not
// in 127.255.255.0/24, where lists put their error codes.
func isListingCode(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	b := a.As4()
	return b[0] == 127 && !(b[1] == 255 && b[2] == 255)
}

// flight runs list li's query for ip on behalf of every concurrent lookup
// and caches a successful answer.
func (c *Checker) flight(li int, ip netip.Addr) outcome {
	l := c.lists[li]
	// A lookup that missed the cache just before another flight stored the
	// answer must not query again.
	if c.cache != nil {
		if e := c.cache.peek(ip).answer(li, c.now()); e != nil {
			return outcome{e: e, cached: true}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout*time.Duration(len(c.servers)))
	defer cancel()
	start := time.Now()
	e, zerr := c.query(ctx, l, ip)
	l.latency.observe(time.Since(start))
	now := c.now()
	c.observe(l, zerr, now)
	if zerr != nil {
		c.recordError(l, zerr, now)
		return outcome{e: e, err: zerr}
	}
	e.expires = now.Add(e.ttl)
	l.mu.Lock()
	l.lastOK, l.failing = now, false
	l.mu.Unlock()
	if c.cache != nil {
		c.store(ip, li, e)
	}
	return outcome{e: e}
}

// query asks the resolvers in turn until one gives a usable answer.
func (c *Checker) query(ctx context.Context, l *list, ip netip.Addr) (*entry, *ZoneError) {
	qname := QueryName(ip, l.query)
	shown := QueryName(ip, l.shown)
	e := &entry{query: shown[:len(shown)-1]}
	var zerr *ZoneError
	for _, srv := range c.servers {
		m := new(dns.Msg)
		m.SetQuestion(qname, dns.TypeA) // random ID, RD set
		r, err := c.exchange(ctx, l, m, srv)
		if err != nil {
			zerr = c.exchangeError(l, srv, err)
		} else {
			e, zerr = c.parse(l, m, r, srv, e.query)
			if zerr == nil {
				return e, nil
			}
		}
		if !zerr.kind.trips() || ctx.Err() != nil {
			break
		}
	}
	return e, zerr
}

// exchange sends m over UDP and again over TCP if the reply is truncated.
func (c *Checker) exchange(ctx context.Context, l *list, m *dns.Msg, srv string) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	c.queries.Add(1)
	l.queries.Add(1)
	r, _, err := c.udp.ExchangeContext(ctx, m, srv)
	if err != nil || !r.Truncated {
		return r, err
	}
	c.queries.Add(1)
	l.queries.Add(1)
	r, _, err = c.tcp.ExchangeContext(ctx, m, srv)
	return r, err
}

func (c *Checker) exchangeError(l *list, srv string, err error) *ZoneError {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return &ZoneError{Zone: l.shown, kind: kindTimeout,
			Detail: fmt.Sprintf("%v from %s within %v", ErrTimeout, srv, c.timeout)}
	}
	return &ZoneError{Zone: l.shown, kind: kindNetwork,
		Detail: fmt.Sprintf("%v with %s: %s", ErrNetwork, srv, c.scrub(err.Error()))}
}

// scrub removes the DQS key from text that may have picked it up.
func (c *Checker) scrub(s string) string {
	if c.key == "" {
		return s
	}
	return strings.ReplaceAll(s, c.key, maskedKey)
}

// parse checks a reply against the query and turns it into an entry.
func (c *Checker) parse(l *list, m, r *dns.Msg, srv, shown string) (*entry, *ZoneError) {
	e := &entry{query: shown}
	fail := func(kind errKind, format string, a ...any) (*entry, *ZoneError) {
		return e, &ZoneError{Zone: l.shown, kind: kind, Detail: c.scrub(fmt.Sprintf(format, a...))}
	}
	q := m.Question[0]
	if !r.Response || r.Opcode != dns.OpcodeQuery {
		return fail(kindMismatch, "%v: from %s: not a response to a query", ErrMismatch, srv)
	}
	switch r.Rcode {
	case dns.RcodeSuccess, dns.RcodeNameError:
		if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, q.Name) ||
			r.Question[0].Qtype != q.Qtype || r.Question[0].Qclass != q.Qclass {
			return fail(kindMismatch, "%v: from %s: the reply answers another question", ErrMismatch, srv)
		}
	case dns.RcodeServerFailure:
		return fail(kindServFail, "%v (from %s)", ErrServFail, srv)
	case dns.RcodeRefused:
		return fail(kindRefused, "%v (from %s)", ErrRefused, srv)
	default:
		return fail(kindRcode, "%v: %s (from %s)", ErrRcode, dns.RcodeToString[r.Rcode], srv)
	}

	var minTTL uint32
	for _, rr := range r.Answer {
		a, ok := rr.(*dns.A)
		if !ok || a.Hdr.Class != dns.ClassINET || !strings.EqualFold(a.Hdr.Name, q.Name) {
			continue // CNAMEs, other types, other names: never a listing
		}
		addr, ok := netip.AddrFromSlice(a.A.To4())
		if !ok || containsAddr(e.answers, addr) {
			continue
		}
		if len(e.answers) == 0 || a.Hdr.Ttl < minTTL {
			minTTL = a.Hdr.Ttl
		}
		if len(e.answers) < maxAnswers {
			e.answers = append(e.answers, addr)
		}
	}
	if r.Rcode == dns.RcodeNameError || len(e.answers) == 0 {
		// Not listed (NXDOMAIN or no A record). RFC 2308: the negative TTL
		// is the smaller of the SOA's TTL and its MINIMUM field.
		e.answers = nil
		e.ttl = c.negTTL
		for _, rr := range r.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				e.ttl = c.clamp(min(soa.Hdr.Ttl, soa.Minttl))
				break
			}
		}
		return e, nil
	}
	e.ttl = c.clamp(minTTL)

	valid, bogus := 0, 0
	for _, a := range e.answers {
		b := a.As4()
		switch {
		case b[0] == 127 && b[1] == 255 && b[2] == 255:
			what, fix := blockedAdvice(a)
			return fail(kindBlocked, "%v: %s = %s; fix: %s", ErrBlocked, a, what, fix)
		case b[0] != 127:
			bogus++
		default:
			valid++
		}
	}
	if valid == 0 {
		return fail(kindBogus, "%v (%s from %s): the resolver or the list is broken or hijacks answers", ErrBogus, e.answers[0], srv)
	}
	if bogus > 0 {
		now := c.now()
		if c.shouldLog(l, kindBogus, now) {
			c.log.Warn("dnsbl: ignoring answers outside 127.0.0.0/8", "zone", l.shown,
				"query", shown, "answers", fmt.Sprint(e.answers), "resolver", srv)
		}
	}
	return e, nil
}

func containsAddr(s []netip.Addr, a netip.Addr) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

func (c *Checker) clamp(ttl uint32) time.Duration {
	return min(max(time.Duration(ttl)*time.Second, c.minTTL), c.maxTTL)
}

// openResolverFix is the remedy logged for 127.255.255.x answers.
const openResolverFix = "use a local recursive resolver such as unbound, or a Spamhaus DQS key (dnsbl.dqs_key)"

// blockedAdvice explains a 127.255.255.x answer and says how to fix it.
func blockedAdvice(a netip.Addr) (what, fix string) {
	switch a.As4()[3] {
	case 254:
		return "query through a public/open resolver", openResolverFix
	case 255:
		return "excessive number of queries", openResolverFix
	case 252:
		return "typing error in the DNSBL name", "check the zone names in dnsbl.zones"
	case 250, 251:
		return "Spamhaus DQS key refused or over its limit", "check dnsbl.dqs_key and the DQS account"
	}
	return "error code of the list", openResolverFix
}

// shouldLog reports whether an error of kind for l may be logged now, at
// most once per ErrorLogInterval.
func (c *Checker) shouldLog(l *list, kind errKind, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if last := l.logged[kind]; !last.IsZero() && now.Sub(last) < c.logEvery {
		return false
	}
	l.logged[kind] = now
	return true
}

// recordError counts the error, keeps it as the zone's error state and
// logs it, rate-limited.
func (c *Checker) recordError(l *list, zerr *ZoneError, now time.Time) {
	c.errs[zerr.kind].Add(1)
	l.errors.Add(1)
	l.mu.Lock()
	l.lastErr, l.lastErrText, l.failing = now, zerr.Error(), true
	l.mu.Unlock()
	if !c.shouldLog(l, zerr.kind, now) {
		return
	}
	if zerr.kind == kindBlocked {
		c.log.Error("dnsbl: "+zerr.Error(), "zone", l.shown)
		return
	}
	c.log.Warn("dnsbl: "+zerr.Error(), "zone", l.shown)
}

// trips reports whether an error of kind k means the zone could not be
// asked at all (no reply, a network error, SERVFAIL, REFUSED): the errors
// that make the next resolver be tried and that count toward marking the
// zone down. Other errors are replies that came back at once.
func (k errKind) trips() bool {
	return k == kindTimeout || k == kindNetwork || k == kindServFail || k == kindRefused
}

// admit reports whether a lookup that missed the cache at now may query l:
// it may while the breaker is closed, and the first lookup at or after
// nextProbe while it is open may too: it becomes the probe (probe true) and
// moves nextProbe one backoff on. Otherwise it returns the error to report
// for the skipped zone. Lookups answered from the cache never get here, so
// a cache hit never takes the probe.
func (l *list) admit(now time.Time, backoff time.Duration) (probe bool, zerr *ZoneError) {
	if !l.down.Load() {
		return false, nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.down.Load() {
		return false, nil
	}
	// A probe more than one backoff away means the clock went back.
	if !now.Before(l.nextProbe) || l.nextProbe.Sub(now) > backoff {
		l.nextProbe = now.Add(backoff)
		return true, nil
	}
	return false, l.downErr
}

// unprobe hands back the probe admit granted at now, when the probe's
// lookup was answered from the cache without a query: the zone was not
// tested, so the next lookup that misses the cache probes it.
func (l *list) unprobe(now time.Time, backoff time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down.Load() && l.nextProbe.Equal(now.Add(backoff)) {
		l.nextProbe = now
	}
}

// failWindow is how recent the previous tripping failure must be for a new
// one to continue its run: failure_backoff, or one query's worst case
// (query_timeout at every resolver) if that is longer. Failures further
// apart are not an outage in progress, however few answers came between.
func (c *Checker) failWindow() time.Duration {
	return max(c.backoff, c.timeout*time.Duration(len(c.servers)))
}

// observe feeds the outcome of one query of l (zerr nil on success) to the
// zone's circuit breaker. FailuresToOpen tripping errors in a row, each
// within failWindow of the one before, mark the zone down for the backoff;
// an older failure does not count toward the run, which starts again. Every
// further failure while down (a failed probe) sets the next probe one
// backoff after it. Any other outcome, an answer or an error reply such as
// 127.255.255.x, shows the zone can be asked: it resets the count and
// closes the breaker.
func (c *Checker) observe(l *list, zerr *ZoneError, now time.Time) {
	if zerr == nil || !zerr.kind.trips() {
		l.mu.Lock()
		wasDown, since, skipped := l.down.Load(), l.downSince, l.skipped.Load()-l.downSkipped
		l.fails, l.downErr = 0, nil
		l.down.Store(false)
		l.mu.Unlock()
		if wasDown {
			c.log.Info("dnsbl: zone answers again; lookups query it again", "zone", l.shown,
				"down_for", now.Sub(since).Round(time.Millisecond).String(), "skipped_lookups", skipped)
		}
		return
	}
	l.mu.Lock()
	if !l.down.Load() && l.fails > 0 && now.Sub(l.failAt) > c.failWindow() {
		l.fails = 0 // stale: not part of this run
	}
	l.fails++
	l.failAt = now
	fails := l.fails
	if c.backoff <= 0 || fails < FailuresToOpen {
		l.mu.Unlock()
		return
	}
	opened := !l.down.Load()
	if opened {
		l.downSince, l.downSkipped = now, l.skipped.Load()
		l.down.Store(true)
	}
	l.nextProbe = now.Add(c.backoff)
	l.downErr = &ZoneError{Zone: l.shown, kind: kindDown,
		Detail: fmt.Sprintf("%v (%d in a row, last: %s; one probe query per %v)", ErrZoneDown, fails, zerr.Detail, c.backoff)}
	l.mu.Unlock()
	if opened {
		c.log.Warn("dnsbl: zone down: lookups skip it without waiting until a probe query answers",
			"zone", l.shown, "failures", fails, "last_error", zerr.Detail, "failure_backoff", c.backoff.String())
	}
}
