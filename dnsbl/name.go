package dnsbl

import (
	"net/netip"
	"strings"
)

// maxReversed is the longest reversed-address prefix: 32 IPv6 nibbles with
// their dots, plus the dot before the domain and the trailing root dot.
const maxReversed = 64 + 1

// maskedKey stands in for the DQS key wherever a query name is shown.
const maskedKey = "<key>"

// queryDomain returns the domain actually queried for a configured domain:
// with a DQS key, zone.spamhaus.org becomes key.zone.dq.spamhaus.net.
func queryDomain(domain, key string) string {
	if key == "" {
		return domain
	}
	if list, ok := strings.CutSuffix(domain, ".spamhaus.org"); ok && list != "" {
		return key + "." + list + ".dq.spamhaus.net"
	}
	return domain
}

// appendReversed appends the DNSBL form of ip (RFC 5782): the IPv4 octets
// or the 32 IPv6 nibbles in reverse order, each followed by a dot.
func appendReversed(b []byte, ip netip.Addr) []byte {
	if ip.Is4() {
		a := ip.As4()
		for i := 3; i >= 0; i-- {
			b = appendUint8(b, a[i])
			b = append(b, '.')
		}
		return b
	}
	const hex = "0123456789abcdef"
	a := ip.As16()
	for i := 15; i >= 0; i-- {
		b = append(b, hex[a[i]&0xf], '.', hex[a[i]>>4], '.')
	}
	return b
}

func appendUint8(b []byte, n byte) []byte {
	if n >= 100 {
		b = append(b, '0'+n/100)
	}
	if n >= 10 {
		b = append(b, '0'+n/10%10)
	}
	return append(b, '0'+n%10)
}

// QueryName returns the DNS name looked up for ip in domain, as a fully
// qualified name with trailing dot, e.g. "2.0.0.127.zen.spamhaus.org." for
// 127.0.0.2. IPv4-mapped IPv6 addresses are queried as IPv4.
func QueryName(ip netip.Addr, domain string) string {
	ip = ip.Unmap()
	b := make([]byte, 0, maxReversed+len(domain))
	b = appendReversed(b, ip)
	b = append(b, domain...)
	b = append(b, '.')
	return string(b)
}
