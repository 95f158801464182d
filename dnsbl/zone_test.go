package dnsbl

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseZone(t *testing.T) {
	tests := []struct {
		spec   string
		domain string
		filter string
		weight float64
		canon  string
	}{
		{"zen.spamhaus.org=127.0.0.[2..11]*3", "zen.spamhaus.org", "127.0.0.[2..11]", 3, "zen.spamhaus.org=127.0.0.[2..11]*3"},
		{"bl.spamcop.net*2", "bl.spamcop.net", "", 2, "bl.spamcop.net*2"},
		{"list.dnswl.org=127.0.[0..255].[1..3]*-5", "list.dnswl.org", "127.0.[0..255].[1..3]", -5, "list.dnswl.org=127.0.[0..255].[1..3]*-5"},
		{"bl.spamcop.net", "bl.spamcop.net", "", 1, "bl.spamcop.net*1"},
		{"  ZEN.Spamhaus.ORG.=127.0.0.4  ", "zen.spamhaus.org", "127.0.0.4", 1, "zen.spamhaus.org=127.0.0.4*1"},
		{"example.com=127.0.0.[2;4;6..8]*+0.5", "example.com", "127.0.0.[2;4;6..8]", 0.5, "example.com=127.0.0.[2;4;6..8]*0.5"},
		{"x_y.example=127.[0..255].[0..255].[0..255]*0", "x_y.example", "127.[0..255].[0..255].[0..255]", 0, "x_y.example=127.[0..255].[0..255].[0..255]*0"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			z, err := ParseZone(tt.spec)
			if err != nil {
				t.Fatalf("ParseZone(%q): %v", tt.spec, err)
			}
			if z.Domain != tt.domain || z.Filter.String() != tt.filter || z.Weight != tt.weight {
				t.Errorf("got domain %q filter %q weight %v, want %q %q %v", z.Domain, z.Filter, z.Weight, tt.domain, tt.filter, tt.weight)
			}
			if got := z.String(); got != tt.canon {
				t.Errorf("String() = %q, want %q", got, tt.canon)
			}
			again, err := ParseZone(z.String())
			if err != nil || again.String() != z.String() {
				t.Errorf("round trip of %q: %v, %v", z.String(), again, err)
			}
		})
	}
}

func TestParseZoneErrors(t *testing.T) {
	tests := []struct {
		spec string
		want string // substring of the error
	}{
		{"", "empty"},
		{"   ", "empty"},
		{"=127.0.0.2", "domain: missing"},
		{"*3", "domain: missing"},
		{"zen", "one label"},
		{"zen..spamhaus.org", "empty label"},
		{"-zen.spamhaus.org", "starts or ends with '-'"},
		{"zen.spam haus.org", "contains ' '"},
		{"zen.spamhaus.org\x00", "contains '\\x00'"},
		{"zén.example", "contains"},
		{strings.Repeat("a", 64) + ".example", "longer than 63"},
		{strings.Repeat("abc.", 70) + "example", "longer than 253"},
		{strings.Repeat("x", 2000), "longer than 1024"},
		{"zen.spamhaus.org=", "filter \"\": empty"},
		{"zen.spamhaus.org=127.0.0", "has 3 octets"},
		{"zen.spamhaus.org=127.0.0.", "octet 4 is missing"},
		{"zen.spamhaus.org=127.0.0.2.5", "after the fourth octet"},
		{"zen.spamhaus.org=127.0.0.256", "greater than 255"},
		{"zen.spamhaus.org=127.0.0.1000", "greater than 255"},
		{"zen.spamhaus.org=127.0.0.02", "leading zero"},
		{"zen.spamhaus.org=127.0.0.-2", "is not a number"},
		{"zen.spamhaus.org=127.0.0.x", "is not a number"},
		{"zen.spamhaus.org=127.0.0.[2..11", "without ']'"},
		{"zen.spamhaus.org=127.0.0.[]", "empty []"},
		{"zen.spamhaus.org=127.0.0.[2;;3]", "empty item"},
		{"zen.spamhaus.org=127.0.0.[11..2]", "runs backwards"},
		{"zen.spamhaus.org=127.0.0.[2..]", "not a number or a..b range"},
		{"zen.spamhaus.org=127.0.0.[..2]", "not a number or a..b range"},
		{"zen.spamhaus.org=127.0.0.[2...4]", "not a number or a..b range"},
		{"zen.spamhaus.org=127.0.0.[2..300]", "not a number or a..b range"},
		{"zen.spamhaus.org=127.0.0.[[2]]", "not a number or a..b range"},
		{"zen.spamhaus.org=10.0.0.2", "can never match"},
		{"zen.spamhaus.org=127.255.255.[0..255]", "only 127.255.255.x"},
		{"zen.spamhaus.org=127.0.0.2=127.0.0.3", "after the fourth octet"},
		{"zen.spamhaus.org*", "weight: missing"},
		{"zen.spamhaus.org*x", "not a decimal number"},
		{"zen.spamhaus.org*3*4", "not a decimal number"},
		{"zen.spamhaus.org*1e3", "not a decimal number"},
		{"zen.spamhaus.org*0x10", "not a decimal number"},
		{"zen.spamhaus.org*NaN", "not a decimal number"},
		{"zen.spamhaus.org*Inf", "not a decimal number"},
		{"zen.spamhaus.org*1_0", "not a decimal number"},
		{"zen.spamhaus.org*--1", "not a decimal number"},
		{"zen.spamhaus.org*.", "not a decimal number"},
		{"zen.spamhaus.org*1234567890123", "at most 12 significant digits"},
		{"zen.spamhaus.org=127.0.0.2*3=4", "not a decimal number"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			z, err := ParseZone(tt.spec)
			if err == nil {
				t.Fatalf("ParseZone(%q) = %v, want error containing %q", tt.spec, z, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if !strings.HasPrefix(err.Error(), "zone \"") {
				t.Errorf("error %q does not quote the spec", err)
			}
		})
	}
}

func TestFilterMatch(t *testing.T) {
	tests := []struct {
		filter string
		ip     string
		want   bool
	}{
		{"127.0.0.[2..11]", "127.0.0.2", true},
		{"127.0.0.[2..11]", "127.0.0.11", true},
		{"127.0.0.[2..11]", "127.0.0.1", false},
		{"127.0.0.[2..11]", "127.0.0.12", false},
		{"127.0.0.[2..11]", "127.0.1.2", false},
		{"127.0.0.[2;4;6..8]", "127.0.0.3", false},
		{"127.0.0.[2;4;6..8]", "127.0.0.7", true},
		{"127.0.[0..255].[1..3]", "127.0.15.3", true},
		{"127.0.[0..255].[1..3]", "127.0.15.0", false},
		{"127.0.0.[0..255]", "127.0.0.255", true},
		{"127.0.0.[0..255]", "127.0.0.0", true},
		{"127.0.0.2", "::ffff:127.0.0.2", false}, // IPv6 form never matches
	}
	for _, tt := range tests {
		t.Run(tt.filter+"/"+tt.ip, func(t *testing.T) {
			f, err := ParseFilter(tt.filter)
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Match(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Errorf("Match = %v, want %v", got, tt.want)
			}
		})
	}
	var zero Filter
	if !zero.Match(netip.MustParseAddr("10.1.2.3")) || !zero.IsZero() {
		t.Error("zero Filter must match everything")
	}
}

func FuzzParseZone(f *testing.F) {
	for _, s := range []string{
		"zen.spamhaus.org=127.0.0.[2..11]*3",
		"bl.spamcop.net*2",
		"list.dnswl.org=127.0.[0..255].[1..3]*-5",
		"example.com=127.0.0.[2;4;6..8]*0.5",
		"a.b=127.0.0.[0..255]",
		"x.y=127.0.0.[2..11",
		"x.y=127.0.0.2*",
		"=*",
		"a.b=[1]",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		z, err := ParseZone(s)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "zone ") {
				t.Fatalf("error %q lacks the zone prefix", err)
			}
			return
		}
		// A parsed zone prints in a form that parses to the same zone.
		again, err := ParseZone(z.String())
		if err != nil {
			t.Fatalf("ParseZone(%q) ok but its String %q fails: %v", s, z.String(), err)
		}
		if again.Domain != z.Domain || again.Weight != z.Weight || again.Filter.octets != z.Filter.octets {
			t.Fatalf("round trip changed %q: %+v != %+v", s, again, z)
		}
		if strings.ContainsAny(z.Domain, "=*[] \t\n") {
			t.Fatalf("domain %q has syntax characters", z.Domain)
		}
	})
}
