package daemon

import (
	"net/netip"
	"slices"
	"testing"
)

func TestEffectiveAllowlist(t *testing.T) {
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	tests := []struct {
		name  string
		lists [][]netip.Prefix
		want  []netip.Prefix
	}{
		{"loopback and postfix default mynetworks",
			[][]netip.Prefix{pp("127.0.0.0/8", "::1/128"), pp("127.0.0.0/8", "127.0.0.0/8", "::1/128"), pp("127.0.0.1/32", "192.0.2.10/32")},
			pp("127.0.0.0/8", "192.0.2.10/32", "::1/128")},
		{"covered prefixes dropped, host bits masked",
			[][]netip.Prefix{pp("198.51.100.0/24", "198.51.100.77/25", "2001:db8::/32"), pp("2001:db8:1::5/128", "10.0.0.0/8")},
			pp("10.0.0.0/8", "198.51.100.0/24", "2001:db8::/32")},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := effectiveAllowlist(tt.lists...); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
