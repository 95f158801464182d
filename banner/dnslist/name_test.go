package dnslist

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseName(t *testing.T) {
	const zone = "banner.local."
	for _, tc := range []struct {
		name string
		want string // "" = error
		err  error
	}{
		{"2.0.0.127.banner.local.", "127.0.0.2", nil},
		{"2.0.0.127.banner.local", "127.0.0.2", nil},
		{"7.100.51.198.BANNER.Local.", "198.51.100.7", nil},
		{"255.255.255.255.banner.local.", "255.255.255.255", nil},
		{"0.0.0.0.banner.local.", "0.0.0.0", nil},
		// RFC 5782 IPv6 test point ::FFFF:7F00:2, unmapped.
		{"2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.banner.local.", "127.0.0.2", nil},
		{"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.2.banner.local.", "2001::1", nil},
		{"b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.banner.local.", "4321:0:1:2:3:4:567:89ab", nil},
		{"B.A.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.0.0.0.0.1.2.3.4.banner.local.", "4321:0:1:2:3:4:567:89ab", nil},
		{"banner.local.", "", ErrNotInZone},
		{"2.0.0.127.other.local.", "", ErrNotInZone},
		{"2.0.0.127xbanner.local.", "", ErrNotInZone},
		{"2.0.0.127.notbanner.local.", "", ErrNotInZone},
		{"local.", "", ErrNotInZone},
		{"", "", ErrNotInZone},
		{"2.0.127.banner.local.", "", ErrNotAddress},
		{"256.0.0.127.banner.local.", "", ErrNotAddress},
		{"02.0.0.127.banner.local.", "", ErrNotAddress},
		{"-1.0.0.127.banner.local.", "", ErrNotAddress},
		{"x.0.0.127.banner.local.", "", ErrNotAddress},
		{"..0.127.banner.local.", "", ErrNotAddress},
		{".2.0.0.127.banner.local.", "", ErrNotAddress},
		{"1.2.0.0.127.banner.local.", "", ErrNotAddress},
		{"g.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.2.banner.local.", "", ErrNotAddress},
		{"10.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.2.banner.local.", "", ErrNotAddress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseName(tc.name, zone)
			if tc.want == "" {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ParseName(%q) = %v, %v; want error %v", tc.name, got, err, tc.err)
				}
				return
			}
			if err != nil || got != netip.MustParseAddr(tc.want) {
				t.Fatalf("ParseName(%q) = %v, %v; want %s", tc.name, got, err, tc.want)
			}
			if q := QueryName(got, zone); !strings.EqualFold(strings.TrimSuffix(tc.name, ".")+".", q) && got.Is6() {
				t.Errorf("QueryName(%v) = %q, not the name parsed", got, q)
			}
		})
	}
}

// FuzzParseName: no name panics the parser, and every address it returns
// is the one QueryName gives the same name for.
func FuzzParseName(f *testing.F) {
	const zone = "banner.local."
	for _, s := range []string{
		"2.0.0.127.banner.local.", "1.0.0.127.banner.local", "banner.local.",
		"2.0.0.0.0.0.f.7.f.f.f.f.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.banner.local.",
		"256.1.1.1.banner.local.", "..banner.local.", "\x00.banner.local.", "a.b.c.d.banner.local",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		a, err := ParseName(name, zone)
		if err != nil {
			if !errors.Is(err, ErrNotInZone) && !errors.Is(err, ErrNotAddress) {
				t.Fatalf("ParseName(%q): unexpected error %v", name, err)
			}
			return
		}
		if !a.IsValid() || a.Is4In6() {
			t.Fatalf("ParseName(%q) = %v: invalid or mapped", name, a)
		}
		back, err := ParseName(QueryName(a, zone), zone)
		if err != nil || back != a {
			t.Fatalf("ParseName(QueryName(%v)) = %v, %v", a, back, err)
		}
	})
}
