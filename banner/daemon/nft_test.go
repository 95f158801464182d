package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/internal/testenv"
)

// TestDaemonAutoWithoutIPTables is the Quick start on a stock Debian 12:
// no iptables and no ipset on PATH, backend "auto" (the default). The
// daemon picks nftables and says why in its status, run -check's
// preflight asks for no firewall package, and bans of both families
// reach the kernel.
func TestDaemonAutoWithoutIPTables(t *testing.T) {
	if testenv.RunInNetNS(t, "nft") {
		return
	}
	t.Setenv("PATH", t.TempDir()) // nothing: no iptables, no ipset
	saved := systemPath
	systemPath = nil // preflight looks in the system directories too
	t.Cleanup(func() { systemPath = saved })
	ctx := context.Background()
	cfg := testConfig(t, t.TempDir())
	cfg.Firewall.Backend = "auto"
	for _, w := range Preflight(cfg) {
		if strings.HasPrefix(w.Key, "firewall") {
			t.Errorf("preflight warns about the firewall: %s", w)
		}
	}
	d, err := New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer d.close()
	st := d.Status().Firewall
	if st.Backend != firewall.BackendNFTables || !strings.Contains(st.Choice, "auto: the nftables netlink API works; iptables is not installed") ||
		st.Chain != "inet banner input" {
		t.Errorf("status firewall = %+v", st)
	}
	bans := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8:5::/64")}
	for _, p := range bans {
		if _, err := d.engine.Ban(ctx, p, time.Hour, "test"); err != nil {
			t.Fatal(err)
		}
	}
	es, err := d.firewall.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range bans {
		if !slices.ContainsFunc(es, func(e firewall.Entry) bool { return e.Prefix == p }) {
			t.Errorf("%s not in the nftables sets: %v", p, es)
		}
	}
}
