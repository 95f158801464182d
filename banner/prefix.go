package banner

import (
	"fmt"
	"net/netip"
	"strings"
)

// MinBits4 and MinBits6 are the shortest prefixes banner bans or takes as
// its own networks: anything broader is surely a typo (and as a Postfix
// mynetworks entry, an open relay).
const (
	MinBits4 = 8
	MinBits6 = 16
)

// TooBroad reports whether p is wider than MinBits4 (IPv4) or MinBits6
// (IPv6).
func TooBroad(p netip.Prefix) bool {
	p = UnmapPrefix(p)
	if p.Addr().Is4() {
		return p.Bits() < MinBits4
	}
	return p.Bits() < MinBits6
}

// ParsePrefix parses an address or prefix as an administrator writes it, on
// the command line or in the configuration file: an address (198.51.100.7,
// 2001:db8::1, meaning /32 or /128) or a CIDR prefix (203.0.113.0/24,
// 2001:db8::/64). IPv4-mapped IPv6 forms are converted to IPv4. A prefix
// with host bits set (198.51.100.7/24) is rejected rather than silently
// widened, and the error suggests the canonical form. Zones are rejected.
// Every error wraps ErrInvalidPrefix. It does not judge breadth: see
// CheckBanPrefix.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, fmt.Errorf("empty address or prefix: %w", ErrInvalidPrefix)
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid address %q: not an IP address or CIDR prefix: %w", s, ErrInvalidPrefix)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zoned addresses cannot be banned or allowlisted: %w", s, ErrInvalidPrefix)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: not an IP address or CIDR prefix: %w", s, ErrInvalidPrefix)
	}
	if p.Masked() != p {
		// No hint for a too broad prefix: its masked form would only be
		// refused next, by CheckBanPrefix.
		if TooBroad(p) {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set, and is too broad to ban anyway (shortest: /%d for IPv4, /%d for IPv6): %w", s, MinBits4, MinBits6, ErrInvalidPrefix)
		}
		return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %v? %w", s, UnmapPrefix(p.Masked()), ErrInvalidPrefix)
	}
	return UnmapPrefix(p), nil
}

// UnmapPrefix converts an IPv4-mapped IPv6 prefix (::ffff:198.51.100.0/120)
// to IPv4 (198.51.100.0/24). Shorter mapped prefixes are left alone.
func UnmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// CheckBanPrefix validates p as something to ban and returns it in
// canonical form (unmapped): valid, no zone, not too broad, no host bits.
// Errors wrap ErrInvalidPrefix. The allowlist is the engine's to check.
func CheckBanPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return p, fmt.Errorf("nothing to ban: %w", ErrInvalidPrefix)
	}
	if p.Addr().Zone() != "" {
		return p, fmt.Errorf("%v: zoned addresses cannot be banned: %w", p, ErrInvalidPrefix)
	}
	p = UnmapPrefix(p)
	// Breadth first: suggesting the masked form of a too broad prefix
	// would only lead to a second refusal.
	if TooBroad(p) {
		return p, fmt.Errorf("%v is too broad to ban (shortest: /%d for IPv4, /%d for IPv6): %w", p, MinBits4, MinBits6, ErrInvalidPrefix)
	}
	if p.Masked() != p {
		return p, fmt.Errorf("%v has host bits set: did you mean %v? %w", p, p.Masked(), ErrInvalidPrefix)
	}
	return p, nil
}

// NormalizeAddr returns the form of an address that events, lookups and
// bans use: IPv4-mapped IPv6 as IPv4, no zone.
func NormalizeAddr(a netip.Addr) netip.Addr {
	return a.Unmap().WithZone("")
}

// LoopbackPrefixes are never banned, whatever the configuration says.
func LoopbackPrefixes() []netip.Prefix {
	return []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}
