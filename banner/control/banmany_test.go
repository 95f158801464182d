package control

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestBanManyPrefixes: a ban-many request's prefixes come from Prefixes
// and the lines of List (empty lines skipped, the last newline optional);
// a bad entry fails the request, naming it; AppendList writes what is
// read back.
func TestBanManyPrefixes(t *testing.T) {
	p := netip.MustParsePrefix
	for _, tc := range []struct {
		name    string
		req     Request
		want    []netip.Prefix
		count   int
		wantErr string
	}{
		{"prefixes", Request{Prefixes: []string{"192.0.2.1", "198.51.100.0/24"}}, []netip.Prefix{p("192.0.2.1/32"), p("198.51.100.0/24")}, 2, ""},
		{"list", Request{List: "192.0.2.1\n2001:db8::/48\n"}, []netip.Prefix{p("192.0.2.1/32"), p("2001:db8::/48")}, 2, ""},
		{"list without its last newline, empty lines", Request{List: "192.0.2.1\n\n192.0.2.2"}, []netip.Prefix{p("192.0.2.1/32"), p("192.0.2.2/32")}, 3, ""},
		{"both", Request{Prefixes: []string{"192.0.2.1"}, List: "192.0.2.2\n"}, []netip.Prefix{p("192.0.2.1/32"), p("192.0.2.2/32")}, 2, ""},
		{"bad line", Request{List: "192.0.2.1\nnot-an-ip\n"}, nil, 2, "not-an-ip"},
		{"empty", Request{}, nil, 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := banManyCount(tc.req); n != tc.count {
				t.Errorf("count %d, want %d", n, tc.count)
			}
			got, err := banManyPrefixes(tc.req)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	ps := []netip.Prefix{p("192.0.2.1/32"), p("198.51.100.0/24"), p("2001:db8::1/128"), p("2001:db8::/32")}
	back, err := banManyPrefixes(Request{List: string(AppendList(nil, ps))})
	if err != nil || !slices.Equal(back, ps) {
		t.Errorf("AppendList read back as %v, %v; want %v", back, err, ps)
	}
}

// FuzzBanManyList: any List parses without a panic, to no more prefixes
// than banManyCount says, and what it parses to is read back the same
// from AppendList.
func FuzzBanManyList(f *testing.F) {
	for _, s := range []string{"192.0.2.1\n", "2001:db8::/32\n\n10.0.0.0/8", "\n", "x\n", "192.0.2.1/33\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		req := Request{List: list}
		ps, err := banManyPrefixes(req)
		if err != nil {
			return
		}
		if len(ps) > banManyCount(req) {
			t.Fatalf("%d prefixes, count %d", len(ps), banManyCount(req))
		}
		back, err := banManyPrefixes(Request{List: string(AppendList(nil, ps))})
		if err != nil || !slices.Equal(back, ps) {
			t.Fatalf("%q: read back as %v, %v; want %v", list, back, err, ps)
		}
	})
}
