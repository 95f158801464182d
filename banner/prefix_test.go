package banner

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParsePrefix(t *testing.T) {
	tests := []struct {
		in      string
		want    string
		wantErr string
	}{
		{"198.51.100.7", "198.51.100.7/32", ""},
		{" 203.0.113.0/24 ", "203.0.113.0/24", ""},
		{"2001:db8::/64", "2001:db8::/64", ""},
		{"2001:db8::1", "2001:db8::1/128", ""},
		{"::ffff:198.51.100.7", "198.51.100.7/32", ""},
		{"::ffff:198.51.100.0/120", "198.51.100.0/24", ""},
		{"198.51.100.7/24", "", "host bits set: did you mean 198.51.100.0/24?"},
		{"10.0.0.0/4", "", "host bits set, and is too broad to ban anyway"},
		{"2001:db8::1/64", "", "did you mean 2001:db8::/64?"},
		{"", "", "empty"},
		{"198.51.100", "", "not an IP address"},
		{"198.51.100.7/33", "", "not an IP address or CIDR prefix"},
		{"example.org", "", "not an IP address"},
		{"fe80::1%eth0", "", "zoned"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			p, err := ParsePrefix(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParsePrefix(%q) = %v, %v; want error containing %q", tc.in, p, err, tc.wantErr)
				}
				return
			}
			if err != nil || p.String() != tc.want {
				t.Fatalf("ParsePrefix(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
			}
		})
	}
}

func TestTooBroad(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		want   bool
	}{
		{"0.0.0.0/0", true},
		{"10.0.0.0/7", true},
		{"10.0.0.0/8", false},
		{"192.0.2.1/32", false},
		{"::/0", true},
		{"2001::/15", true},
		{"2001::/16", false},
		{"2001:db8::/64", false},
		{"::ffff:10.0.0.0/104", false}, // an IPv4-mapped /8 is an IPv6 /104
	} {
		if got := TooBroad(netip.MustParsePrefix(tc.prefix)); got != tc.want {
			t.Errorf("TooBroad(%s) = %v, want %v", tc.prefix, got, tc.want)
		}
	}
}
