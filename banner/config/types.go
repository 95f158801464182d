package config

import (
	"net/netip"
	"time"

	"github.com/banner-mta/banner/banner"
)

// Duration is a time.Duration written in the file as a string such as
// "90s", "10m", "1h30m", "2d" or "1w". Days and weeks are accepted because
// ban times are usually counted in them.
type Duration time.Duration

// UnmarshalText parses a duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := banner.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// MarshalText writes the duration in Go's notation.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// Prefix is an address or CIDR written as a string: "192.0.2.7",
// "192.0.2.0/24", "2001:db8::/32". A bare address means a single host.
type Prefix netip.Prefix

// UnmarshalText parses an address or a CIDR.
func (p *Prefix) UnmarshalText(b []byte) error {
	v, err := ParsePrefix(string(b))
	if err != nil {
		return err
	}
	*p = Prefix(v)
	return nil
}

// MarshalText writes the prefix in CIDR notation.
func (p Prefix) MarshalText() ([]byte, error) { return []byte(netip.Prefix(p).String()), nil }

// ParsePrefix parses an address or CIDR as the file writes it: see
// banner.ParsePrefix, the one parser.
func ParsePrefix(s string) (netip.Prefix, error) { return banner.ParsePrefix(s) }

func prefixes(ps []Prefix) []netip.Prefix {
	out := make([]netip.Prefix, len(ps))
	for i, p := range ps {
		out[i] = netip.Prefix(p)
	}
	return out
}
