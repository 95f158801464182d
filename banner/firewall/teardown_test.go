package firewall

import (
	"context"
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

func TestUninstallNone(t *testing.T) {
	b := newBackend(t, BackendNone, nil)
	if got, err := Uninstall(context.Background(), b); got != nil || err != nil {
		t.Errorf("Uninstall(none) = %q, %v; want nil, nil", got, err)
	}
}

// TestUninstall checks what Uninstall reports, that a second one finds
// nothing, and that a rule of the admin's using a set stops it before it
// changes anything.
func TestUninstall(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	b := newBackend(t, BackendIPSet, func(c *Config) { c.IPv6 = false })
	t.Cleanup(func() { _ = b.Teardown(ctx) })
	if err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, []Entry{{Prefix: prefixes("198.51.100.1/32")[0]}, {Prefix: prefixes("198.51.100.0/28")[0]}}); err != nil {
		t.Fatal(err)
	}

	// The admin matches banner4 in INPUT themselves: not banner's rule.
	admin := []string{"-A", "INPUT", "-p", "tcp", "--dport", "22", "-m", "set", "--match-set", "banner4", "src", "-j", "DROP"}
	sh(t, "iptables", admin...)
	_, err := Uninstall(ctx, b)
	if err == nil || !strings.Contains(err.Error(), "IPv4 -A INPUT -p tcp -m tcp --dport 22 -m set --match-set banner4 src -j DROP") ||
		!strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("Uninstall with a foreign set match: %v", err)
	}
	if js, _ := jumps(t, "iptables"); len(js) != 1 {
		t.Errorf("jumps after refused Uninstall: %q", js)
	}
	admin[0] = "-D"
	sh(t, "iptables", admin...)

	got, err := Uninstall(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"IPv4 jump -A INPUT -p tcp -m multiport --dports 25 -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j BANNER",
		"IPv4 chain BANNER (1 rule)",
		"set banner4 (2 entries)",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Uninstall = %q, want %q", got, want)
	}
	if shOK("iptables", "-S", "BANNER") || strings.TrimSpace(sh(t, "ipset", "list", "-n")) != "" {
		t.Error("chain or set left")
	}
	if got, err := Uninstall(ctx, b); got != nil || err != nil {
		t.Errorf("second Uninstall = %q, %v; want nil, nil", got, err)
	}
}
