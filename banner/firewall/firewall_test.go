package firewall

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{"default", func(c *Config) {}, ""},
		{"three ports", func(c *Config) { c.Ports = []uint16{25, 465, 587} }, ""},
		{"iptables", func(c *Config) { c.Backend = "iptables" }, ""},
		{"none", func(c *Config) { c.Backend = "none" }, ""},
		{"unknown backend", func(c *Config) { c.Backend = "pf" }, "backend: unknown backend \"pf\""},
		{"no ports", func(c *Config) { c.Ports = nil }, "ports: at least one"},
		{"port 0", func(c *Config) { c.Ports = []uint16{25, 0} }, "ports: port 0"},
		{"duplicate port", func(c *Config) { c.Ports = []uint16{25, 587, 25} }, "ports: port 25 is listed twice"},
		{"16 ports", func(c *Config) {
			c.Ports = nil
			for p := uint16(1); p <= 16; p++ {
				c.Ports = append(c.Ports, p)
			}
		}, "ports: 16 ports"},
		{"15 ports", func(c *Config) {
			c.Ports = nil
			for p := uint16(1); p <= 15; p++ {
				c.Ports = append(c.Ports, p)
			}
		}, ""},
		{"empty chain", func(c *Config) { c.Chain = "" }, "chain: invalid chain name"},
		{"long chain", func(c *Config) { c.Chain = strings.Repeat("A", 29) }, "chain: invalid chain name"},
		{"28 char chain", func(c *Config) { c.Chain = strings.Repeat("A", 28); c.SASLPorts = nil }, ""},
		{"28 char chain, sasl ports", func(c *Config) { c.Chain = strings.Repeat("A", 28) }, "chain: \"" + strings.Repeat("A", 28) + "\" is too long for the sasl group's chain"},
		{"23 char chain, sasl ports", func(c *Config) { c.Chain = strings.Repeat("A", 23) }, ""},
		{"26 char set4, sasl ports", func(c *Config) { c.Set4 = strings.Repeat("s", 26) }, ""},
		{"27 char set6, sasl ports", func(c *Config) { c.Set6 = strings.Repeat("s", 27) }, "set6: \"" + strings.Repeat("s", 27) + "\" is too long for the sasl group's set"},
		{"sasl port 0", func(c *Config) { c.SASLPorts = []uint16{0, 587} }, "sasl_ports: port 0 is out of range"},
		{"sasl port twice", func(c *Config) { c.SASLPorts = []uint16{587, 587} }, "sasl_ports: port 587 is listed twice"},
		{"16 sasl ports", func(c *Config) { c.SASLPorts = []uint16{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16} }, "sasl_ports: 16 ports, at most 15"},
		{"no sasl ports", func(c *Config) { c.SASLPorts = nil }, ""},
		{"sasl set names a main set", func(c *Config) { c.Set6 = c.Set4 + "_sasl" }, "the sasl group's set \"banner4_sasl\" is one of the main sets"},
		{"chain with space", func(c *Config) { c.Chain = "BAN NER" }, "chain: invalid"},
		{"builtin chain", func(c *Config) { c.Chain = "input" }, "chain: \"input\" is a built-in"},
		{"long set4", func(c *Config) { c.Set4 = strings.Repeat("s", 32) }, "set4: invalid set name"},
		{"bad set6", func(c *Config) { c.Set6 = "a/b" }, "set6: invalid set name"},
		{"same sets", func(c *Config) { c.Set6 = c.Set4 }, "set6: must differ"},
		{"maxelem 0", func(c *Config) { c.MaxElem = 0 }, "maxelem: 0 is out of range"},
		{"negative lock wait", func(c *Config) { c.LockWait = -time.Second }, "lock_wait:"},
		{"zero command timeout", func(c *Config) { c.CommandTimeout = 0 }, "command_timeout:"},
		{"drop all", func(c *Config) { c.Drop = DropAll }, ""},
		{"drop new", func(c *Config) { c.Drop = DropNew }, ""},
		{"drop empty", func(c *Config) { c.Drop = "" }, `drop: unknown value "" (want "new"`},
		{"drop bad", func(c *Config) { c.Drop = "syn" }, `drop: unknown value "syn" (want "new": drop only new connections`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.modify(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate() = %v, want error containing %q", err, tt.want)
			}
			if _, nerr := New(c); (nerr == nil) != (err == nil) {
				t.Errorf("New() error %v disagrees with Validate() %v", nerr, err)
			}
		})
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want string // want "" = error
	}{
		{"198.51.100.7/32", "198.51.100.7/32"},
		{"192.0.2.77/24", "192.0.2.0/24"},
		{"2001:db8::7/128", "2001:db8::7/128"},
		{"2001:db8::7/64", "2001:db8::/64"},
		{"::ffff:198.51.100.7/128", "198.51.100.7/32"},
		{"::ffff:192.0.2.0/120", "192.0.2.0/24"},
		{"::ffff:0.0.0.0/90", ""},
		{"0.0.0.0/0", ""},
		{"::/0", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := normalize(netip.MustParsePrefix(tt.in))
			if tt.want == "" {
				if err == nil {
					t.Fatalf("normalize(%s) = %s, want error", tt.in, got)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("normalize(%s) = %s, %v; want %s", tt.in, got, err, tt.want)
			}
		})
	}
	if _, err := normalize(netip.Prefix{}); err == nil {
		t.Error("normalize(zero prefix) gave no error")
	}
}

func TestSplit(t *testing.T) {
	b := split([]Entry{
		{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Timeout: time.Minute},
		{Prefix: netip.MustParsePrefix("2001:db8::7/128")},
		{Prefix: netip.MustParsePrefix("::ffff:198.51.100.7/128"), Timeout: time.Hour}, // same as the first
		{Prefix: netip.MustParsePrefix("0.0.0.0/0")},
		{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Timeout: -1},
	}, false)
	if len(b.v4) != 1 || b.v4[0].Timeout != time.Hour {
		t.Errorf("v4 = %v, want one entry with the last timeout 1h", b.v4)
	}
	if len(b.v6) != 0 {
		t.Errorf("v6 = %v with ipv6 off", b.v6)
	}
	if len(b.errs) != 3 || !errors.Is(errors.Join(b.errs...), ErrIPv6Disabled) {
		t.Errorf("errs = %v, want 3 including ErrIPv6Disabled", b.errs)
	}
}

func TestIPSetTimeout(t *testing.T) {
	tests := []struct {
		in   time.Duration
		want int64
	}{
		{0, 0},
		{time.Millisecond, 1},
		{2 * time.Second, 2},
		{2*time.Second + 1, 3},
		{30 * 24 * time.Hour, MaxIPSetTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.in.String(), func(t *testing.T) {
			if got := ipsetTimeout(tt.in); got != tt.want {
				t.Errorf("ipsetTimeout(%v) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseIPSetSave(t *testing.T) {
	out, err := os.ReadFile(filepath.Join("testdata", "ipset-save.txt"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		set  string
		want []Entry
	}{
		{"banner4", []Entry{
			{Prefix: netip.MustParsePrefix("10.0.0.1/32"), Timeout: 2147482 * time.Second},
			{Prefix: netip.MustParsePrefix("10.1.0.0/16"), Timeout: 0},
		}},
		{"banner6", []Entry{
			{Prefix: netip.MustParsePrefix("2001:db8::/64"), Timeout: 0},
			{Prefix: netip.MustParsePrefix("2001:db8::7/128"), Timeout: 39 * time.Second},
		}},
		{"other", nil},
	}
	for _, tt := range tests {
		t.Run(tt.set, func(t *testing.T) {
			got, err := parseIPSetSave(out, tt.set)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	for _, bad := range []string{"add banner4 300.1.1.1 timeout 3", "add banner4 10.0.0.1 timeout", "add banner4 10.0.0.1 timeout x"} {
		if _, err := parseIPSetSave([]byte(bad), "banner4"); err == nil {
			t.Errorf("parseIPSetSave(%q) gave no error", bad)
		}
	}
}

func TestParseIPSetHeader(t *testing.T) {
	h := parseIPSetHeader([]byte("Name: banner4\nType: hash:net\nRevision: 7\n" +
		"Header: family inet hashsize 1024 maxelem 65536 timeout 0 bucketsize 12 initval 0xebb209f1\n" +
		"Size in memory: 584\nReferences: 1\nNumber of entries: 2\n"))
	want := ipsetHeader{typ: "hash:net", family: "inet", maxelem: 65536, timeout: true}
	if h != want {
		t.Errorf("got %+v, want %+v", h, want)
	}
}

func TestParseRules(t *testing.T) {
	lines := []string{
		"-P INPUT ACCEPT",
		"-A INPUT -p icmp -j ACCEPT",
		`-A INPUT -p tcp -m multiport --dports 25 -m comment --comment "old \"banner\" jump" -j BANNER`,
		"-A INPUT -p tcp -m multiport --dports 25,465 -g BANNER",
		"-A OTHER -j BANNER",
	}
	rules := parseRules(lines, "INPUT")
	if len(rules) != 3 || rules[2].pos != 3 {
		t.Fatalf("rules = %v", rules)
	}
	wantComment := `old "banner" jump`
	if !slices.Contains(rules[1].spec, wantComment) {
		t.Errorf("comment not unquoted: %q", rules[1].spec)
	}
	var jumps []int
	for _, r := range rules {
		if jumpsTo(r.spec, "BANNER") {
			jumps = append(jumps, r.pos)
		}
	}
	if !slices.Equal(jumps, []int{2, 3}) {
		t.Errorf("jumps at %v, want [2 3]", jumps)
	}
}

func TestDropSource(t *testing.T) {
	tests := []struct {
		line string
		want string // "" = not a drop rule
	}{
		{"-s 198.51.100.7/32 -j DROP", "198.51.100.7/32"},
		{"-s 2001:db8::/64 -j DROP", "2001:db8::/64"},
		{"-s 198.51.100.7/32 -j ACCEPT", ""},
		{"-s 198.51.100.7/32 -p tcp -j DROP", ""},
		{"-m set --match-set banner4 src -j DROP", ""},
		{"-s nonsense -j DROP", ""},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			p, ok := dropSource(splitWords(tt.line))
			if tt.want == "" {
				if ok {
					t.Errorf("got %s, want no match", p)
				}
				return
			}
			if !ok || p.String() != tt.want {
				t.Errorf("got %s %v, want %s", p, ok, tt.want)
			}
		})
	}
}

func TestNoneBackend(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Backend = BackendNone
	cfg.SASLPorts = nil // the main group alone (TestGroupedNone has both)
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := b.Member(banner.GroupMain).(*None)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n.now = func() time.Time { return now }
	ctx := context.Background()
	if err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	p4 := netip.MustParsePrefix("198.51.100.7/32")
	p6 := netip.MustParsePrefix("2001:db8::/64")
	if err := b.Add(ctx, []Entry{{Prefix: p4, Timeout: 90 * time.Second}, {Prefix: p6, Timeout: 0}}); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, []Entry{{Prefix: p4, Timeout: 30 * time.Second}}); err != nil { // replaces the timeout
		t.Fatal(err)
	}
	now = now.Add(10*time.Second + time.Millisecond)
	got, _ := b.List(ctx)
	want := []Entry{{Prefix: p4, Timeout: 20 * time.Second}, {Prefix: p6, Timeout: 0}}
	if !slices.Equal(got, want) {
		t.Errorf("List = %v, want %v", got, want)
	}
	now = now.Add(20 * time.Second)
	got, _ = b.List(ctx)
	if !slices.Equal(got, []Entry{{Prefix: p6, Timeout: 0}}) {
		t.Errorf("after expiry List = %v", got)
	}
	if err := b.Remove(ctx, []netip.Prefix{p6, p4}); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.List(ctx); len(got) != 0 {
		t.Errorf("after Remove List = %v", got)
	}
	if err := b.Add(ctx, []Entry{{Prefix: netip.MustParsePrefix("0.0.0.0/0")}}); err == nil {
		t.Error("Add of 0.0.0.0/0 gave no error")
	}
	s := b.Stats()
	if s.Adds != 3 || s.Removes != 2 || s.Errors != 1 || !strings.Contains(s.LastError, "0.0.0.0/0") {
		t.Errorf("Stats = %+v", s)
	}
	if _, err := b.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
}
