// Package fcrdns allowlists clients by forward-confirmed reverse DNS: an
// address whose PTR name ends in a configured suffix (".google.com") and
// whose name resolves back to the address. Each address is looked up once,
// in the background, against the configured resolvers, and the verdict is
// cached; the engine asks without waiting.
package fcrdns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Config configures a Checker.
type Config struct {
	// Suffixes are the name suffixes allowlisted (allow_fcrdns), e.g.
	// ".google.com": a name matches if it ends in the suffix; a suffix
	// without a leading dot matches that name and the names below it.
	Suffixes []string
	// Resolvers are the DNS servers asked, "host:port".
	Resolvers []string
	// Timeout bounds each query.
	Timeout time.Duration
	// TTL is how long a verdict is kept; NegativeTTL how long a failed
	// lookup (timeout, SERVFAIL) is, before it is asked again.
	TTL, NegativeTTL time.Duration
	// CacheSize bounds the verdicts kept; Parallel the lookups in flight
	// (an address seen while all are busy is looked up when seen again).
	CacheSize, Parallel int
	Logger              *slog.Logger
}

// DefaultConfig returns the defaults (no suffixes: off).
func DefaultConfig() Config {
	return Config{Timeout: 2 * time.Second, TTL: 24 * time.Hour, NegativeTTL: 10 * time.Minute, CacheSize: 100_000, Parallel: 8}
}

// Validate names the invalid fields.
func (c Config) Validate() error {
	var errs []error
	for i, s := range c.Suffixes {
		n := strings.TrimPrefix(strings.TrimSuffix(s, "."), ".")
		if n == "" || !strings.Contains(n, ".") {
			errs = append(errs, fmt.Errorf("allow_fcrdns[%d]: %q: want a domain of at least two labels, e.g. \".google.com\"", i, s))
		} else if !hostname(n) {
			errs = append(errs, fmt.Errorf("allow_fcrdns[%d]: %q is not a domain name", i, s))
		}
	}
	if len(c.Suffixes) > 0 && len(c.Resolvers) == 0 {
		errs = append(errs, errors.New("allow_fcrdns: no resolvers"))
	}
	if c.Timeout <= 0 || c.TTL <= 0 || c.NegativeTTL <= 0 || c.CacheSize <= 0 || c.Parallel <= 0 {
		errs = append(errs, errors.New("fcrdns: timeout, ttl, negative ttl, cache size and parallel must be > 0"))
	}
	return errors.Join(errs...)
}

// hostname reports whether n is labels of letters, digits, '-' and '_'.
func hostname(n string) bool {
	for _, l := range strings.Split(n, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for _, r := range l {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

// Checker looks clients up and caches the verdicts. It is safe for
// concurrent use.
type Checker struct {
	cfg      Config
	suffixes []string // lower case, with a leading dot
	client   *dns.Client
	log      *slog.Logger
	sem      chan struct{}

	mu       sync.Mutex
	cache    map[netip.Addr]verdict
	inflight map[netip.Addr]struct{}
}

type verdict struct {
	name    string // the confirmed name, if allowed
	allowed bool
	expires time.Time
}

// New returns a Checker.
func New(cfg Config) (*Checker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := &Checker{cfg: cfg, client: &dns.Client{Net: "udp", Timeout: cfg.Timeout}, log: cfg.Logger,
		sem: make(chan struct{}, cfg.Parallel), cache: map[netip.Addr]verdict{}, inflight: map[netip.Addr]struct{}{}}
	if c.log == nil {
		c.log = slog.Default()
	}
	for _, s := range cfg.Suffixes {
		s = strings.ToLower(strings.TrimSuffix(s, "."))
		if !strings.HasPrefix(s, ".") {
			s = "." + s
		}
		c.suffixes = append(c.suffixes, s)
	}
	return c, nil
}

// Allowed returns the forward-confirmed name of addr if it ends in a
// configured suffix. It never waits: an address without a verdict starts
// a lookup in the background and is not allowed until it is answered.
func (c *Checker) Allowed(addr netip.Addr) (string, bool) {
	addr = addr.Unmap()
	now := time.Now()
	c.mu.Lock()
	v, ok := c.cache[addr]
	if ok && now.Before(v.expires) {
		c.mu.Unlock()
		return v.name, v.allowed
	}
	if _, busy := c.inflight[addr]; busy {
		c.mu.Unlock()
		return "", false
	}
	select {
	case c.sem <- struct{}{}:
	default:
		c.mu.Unlock()
		return "", false // all lookups busy: asked again next time
	}
	c.inflight[addr] = struct{}{}
	c.mu.Unlock()
	go func() {
		defer func() { <-c.sem }()
		ctx, cancel := context.WithTimeout(context.Background(), 4*c.cfg.Timeout)
		defer cancel()
		_, _, _ = c.Lookup(ctx, addr)
	}()
	return "", false
}

// Lookup looks addr up now, caches and returns the verdict: the confirmed
// name and whether it is allowed. err is set when a query failed; the
// verdict (not allowed) is then kept for NegativeTTL only.
func (c *Checker) Lookup(ctx context.Context, addr netip.Addr) (string, bool, error) {
	addr = addr.Unmap()
	name, ok, err := c.lookup(ctx, addr)
	ttl := c.cfg.TTL
	if err != nil {
		ttl = c.cfg.NegativeTTL
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, addr)
	if _, had := c.cache[addr]; !had && len(c.cache) >= c.cfg.CacheSize {
		c.evict()
	}
	c.cache[addr] = verdict{name: name, allowed: ok, expires: time.Now().Add(ttl)}
	if ok {
		c.log.Info("client allowlisted by forward-confirmed reverse DNS", "ip", addr.String(), "name", name)
	}
	return name, ok, err
}

// evict drops an eighth of the cache, expired verdicts first.
func (c *Checker) evict() {
	now := time.Now()
	n := max(1, len(c.cache)/8)
	for a, v := range c.cache {
		if now.After(v.expires) {
			delete(c.cache, a)
			n--
		}
	}
	for a := range c.cache { // map order: arbitrary ones
		if n <= 0 {
			break
		}
		delete(c.cache, a)
		n--
	}
}

// matches reports whether name (lower case, no trailing dot) ends in a
// configured suffix.
func (c *Checker) matches(name string) bool {
	for _, s := range c.suffixes {
		if strings.HasSuffix(name, s) || name == s[1:] {
			return true
		}
	}
	return false
}

// maxNames bounds the PTR names followed.
const maxNames = 4

func (c *Checker) lookup(ctx context.Context, addr netip.Addr) (string, bool, error) {
	rev, err := dns.ReverseAddr(addr.String())
	if err != nil {
		return "", false, err
	}
	r, err := c.query(ctx, rev, dns.TypePTR)
	if err != nil {
		return "", false, err
	}
	qtype := dns.TypeA
	if addr.Is6() {
		qtype = dns.TypeAAAA
	}
	var errs []error
	names := 0
	for _, rr := range r.Answer {
		ptr, ok := rr.(*dns.PTR)
		if !ok {
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(ptr.Ptr, "."))
		if !c.matches(name) {
			continue
		}
		if names++; names > maxNames {
			break
		}
		f, err := c.query(ctx, dns.Fqdn(name), qtype)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, rr := range f.Answer {
			var ip netip.Addr
			switch a := rr.(type) {
			case *dns.A:
				ip, _ = netip.AddrFromSlice(a.A)
			case *dns.AAAA:
				ip, _ = netip.AddrFromSlice(a.AAAA)
			}
			if ip.Unmap() == addr { // the name's records, or those of its CNAME target
				return name, true, nil
			}
		}
	}
	return "", false, errors.Join(errs...)
}

// query asks the resolvers in turn; NXDOMAIN and NOERROR are answers.
func (c *Checker) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	var errs []error
	for _, srv := range c.cfg.Resolvers {
		r, _, err := c.client.ExchangeContext(ctx, m, srv)
		if err == nil && (r.Rcode == dns.RcodeSuccess || r.Rcode == dns.RcodeNameError) {
			return r, nil
		}
		if err == nil {
			err = fmt.Errorf("%s", dns.RcodeToString[r.Rcode])
		}
		errs = append(errs, fmt.Errorf("%s %s from %s: %w", name, dns.TypeToString[qtype], srv, err))
	}
	return nil, errors.Join(errs...)
}
