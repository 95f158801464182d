package firewall

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/banner-mta/banner/internal/testenv"
)

// TestIntervalRoundTrip: a prefix becomes a start element and an end
// element one past its last address (none at the top of the space), and
// the listed elements, in any order, read back as the same prefixes.
func TestIntervalRoundTrip(t *testing.T) {
	tests := []struct {
		prefix string
		end    string // "" = no end element
	}{
		{"192.0.2.7/32", "192.0.2.8"},
		{"198.51.100.0/24", "198.51.101.0"},
		{"10.0.0.0/8", "11.0.0.0"},
		{"255.255.255.255/32", ""},
		{"255.255.255.0/24", ""},
		{"128.0.0.0/1", ""},
		{"2001:db8::1/128", "2001:db8::2"},
		{"2001:db8:1:2::/64", "2001:db8:1:3::"},
		{"ffff::/16", ""},
		{"2001:db8:1::40/122", "2001:db8:1::80"},
	}
	var all []nftables.SetElement
	var want4, want6 []string
	for _, tt := range tests {
		p := netip.MustParsePrefix(tt.prefix)
		els := intervalElems(p, time.Hour)
		if len(els) == 0 || els[0].IntervalEnd || els[0].Timeout != time.Hour || netip.AddrFrom16([16]byte(pad16(els[0].Key))) != pad(p.Addr()) {
			t.Errorf("%s: start element %+v", p, els[0])
		}
		switch {
		case tt.end == "" && len(els) != 1:
			t.Errorf("%s: %d elements, want no end element", p, len(els))
		case tt.end != "" && (len(els) != 2 || !els[1].IntervalEnd || els[1].Timeout != 0):
			t.Errorf("%s: elements %+v, want an end element without timeout", p, els)
		case tt.end != "":
			if a, _ := netip.AddrFromSlice(els[1].Key); a.String() != tt.end {
				t.Errorf("%s: end %s, want %s", p, a, tt.end)
			}
		}
		all = append(all, els...)
		if p.Addr().Is4() {
			want4 = append(want4, p.String())
		} else {
			want6 = append(want6, p.String())
		}
	}
	slices.Reverse(all) // the kernel lists in its own order
	// nft 1.0.x adds a lone end element at 0.0.0.0: it closes nothing.
	all = append(all, nftables.SetElement{Key: []byte{0, 0, 0, 0}, IntervalEnd: true})
	for _, c := range []struct {
		size int
		want []string
	}{{4, want4}, {16, want6}} {
		var got []string
		for _, r := range rangesOf(all, c.size) {
			for _, p := range r.prefixes() {
				got = append(got, p.String())
			}
		}
		slices.Sort(got)
		slices.Sort(c.want)
		if !slices.Equal(got, c.want) {
			t.Errorf("size %d: read back %v, want %v", c.size, got, c.want)
		}
	}
}

func pad(a netip.Addr) netip.Addr { return netip.AddrFrom16(a.As16()) }

func pad16(b []byte) []byte {
	if len(b) == 4 {
		a, _ := netip.AddrFromSlice(b)
		x := a.As16()
		return x[:]
	}
	return b
}

// TestRangePrefixes: a range merged by someone else (nft auto-merge, a
// hand-made range) reads back as the CIDR prefixes that cover it exactly.
func TestRangePrefixes(t *testing.T) {
	tests := []struct{ start, end, want string }{
		{"10.0.0.0", "10.0.2.0", "10.0.0.0/23"},
		{"10.0.0.1", "10.0.0.5", "10.0.0.1/32 10.0.0.2/31 10.0.0.4/32"},
		{"10.0.0.0", "10.0.1.128", "10.0.0.0/24 10.0.1.0/25"},
		{"255.255.255.254", "", "255.255.255.254/31"},
		{"2001:db8::", "2001:db8:0:2::", "2001:db8::/63"},
	}
	for _, tt := range tests {
		r := kernelRange{start: netip.MustParseAddr(tt.start)}
		if tt.end != "" {
			r.end = netip.MustParseAddr(tt.end)
		}
		var got []string
		for _, p := range r.prefixes() {
			got = append(got, p.String())
		}
		if g := strings.Join(got, " "); g != tt.want {
			t.Errorf("[%s, %s) = %s, want %s", tt.start, tt.end, g, tt.want)
		}
	}
}

// FuzzIntervalRoundTrip: any prefix survives the trip through interval
// elements and back, alone or beside the prefix right after it.
func FuzzIntervalRoundTrip(f *testing.F) {
	f.Add([]byte{192, 0, 2, 7}, uint8(32))
	f.Add([]byte{255, 255, 255, 255}, uint8(1))
	f.Add([]byte{0x20, 1, 0xd, 0xb8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}, uint8(64))
	f.Fuzz(func(t *testing.T, addr []byte, bits uint8) {
		a, ok := netip.AddrFromSlice(addr)
		if !ok || int(bits) > a.BitLen() || bits == 0 {
			return
		}
		p := netip.PrefixFrom(a, int(bits)).Masked()
		ps := []netip.Prefix{p}
		if next, ok := afterLast(p); ok {
			ps = append(ps, netip.PrefixFrom(next, int(bits)).Masked())
		}
		var els []nftables.SetElement
		for _, q := range ps {
			els = append(els, intervalElems(q, time.Minute)...)
		}
		var got []netip.Prefix
		for _, r := range rangesOf(els, len(addr)) {
			got = append(got, r.prefixes()...)
		}
		if !slices.Equal(got, ps) {
			t.Fatalf("%v read back as %v", ps, got)
		}
	})
}

// TestChoose: a configured backend is kept; "auto" on a machine whose
// nftables works (this one, as root) picks nftables and says why.
func TestChoose(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Backend = BackendIPSet
	if c := Choose(context.Background(), cfg); c.Backend != BackendIPSet || c.Auto || c.String() != "ipset (configured)" {
		t.Errorf("Choose(ipset) = %+v", c)
	}
	if testenv.RunInNetNS(t, "nft") {
		return
	}
	cfg.Backend = BackendAuto
	c := Choose(context.Background(), cfg)
	if c.Backend != BackendNFTables || !c.Auto || !strings.Contains(c.Reason, "netlink API works") {
		t.Errorf("Choose(auto) = %+v, want nftables", c)
	}
	t.Logf("auto: %s", c)
}

// TestChooseLegacyWithRules: where iptables is iptables-legacy and holds
// rules (a host still firewalled that way), auto stays with ipset and says
// why; an empty iptables-legacy does not hold nftables back.
func TestChooseLegacyWithRules(t *testing.T) {
	if testenv.RunInNetNS(t, "nft", "iptables-legacy", "iptables-legacy-save", "ip6tables-legacy-save") {
		return
	}
	legacy, err := exec.LookPath("iptables-legacy")
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := os.Symlink(legacy, filepath.Join(bin, "iptables")); err != nil {
		t.Fatal(err)
	}
	for _, save := range []string{"iptables-legacy-save", "ip6tables-legacy-save"} {
		p, err := exec.LookPath(save)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(bin, save)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin)
	cfg := DefaultConfig()
	if c := Choose(context.Background(), cfg); c.Backend != BackendNFTables || !strings.Contains(c.Reason, "iptables-legacy but holds no rules") {
		t.Errorf("empty legacy: Choose = %+v, want nftables", c)
	}
	sh(t, legacy, "-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT")
	c := Choose(context.Background(), cfg)
	if c.Backend != BackendIPSet || !strings.Contains(c.Reason, "iptables-legacy with 1 rule in use (iptables-legacy-save lists 1)") {
		t.Errorf("legacy with a rule: Choose = %+v, want ipset", c)
	}
	t.Logf("auto: %s", c)
}
