package dnsbl

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Config configures a Checker. Field comments give the TOML key of the
// [dnsbl] section in parentheses.
type Config struct {
	// Zones lists the DNS lists in postscreen_dnsbl_sites syntax (zones).
	// Empty disables DNSBL checks: every Lookup scores 0.
	Zones []string
	// Threshold is the score at which a client counts as listed
	// (threshold).
	Threshold float64
	// Resolvers are the DNS servers to ask, as "ip" or "ip:port"
	// (resolvers). Empty means the nameservers of ResolvConf.
	Resolvers []string
	// ResolvConf is read for nameservers when Resolvers is empty
	// (resolv_conf).
	ResolvConf string
	// QueryTimeout bounds each attempt at one resolver for one zone
	// (query_timeout). A zone tries each resolver once, in order, on
	// timeout, SERVFAIL, REFUSED or a network error.
	QueryTimeout time.Duration
	// CacheSize is the number of addresses whose answers are cached
	// (cache_size), each with the answer of every zone domain; 0 disables
	// the cache.
	CacheSize int
	// MinTTL and MaxTTL clamp the time an answer is cached (min_ttl,
	// max_ttl), like postscreen_dnsbl_min_ttl and postscreen_dnsbl_max_ttl.
	MinTTL, MaxTTL time.Duration
	// NegativeTTL is how long "not listed" is cached when the reply carries
	// no SOA record to take the negative TTL from (negative_ttl).
	NegativeTTL time.Duration
	// DQSKey is a Spamhaus Data Query Service key (dqs_key). When set,
	// every *.spamhaus.org zone is queried as <key>.<zone>.dq.spamhaus.net.
	// The key is never shown in results, reports, errors or logs.
	DQSKey string
	// ErrorLogInterval is the least time between two error logs of one
	// kind for one zone (error_log_interval); 0 logs every error.
	ErrorLogInterval time.Duration
	// FailureBackoff is how long a zone is marked down after
	// FailuresToOpen queries of it in a row failed with a timeout, a
	// network error, SERVFAIL or REFUSED (failure_backoff), each within
	// FailureBackoff (or QueryTimeout times the resolvers, if longer) of
	// the previous one: older failures do not count. While it is
	// down, lookups that miss the cache get ErrZoneDown for it at once
	// instead of waiting for QueryTimeout, except that one probe query is
	// let through per FailureBackoff; the first reply closes the breaker.
	// Cached answers are still used. 0 disables the breaker.
	FailureBackoff time.Duration

	// Now is the clock; nil means time.Now. Tests inject a fake one.
	Now func() time.Time
	// Logger receives warnings and errors; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultZone is the default list: Spamhaus ZEN, counting only its listing
// codes (SBL 127.0.0.2, CSS .3, XBL/CBL .4-.7, SBL DROP .9, PBL .10-.11),
// weight 3, so that with the default threshold of 3 one ZEN listing is
// enough.
const DefaultZone = "zen.spamhaus.org=127.0.0.[2..11]*3"

// DefaultConfig returns the defaults: Spamhaus ZEN listing codes, threshold
// 3, resolvers from /etc/resolv.conf, 1.5 s per query, the answers for
// 100 000 addresses cached, TTLs clamped to [1m, 1h], 10m negative TTL when
// the reply has no SOA, errors logged at most every 10 minutes per zone, a
// zone skipped for 30 s after 3 failed queries in a row.
func DefaultConfig() Config {
	return Config{
		Zones:            []string{DefaultZone},
		Threshold:        3,
		ResolvConf:       "/etc/resolv.conf",
		QueryTimeout:     1500 * time.Millisecond,
		CacheSize:        100000,
		MinTTL:           time.Minute,
		MaxTTL:           time.Hour,
		NegativeTTL:      10 * time.Minute,
		ErrorLogInterval: 10 * time.Minute,
		FailureBackoff:   30 * time.Second,
	}
}

// maxCacheSize bounds cache_size: ten million entries is some GB of memory.
const maxCacheSize = 10_000_000

// Validate checks the configuration; each error names its TOML key.
func (c Config) Validate() error {
	var errs []error
	add := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	seen := map[string]int{}
	for i, s := range c.Zones {
		z, err := ParseZone(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("zones[%d]: %w", i, err))
			continue
		}
		if j, dup := seen[z.String()]; dup {
			add(fmt.Sprintf("zones[%d]", i), "%s repeats zones[%d]", quote(s), j)
			continue
		}
		seen[z.String()] = i
		if n := len(queryDomain(z.Domain, c.DQSKey)) + maxReversed; n > 253 {
			add(fmt.Sprintf("zones[%d]", i), "domain %q is too long: query names would be %d bytes, over the DNS limit of 253", z.Domain, n)
		}
	}
	if !(c.Threshold > 0) || c.Threshold > 1e12 {
		add("threshold", "must be > 0 (got %v)", c.Threshold)
	}
	for i, r := range c.Resolvers {
		if _, err := resolverAddr(r); err != nil {
			errs = append(errs, fmt.Errorf("resolvers[%d]: %w", i, err))
		}
	}
	if len(c.Resolvers) == 0 && c.ResolvConf == "" {
		add("resolv_conf", "must be set when resolvers is empty")
	}
	if c.QueryTimeout < time.Millisecond {
		add("query_timeout", "must be > 0 and at least 1ms (got %v)", c.QueryTimeout)
	}
	if c.CacheSize < 0 || c.CacheSize > maxCacheSize {
		add("cache_size", "must be >= 0 and at most %d (got %d); 0 disables the cache", maxCacheSize, c.CacheSize)
	}
	if c.MinTTL < 0 {
		add("min_ttl", "must be >= 0 (got %v)", c.MinTTL)
	}
	if c.MaxTTL < c.MinTTL {
		add("max_ttl", "must be >= min_ttl (got %v < %v)", c.MaxTTL, c.MinTTL)
	}
	if c.NegativeTTL < 0 {
		add("negative_ttl", "must be >= 0 (got %v)", c.NegativeTTL)
	}
	if c.ErrorLogInterval < 0 {
		add("error_log_interval", "must be >= 0 (got %v)", c.ErrorLogInterval)
	}
	if c.FailureBackoff < 0 {
		add("failure_backoff", "must be >= 0 (got %v); 0 disables it", c.FailureBackoff)
	}
	if err := checkDQSKey(c.DQSKey); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkDQSKey checks the key is one DNS label without echoing it.
func checkDQSKey(k string) error {
	if k == "" {
		return nil
	}
	if len(k) > 63 {
		return fmt.Errorf("dqs_key: must be at most 63 characters (got %d; value not shown)", len(k))
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return fmt.Errorf("dqs_key: must be letters and digits only; character %d is not (value not shown)", i+1)
		}
	}
	return nil
}

// resolverAddr turns "ip" or "ip:port" into "ip:port"; host names are
// refused because resolving them would need a resolver.
func resolverAddr(s string) (string, error) {
	if ip, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return net.JoinHostPort(ip.String(), "53"), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return "", fmt.Errorf("resolver %q: want an IP address or ip:port (e.g. 127.0.0.1:53, [::1]:53)", s)
	}
	if ap.Port() == 0 {
		return "", fmt.Errorf("resolver %q: port 0", s)
	}
	return net.JoinHostPort(ap.Addr().String(), strconv.Itoa(int(ap.Port()))), nil
}
