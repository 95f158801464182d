package dnsbl

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Zone is one configured DNS list: a domain, an optional filter on the
// answers that count as a listing, and the weight a listing adds to the
// score. It is written in postscreen_dnsbl_sites syntax,
// domain[=filter][*weight], e.g. "zen.spamhaus.org=127.0.0.[2..11]*3".
type Zone struct {
	// Domain is the list's DNS domain, lower case, without trailing dot.
	Domain string
	// Filter selects the answers that count; the zero Filter accepts any
	// listing answer (any address in 127.0.0.0/8 outside 127.255.255.0/24).
	Filter Filter
	// Weight is added to the score when the zone matches, once per lookup
	// however many answers match. Negative weights allowlist; 0 reports
	// the zone without scoring it.
	Weight float64
}

// String returns the zone in postscreen_dnsbl_sites syntax.
func (z Zone) String() string {
	var b strings.Builder
	b.WriteString(z.Domain)
	if !z.Filter.IsZero() {
		b.WriteByte('=')
		b.WriteString(z.Filter.String())
	}
	b.WriteByte('*')
	b.WriteString(strconv.FormatFloat(z.Weight, 'f', -1, 64))
	return b.String()
}

// MarshalText encodes the zone as its String form.
func (z Zone) MarshalText() ([]byte, error) { return []byte(z.String()), nil }

// UnmarshalText parses a zone spec with ParseZone.
func (z *Zone) UnmarshalText(b []byte) error {
	p, err := ParseZone(string(b))
	if err != nil {
		return err
	}
	*z = p
	return nil
}

// maxSpec bounds the length of a zone spec; real ones are under 100 bytes.
const maxSpec = 1024

// quote quotes a spec for an error message, shortening hostile input.
func quote(s string) string {
	if len(s) > 80 {
		return strconv.Quote(s[:80]) + "..."
	}
	return strconv.Quote(s)
}

// ParseZone parses a zone in postscreen_dnsbl_sites syntax:
//
//	domain[=d.d.d.d][*weight]
//
// where each d of the filter is a number 0-255 or a bracketed list of
// numbers and number..number ranges separated by ";", e.g.
// "127.0.[0..255].[1;3..5]". Without a filter any listing answer counts;
// without a weight the weight is 1. Unlike postscreen, the weight may have
// a fractional part ("*0.5"). Surrounding white space is ignored.
func ParseZone(s string) (Zone, error) {
	spec := strings.TrimSpace(s)
	fail := func(format string, a ...any) (Zone, error) {
		return Zone{}, fmt.Errorf("zone %s: %s", quote(spec), fmt.Sprintf(format, a...))
	}
	if spec == "" {
		return fail("empty; expected domain[=d.d.d.d][*weight], e.g. zen.spamhaus.org=127.0.0.[2..11]*3")
	}
	if len(spec) > maxSpec {
		return fail("longer than %d bytes", maxSpec)
	}
	rest, weightText, hasWeight := strings.Cut(spec, "*")
	domain, filterText, hasFilter := strings.Cut(rest, "=")

	z := Zone{Weight: 1}
	var err error
	if z.Domain, err = parseDomain(domain); err != nil {
		return fail("domain: %v", err)
	}
	if hasFilter {
		if z.Filter, err = ParseFilter(filterText); err != nil {
			return fail("%v", err)
		}
	}
	if hasWeight {
		if z.Weight, err = parseWeight(weightText); err != nil {
			return fail("weight: %v", err)
		}
	}
	return z, nil
}

// parseDomain checks a DNS list domain: at least two labels of letters,
// digits, '-' and '_', each 1-63 bytes, 253 bytes in all.
func parseDomain(s string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(s, "."))
	switch {
	case d == "":
		return "", errors.New("missing (expected e.g. zen.spamhaus.org)")
	case len(d) > 253:
		return "", errors.New("longer than 253 bytes")
	case !strings.Contains(d, "."):
		return "", fmt.Errorf("%q has one label; a DNS list domain has at least two (e.g. zen.spamhaus.org)", d)
	}
	for label := range strings.SplitSeq(d, ".") {
		if label == "" {
			return "", fmt.Errorf("%q has an empty label", d)
		}
		if len(label) > 63 {
			return "", fmt.Errorf("%q has a label longer than 63 bytes", d)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("label %q starts or ends with '-'", label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", fmt.Errorf("label %q contains %q; only letters, digits, '-' and '_' are allowed", label, c)
			}
		}
	}
	return d, nil
}

// parseWeight accepts an optionally signed decimal number with an optional
// fraction; no exponents, hex, underscores, Inf or NaN.
func parseWeight(s string) (float64, error) {
	if s == "" {
		return 0, errors.New("missing after '*' (e.g. *3 or *-5)")
	}
	digits, any, dot, lead := 0, false, false, true
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '0' && lead:
			any = true // leading zeros ("0.05") are not significant digits
		case c >= '0' && c <= '9':
			digits++
			any, lead = true, false
		case (c == '-' || c == '+') && i == 0:
		case c == '.' && !dot:
			dot = true
		default:
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	if !any || digits > 12 || len(s) > 32 {
		return 0, fmt.Errorf("%q is not a decimal number of at most 12 significant digits", s)
	}
	w, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q: %w", s, err)
	}
	return w, nil
}

// Filter is a pattern on IPv4 answers in postscreen_dnsbl_sites syntax,
// d.d.d.d, where each d is a number or a bracketed set such as [2..11] or
// [2;4;6..8]. The zero Filter matches every address.
type Filter struct {
	octets [4][4]uint64 // per octet, a 256-bit set of allowed values
	text   string
}

// ParseFilter parses a filter such as "127.0.0.[2..11]".
func ParseFilter(s string) (Filter, error) {
	f := Filter{text: s}
	fail := func(format string, a ...any) (Filter, error) {
		return Filter{}, fmt.Errorf("filter %s: %s", quote(s), fmt.Sprintf(format, a...))
	}
	if s == "" {
		return fail("empty; expected d.d.d.d where d is a number or [a..b;c], e.g. 127.0.0.[2..11]")
	}
	p := 0
	for i := range 4 {
		if i > 0 {
			if p >= len(s) || s[p] != '.' {
				return fail("has %d octets; expected 4 (d.d.d.d)", i)
			}
			p++
		}
		if p >= len(s) {
			return fail("octet %d is missing", i+1)
		}
		if s[p] != '[' {
			n, q, err := parseOctet(s, p)
			if err != nil {
				return fail("octet %d: %v", i+1, err)
			}
			p = q
			f.octets[i][n/64] |= 1 << (n % 64)
			continue
		}
		end := strings.IndexByte(s[p:], ']')
		if end < 0 {
			return fail("octet %d: '[' without ']'", i+1)
		}
		body := s[p+1 : p+end]
		if body == "" {
			return fail("octet %d: empty []", i+1)
		}
		for item := range strings.SplitSeq(body, ";") {
			lo, hi, err := parseRange(item)
			if err != nil {
				return fail("octet %d: %v", i+1, err)
			}
			for n := lo; n <= hi; n++ {
				f.octets[i][n/64] |= 1 << (n % 64)
			}
		}
		p += end + 1
	}
	if p != len(s) {
		return fail("unexpected %s after the fourth octet", quote(s[p:]))
	}
	// DNSBL answers live in 127.0.0.0/8 and 127.255.255.0/24 holds error
	// codes, so a filter outside that can never report a listing.
	if !f.hasBit(0, 127) {
		return fail("can never match: DNSBL answers are in 127.0.0.0/8")
	}
	if f.onlyErrorCodes() {
		return fail("matches only 127.255.255.x, which DNS lists use for errors, not listings")
	}
	return f, nil
}

func (f *Filter) hasBit(octet int, n uint) bool { return f.octets[octet][n/64]&(1<<(n%64)) != 0 }

func (f *Filter) onlyErrorCodes() bool {
	for _, o := range [2]int{1, 2} {
		for n := uint(0); n < 255; n++ {
			if f.hasBit(o, n) {
				return false
			}
		}
	}
	return true
}

// parseOctet reads a decimal number 0-255 at s[p:] and returns it with the
// position after it. Leading zeros are refused (is 010 octal?).
func parseOctet(s string, p int) (uint, int, error) {
	q := p
	for q < len(s) && s[q] >= '0' && s[q] <= '9' {
		q++
	}
	if q == p {
		if p < len(s) {
			return 0, p, fmt.Errorf("%s is not a number 0-255 or [..]", quote(s[p:p+1]))
		}
		return 0, p, errors.New("missing")
	}
	n, err := number(s[p:q])
	return n, q, err
}

func number(s string) (uint, error) {
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%q has a leading zero", s)
	}
	if len(s) > 3 {
		return 0, fmt.Errorf("%q is greater than 255", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number 0-255", s)
	}
	if n > 255 {
		return 0, fmt.Errorf("%q is greater than 255", s)
	}
	return uint(n), nil
}

// parseRange parses "n" or "a..b" inside brackets.
func parseRange(item string) (uint, uint, error) {
	if item == "" {
		return 0, 0, errors.New("empty item between ';'")
	}
	a, b, isRange := strings.Cut(item, "..")
	lo, err := number(a)
	if err != nil || a == "" {
		return 0, 0, fmt.Errorf("%q is not a number or a..b range", item)
	}
	if !isRange {
		return lo, lo, nil
	}
	hi, err := number(b)
	if err != nil || b == "" {
		return 0, 0, fmt.Errorf("%q is not a number or a..b range", item)
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("range %q runs backwards", item)
	}
	return lo, hi, nil
}

// IsZero reports whether f is the zero Filter, which matches everything.
func (f Filter) IsZero() bool { return f.text == "" }

// String returns the filter as it was written.
func (f Filter) String() string { return f.text }

// Match reports whether the IPv4 address a matches the filter. The zero
// Filter matches every address; IPv6 addresses never match a non-zero
// Filter.
func (f *Filter) Match(a netip.Addr) bool {
	if f.text == "" {
		return true
	}
	if !a.Is4() {
		return false
	}
	b := a.As4()
	for i := range 4 {
		if f.octets[i][b[i]/64]&(1<<(b[i]%64)) == 0 {
			return false
		}
	}
	return true
}
