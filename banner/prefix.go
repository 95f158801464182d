package banner

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ParsePrefix parses what an administrator types to ban or unban: an address
// (198.51.100.7, 2001:db8::1, meaning /32 or /128) or a CIDR prefix
// (203.0.113.0/24, 2001:db8::/64). IPv4-mapped IPv6 forms are converted to
// IPv4. A prefix with host bits set (198.51.100.7/24) is rejected rather than
// silently widened, and the error suggests the canonical form. Zones are
// rejected.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, errors.New("empty address or prefix")
	}
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix: %w", s, err)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: zoned addresses cannot be banned", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR prefix: %w", s, err)
	}
	if p.Masked() != p {
		// No hint for a too broad prefix: its masked form would only be
		// refused next, as in checkBanPrefix.
		if u := unmapPrefix(p); (u.Addr().Is4() && u.Bits() < minBits4) || (u.Addr().Is6() && u.Bits() < minBits6) {
			return netip.Prefix{}, fmt.Errorf("%q has host bits set, and is too broad to ban anyway (shortest: /%d for IPv4, /%d for IPv6)", s, minBits4, minBits6)
		}
		return netip.Prefix{}, fmt.Errorf("%q has host bits set: did you mean %v?", s, p.Masked())
	}
	return unmapPrefix(p), nil
}

// unmapPrefix converts an IPv4-mapped IPv6 prefix (::ffff:198.51.100.0/120)
// to IPv4 (198.51.100.0/24). Shorter mapped prefixes are left alone.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// minBits are the shortest prefixes the engine bans: anything broader is
// surely a typo.
const (
	minBits4 = 8
	minBits6 = 16
)

// checkBanPrefix validates a prefix for a manual ban.
func (s *scorer) checkBanPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return p, errors.New("invalid prefix: nothing to ban")
	}
	if p.Addr().Zone() != "" {
		return p, fmt.Errorf("%v: zoned addresses cannot be banned", p)
	}
	p = unmapPrefix(p)
	// Breadth first: suggesting the masked form of a too broad prefix
	// would only lead to a second refusal.
	if (p.Addr().Is4() && p.Bits() < minBits4) || (p.Addr().Is6() && p.Bits() < minBits6) {
		return p, fmt.Errorf("%v is too broad to ban (shortest: /%d for IPv4, /%d for IPv6)", p, minBits4, minBits6)
	}
	if p.Masked() != p {
		return p, fmt.Errorf("%v has host bits set: did you mean %v?", p, p.Masked())
	}
	if a, ok := s.allowOverlap(p); ok {
		return p, fmt.Errorf("%v overlaps allowlisted %v: refusing to ban", p, a)
	}
	return p, nil
}
