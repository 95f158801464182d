package firewall

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/banner-mta/banner/internal/testenv"
)

func TestIPSetEntries(t *testing.T) {
	n, ok := ipsetEntries([]byte("Name: banner4\nType: hash:net\nReferences: 1\nNumber of entries: 17\nMembers:\n"))
	if !ok || n != 17 {
		t.Errorf("got %d %v, want 17 true", n, ok)
	}
	if _, ok := ipsetEntries([]byte("Name: banner4\n")); ok {
		t.Error("no count line, yet ok")
	}
}

func TestPlural(t *testing.T) {
	for _, tt := range []struct {
		n          int
		noun, want string
	}{{0, "rule", "0 rules"}, {1, "rule", "1 rule"}, {2, "entry", "2 entries"}, {1, "entry", "1 entry"}} {
		if got := plural(tt.n, tt.noun); got != tt.want {
			t.Errorf("plural(%d, %q) = %q, want %q", tt.n, tt.noun, got, tt.want)
		}
	}
}

func TestTeardownNone(t *testing.T) {
	b := newBackend(t, BackendNone, nil)
	if got, err := removed(b.Teardown(context.Background())); got != nil || err != nil {
		t.Errorf("Teardown(none) = %q, %v; want nil, nil", got, err)
	}
}

// TestTeardown checks what Teardown reports, that a second one finds
// nothing, and that a rule of the admin's using a set stops it before it
// changes anything.
func TestTeardown(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	b := newBackend(t, BackendIPSet, func(c *Config) { c.IPv6 = false })
	t.Cleanup(func() { _, _ = b.Teardown(ctx) })
	if err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, []Entry{{Prefix: prefixes("198.51.100.1/32")[0]}, {Prefix: prefixes("198.51.100.0/28")[0]}}); err != nil {
		t.Fatal(err)
	}

	// The admin matches banner4 in INPUT themselves: not banner's rule.
	admin := []string{"-A", "INPUT", "-p", "tcp", "--dport", "22", "-m", "set", "--match-set", "banner4", "src", "-j", "DROP"}
	sh(t, "iptables", admin...)
	_, err := removed(b.Teardown(ctx))
	if err == nil || !strings.Contains(err.Error(), "IPv4 -A INPUT -p tcp -m tcp --dport 22 -m set --match-set banner4 src -j DROP") ||
		!strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("Teardown with a foreign set match: %v", err)
	}
	if js, _ := jumps(t, "iptables"); len(js) != 1 {
		t.Errorf("jumps after refused Teardown: %q", js)
	}
	admin[0] = "-D"
	sh(t, "iptables", admin...)

	got, err := removed(b.Teardown(ctx))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"IPv4 jump -A INPUT -p tcp -m multiport --dports 25 -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j BANNER",
		"IPv4 chain BANNER (1 rule)",
		"set banner4 (2 entries)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Teardown = %q, want %q", got, want)
	}
	if shOK("iptables", "-S", "BANNER") || strings.TrimSpace(sh(t, "ipset", "list", "-n")) != "" {
		t.Error("chain or set left")
	}
	if got, err := removed(b.Teardown(ctx)); got != nil || err != nil {
		t.Errorf("second Teardown = %q, %v; want nil, nil", got, err)
	}
}

func TestIPSetReferences(t *testing.T) {
	n, ok := ipsetReferences([]byte("Name: banner4\nType: hash:net\nRevision: 7\nHeader: family inet hashsize 1024 maxelem 65536 timeout 0\nSize in memory: 552\nReferences: 3\nNumber of entries: 0\n"))
	if !ok || n != 3 {
		t.Errorf("got %d %v, want 3 true", n, ok)
	}
	if _, ok := ipsetReferences([]byte("Name: banner4\n")); ok {
		t.Error("no References line, yet ok")
	}
}

// TestTeardownSetRefsElsewhere checks that a set used outside the filter
// table, or by something no iptables listing shows (a list:set, a rule of
// the other iptables variant), stops Teardown before it changes anything,
// with an error naming the rule or the set.
func TestTeardownSetRefsElsewhere(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	b := newBackend(t, BackendIPSet, nil)
	t.Cleanup(func() { _, _ = b.Teardown(ctx) })
	if err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	snapshot := func() string {
		return sh(t, "iptables", "-S") + sh(t, "ip6tables", "-S") + sh(t, "ipset", "list", "-n")
	}
	before := snapshot()
	refused := func(t *testing.T, want string) {
		t.Helper()
		got, err := removed(b.Teardown(ctx))
		if err == nil || got != nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "nothing was changed") {
			t.Errorf("Teardown = %q, %v; want a refusal naming %q", got, err, want)
		}
		if after := snapshot(); after != before {
			t.Errorf("Teardown changed the firewall:\n%s\nwant\n%s", after, before)
		}
	}
	for _, c := range []struct {
		name       string
		add, del   [][]string
		legacyOnly bool
		want       string
	}{
		{name: "raw table", want: "IPv4 -t raw -A PREROUTING -m set --match-set banner4 src -j DROP",
			add: [][]string{{"iptables", "-t", "raw", "-A", "PREROUTING", "-m", "set", "--match-set", "banner4", "src", "-j", "DROP"}}},
		{name: "ip6tables mangle", want: "IPv6 -t mangle -A PREROUTING -p tcp -m set --match-set banner6 src -j DROP",
			add: [][]string{{"ip6tables", "-t", "mangle", "-A", "PREROUTING", "-p", "tcp", "-m", "set", "--match-set", "banner6", "src", "-j", "DROP"}}},
		{name: "list:set", want: "set banner4: the kernel counts 2 references to it, banner's chain accounts for 1",
			add: [][]string{{"ipset", "create", "adminlist", "list:set"}, {"ipset", "add", "adminlist", "banner4"}},
			del: [][]string{{"ipset", "destroy", "adminlist"}}},
		{name: "other iptables variant", legacyOnly: true, want: "set banner6: the kernel counts 2 references to it, banner's chain accounts for 1",
			add: [][]string{{"ip6tables-legacy", "-t", "raw", "-A", "PREROUTING", "-m", "set", "--match-set", "banner6", "src", "-j", "DROP"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.legacyOnly {
				v := sh(t, "iptables", "--version")
				if _, err := exec.LookPath("ip6tables-legacy"); err != nil || !strings.Contains(v, "nf_tables") {
					t.Skipf("needs iptables-nft as iptables and ip6tables-legacy beside it (iptables --version: %s)", strings.TrimSpace(v))
				}
			}
			for _, a := range c.add {
				sh(t, a[0], a[1:]...)
			}
			before = snapshot()
			refused(t, c.want)
			for _, a := range c.add {
				if i := slices.Index(a, "-A"); i >= 0 {
					d := slices.Clone(a)
					d[i] = "-D"
					sh(t, d[0], d[1:]...)
				}
			}
			for _, d := range c.del {
				sh(t, d[0], d[1:]...)
			}
			before = snapshot()
		})
	}
	got, err := removed(b.Teardown(ctx))
	if err != nil || len(got) != 6 {
		t.Errorf("Teardown with the foreign users gone = %q, %v", got, err)
	}
}

// removed is the Removed of a Teardown's report, with its error.
func removed(r TeardownReport, err error) ([]string, error) { return r.Removed, err }
