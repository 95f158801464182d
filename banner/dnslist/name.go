package dnslist

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Errors of ParseName.
var (
	// ErrNotInZone: the name is not below the zone.
	ErrNotInZone = errors.New("name not in zone")
	// ErrNotAddress: the labels below the zone are not a reversed IPv4
	// address or 32 reversed IPv6 nibbles.
	ErrNotAddress = errors.New("not a reversed address")
)

// ParseName returns the address a DNSBL query name asks about (RFC 5782):
// "2.0.0.127.banner.local." is 127.0.0.2, 32 reversed nibbles an IPv6
// address. zone is canonical (lower case, trailing dot); name is compared
// case-insensitively and may lack the trailing dot. IPv4-mapped IPv6 names
// give the IPv4 address. It never panics, whatever name holds.
func ParseName(name, zone string) (netip.Addr, error) {
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	if len(name) <= len(zone) || !strings.EqualFold(name[len(name)-len(zone):], zone) || name[len(name)-len(zone)-1] != '.' {
		return netip.Addr{}, ErrNotInZone
	}
	rev := name[:len(name)-len(zone)-1]
	labels := strings.Split(rev, ".")
	switch len(labels) {
	case 4:
		var b [4]byte
		for i, l := range labels {
			n, ok := octet(l)
			if !ok {
				return netip.Addr{}, fmt.Errorf("%q: label %q: %w", rev, l, ErrNotAddress)
			}
			b[3-i] = n
		}
		return netip.AddrFrom4(b), nil
	case 32:
		var b [16]byte
		for i, l := range labels {
			if len(l) != 1 {
				return netip.Addr{}, fmt.Errorf("%q: label %q: %w", rev, l, ErrNotAddress)
			}
			v, ok := nibble(l[0])
			if !ok {
				return netip.Addr{}, fmt.Errorf("%q: label %q: %w", rev, l, ErrNotAddress)
			}
			// labels[0] is the lowest nibble of the last byte.
			j := 15 - i/2
			if i%2 == 0 {
				b[j] |= v
			} else {
				b[j] |= v << 4
			}
		}
		return netip.AddrFrom16(b).Unmap(), nil
	}
	return netip.Addr{}, fmt.Errorf("%d labels: %w", len(labels), ErrNotAddress)
}

// octet parses a decimal 0..255 without leading zeros.
func octet(s string) (byte, bool) {
	if len(s) == 0 || len(s) > 3 || (len(s) > 1 && s[0] == '0') {
		return 0, false
	}
	n := 0
	for i := range len(s) {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	if n > 255 {
		return 0, false
	}
	return byte(n), true
}

func nibble(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// QueryName returns the name a DNSBL client asks for addr in zone (the
// inverse of ParseName), e.g. "2.0.0.127.banner.local." for 127.0.0.2.
func QueryName(addr netip.Addr, zone string) string {
	addr = addr.Unmap()
	var b strings.Builder
	if addr.Is4() {
		a := addr.As4()
		fmt.Fprintf(&b, "%d.%d.%d.%d.", a[3], a[2], a[1], a[0])
	} else {
		const hex = "0123456789abcdef"
		a := addr.As16()
		for i := 15; i >= 0; i-- {
			b.WriteByte(hex[a[i]&0xf])
			b.WriteByte('.')
			b.WriteByte(hex[a[i]>>4])
			b.WriteByte('.')
		}
	}
	b.WriteString(zone)
	return b.String()
}
