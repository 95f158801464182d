package blocklist

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// spamhausDROP is the head of the Spamhaus DROP list in its published text
// format (drop.txt), with the prefixes replaced by documentation ones.
const spamhausDROP = `; Spamhaus DROP List 2026/12/01 - (c) 2026 The Spamhaus Project SLU
; https://www.spamhaus.org/drop/drop.txt
; Last-Modified: Mon, 30 Nov 2026 21:15:50 GMT
; Expires: Tue, 01 Dec 2026 22:37:50 GMT
192.0.2.0/24 ; SBL256894
198.51.100.0/25 ; SBL434604
203.0.113.128/26 ; SBL278251
`

func TestParse(t *testing.T) {
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	for _, tc := range []struct {
		name, in string
		want     []netip.Prefix
		bad      []int
	}{
		{"spamhaus drop", spamhausDROP, pp("192.0.2.0/24", "198.51.100.0/25", "203.0.113.128/26"), nil},
		{"plain", "# my list\n192.0.2.7\n2001:db8::/48  # a comment\n\n  198.51.100.9  \n", pp("192.0.2.7/32", "2001:db8::/48", "198.51.100.9/32"), nil},
		{"crlf and tabs", "192.0.2.7\r\n192.0.2.8\tfrom abuse report\r\n", pp("192.0.2.7/32", "192.0.2.8/32"), nil},
		{"duplicates once", "192.0.2.7\n192.0.2.7/32\n::ffff:192.0.2.7\n", pp("192.0.2.7/32"), nil},
		{"bad lines reported, rest kept", "192.0.2.7\nnot-an-ip\n192.0.2.0/16\n192.0.2.8\n", pp("192.0.2.7/32", "192.0.2.8/32"), []int{2, 3}},
		{"zone", "fe80::1%eth0\n", nil, []int{1}},
		{"empty", "", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, err := Parse(strings.NewReader(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(l.Prefixes, tc.want) {
				t.Errorf("prefixes %v, want %v", l.Prefixes, tc.want)
			}
			var bad []int
			for _, b := range l.Bad {
				bad = append(bad, b.Line)
			}
			if !slices.Equal(bad, tc.bad) {
				t.Errorf("bad lines %v (%v), want %v", bad, l.Bad, tc.bad)
			}
		})
	}
	if _, err := Parse(strings.NewReader(strings.Repeat("x", 5000) + "\n")); !errors.Is(err, ErrTooLong) {
		t.Errorf("long line: %v", err)
	}
}

// FuzzParse: no input panics Parse; every prefix it returns is canonical
// (masked, unmapped, no zone) and listed once.
func FuzzParse(f *testing.F) {
	for _, s := range []string{spamhausDROP, "192.0.2.7\n", "2001:db8::/32 ; x\n", "#\n;\n", "1.2.3.4/33\n", "::ffff:1.2.3.4/120\n", "\r\n\t \n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		l, err := Parse(strings.NewReader(in))
		if err != nil && !errors.Is(err, ErrTooLong) {
			t.Fatalf("Parse: %v", err)
		}
		seen := map[netip.Prefix]bool{}
		for _, p := range l.Prefixes {
			if !p.IsValid() || p.Masked() != p || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("non-canonical prefix %v", p)
			}
			if seen[p] {
				t.Fatalf("%v listed twice", p)
			}
			seen[p] = true
		}
	})
}
