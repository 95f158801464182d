package firewall

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/testenv"
)

// TestIPSetReplace: Replace makes its entries the whole content of both
// sets (what was there and is not passed is gone, timeouts are the new
// ones), the match rules keep matching the live set, no scratch set is
// left, and a Replace failing before its swaps leaves the sets as they
// were.
func TestIPSetReplace(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	b := newBackend(t, BackendIPSet, nil)
	t.Cleanup(func() { _, _ = b.Teardown(ctx) })
	if err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, []Entry{
		{Prefix: netip.MustParsePrefix("198.51.100.1/32"), Timeout: time.Hour},
		{Prefix: netip.MustParsePrefix("198.51.100.2/32"), Timeout: time.Hour},
		{Prefix: netip.MustParsePrefix("2001:db8::/64"), Timeout: time.Hour},
	}); err != nil {
		t.Fatal(err)
	}
	r := b.(interface {
		Replace(context.Context, []Entry) error
	})
	if err := r.Replace(ctx, []Entry{
		{Prefix: netip.MustParsePrefix("198.51.100.2/32"), Timeout: 2 * time.Hour},
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Timeout: 2 * time.Hour},
		{Prefix: netip.MustParsePrefix("2001:db8:1::/64"), Timeout: 2 * time.Hour},
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{"198.51.100.2", "2001:db8:1::/64", "203.0.113.0/24"}
	if got := kernelBans(t, BackendIPSet); !slices.Equal(got, want) {
		t.Errorf("after Replace: %v, want %v", got, want)
	}
	es, err := b.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range es {
		if e.Timeout < time.Hour+50*time.Minute {
			t.Errorf("%v: timeout %v, want the new 2h", e.Prefix, e.Timeout)
		}
	}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		if s := strings.Join(chainLines(t, cmd), "\n"); !strings.Contains(s, "--match-set banner") {
			t.Errorf("%s chain lost its set match:\n%s", cmd, s)
		}
	}
	if names := sh(t, "ipset", "list", "-n"); strings.Contains(names, "-swap") {
		t.Errorf("scratch set left: %s", names)
	}
	// A set in the scratch set's place that Replace cannot take over:
	// Replace fails before any swap, the live sets keep what they had,
	// and the scratch set is gone.
	sh(t, "ipset", "create", "banner4-swap", "hash:ip")
	if err := r.Replace(ctx, []Entry{{Prefix: netip.MustParsePrefix("192.0.2.9/32"), Timeout: time.Hour}}); err == nil {
		t.Fatal("Replace succeeded over a foreign scratch set")
	}
	if got := kernelBans(t, BackendIPSet); !slices.Equal(got, want) {
		t.Errorf("after a failed Replace: %v, want %v", got, want)
	}
	if names := sh(t, "ipset", "list", "-n"); strings.Contains(names, "-swap") {
		t.Errorf("scratch set left after a failure: %s", names)
	}
}

// TestIPSetNetlinkSmallBatches: a small Add or Remove goes over netlink
// (no ipset process), with the timeouts ipset restore would set; a Remove
// naming an absent entry falls back to ipset restore -exist, which
// ignores it; the result is the same either way.
func TestIPSetNetlinkSmallBatches(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	var logs testenv.SyncBuffer
	b := newBackend(t, BackendIPSet, func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	})
	t.Cleanup(func() { _, _ = b.Teardown(ctx) })
	if err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	logs.Reset()
	if err := b.Add(ctx, []Entry{
		{Prefix: netip.MustParsePrefix("198.51.100.1/32"), Timeout: time.Hour},
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Timeout: 0},
		{Prefix: netip.MustParsePrefix("2001:db8::/64"), Timeout: 90 * time.Second},
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "via=netlink") || strings.Contains(logs.String(), "using ipset restore") {
		t.Errorf("Add did not go over netlink:\n%s", logs.String())
	}
	save := sh(t, "ipset", "save", "banner4") + sh(t, "ipset", "save", "banner6")
	for _, want := range []string{"add banner4 198.51.100.1 timeout 3", "add banner4 203.0.113.0/24 timeout 0", "add banner6 2001:db8::/64 timeout "} {
		if !strings.Contains(save, want) {
			t.Errorf("ipset save lacks %q:\n%s", want, save)
		}
	}
	// Re-adding refreshes the timeout, as ipset restore -exist does.
	if err := b.Add(ctx, []Entry{{Prefix: netip.MustParsePrefix("198.51.100.1/32"), Timeout: 10 * time.Minute}}); err != nil {
		t.Fatal(err)
	}
	if s := sh(t, "ipset", "save", "banner4"); !strings.Contains(s, "add banner4 198.51.100.1 timeout 6") && !strings.Contains(s, "add banner4 198.51.100.1 timeout 5") {
		t.Errorf("timeout not refreshed:\n%s", s)
	}
	logs.Reset()
	if err := b.Remove(ctx, []netip.Prefix{netip.MustParsePrefix("198.51.100.1/32"), netip.MustParsePrefix("192.0.2.77/32")}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "using ipset restore") {
		t.Errorf("Remove of an absent entry did not fall back to ipset restore:\n%s", logs.String())
	}
	if got := kernelBans(t, BackendIPSet); !slices.Equal(got, []string{"2001:db8::/64", "203.0.113.0/24"}) {
		t.Errorf("after Remove: %v", got)
	}
}
