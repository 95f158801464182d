package dnslist

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// Config configures the DNS list server.
type Config struct {
	// Listen is the host:port served over UDP and TCP; "" turns the server
	// off (listen).
	Listen string
	// Zone is the list's domain: 127.0.0.2 is asked as 2.0.0.127.Zone
	// (zone).
	Zone string
	// TTL is the TTL of listings (at most the time a ban has left) and of
	// the SOA that bounds negative caching (ttl).
	TTL time.Duration
	// ListScored makes an address with a score within findtime but no ban
	// answer 127.0.0.3 (list_scored).
	ListScored bool
	// AllowClients are the networks whose queries are answered; others
	// get REFUSED (allow_clients).
	AllowClients []netip.Prefix
	// Logger gets start-up and error lines; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: off, zone banner.local, 60 s, only
// banned addresses listed, loopback clients only.
func DefaultConfig() Config {
	return Config{
		Zone:         "banner.local",
		TTL:          time.Minute,
		AllowClients: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")},
	}
}

// Validate reports every invalid field, named as in the config file.
func (c Config) Validate() error {
	var errs []error
	if c.Listen != "" {
		if _, port, err := net.SplitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("listen: want host:port: %w", err))
		} else if _, err := net.LookupPort("udp", port); err != nil {
			errs = append(errs, fmt.Errorf("listen: want host:port: %w", err))
		}
	}
	if z := dns.Fqdn(c.Zone); c.Zone == "" || c.Zone == "." {
		errs = append(errs, errors.New("zone: must not be empty"))
	} else if _, ok := dns.IsDomainName(z); !ok || len(z) > 255-64 {
		errs = append(errs, fmt.Errorf("zone: %q is not a domain name short enough for 32 nibble labels", c.Zone))
	}
	if c.TTL < time.Second || c.TTL > 24*time.Hour {
		errs = append(errs, fmt.Errorf("ttl: must be between 1s and 24h, got %v", c.TTL))
	}
	for i, p := range c.AllowClients {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("allow_clients[%d]: invalid prefix", i))
		}
	}
	return errors.Join(errs...)
}

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}
