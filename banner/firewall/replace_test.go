package firewall

import (
	"context"
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
