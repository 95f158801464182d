package engine

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/store"
	"github.com/banner-mta/banner/internal/testenv"
)

// TestIntegrationStartReplacesEmptySet: Start over a store of more bans
// than replaceMin with an ipset holding few of them fills the sets in one
// swap (real ipset): every live ban is in the kernel with its time left,
// the expired one and the stray entry are not, and the set match rules
// still drop the set's sources.
func TestIntegrationStartReplacesEmptySet(t *testing.T) {
	if testenv.RunInNetNS(t, "ipset", "iptables", "ip6tables") {
		return
	}
	const n = 2 * replaceMin
	st := openStore(t, "")
	now := time.Now()
	bans := make([]store.Ban, 0, n+2)
	for i := range n {
		bans = append(bans, store.Ban{Prefix: netip.PrefixFrom(addr4(i+1), 32), Since: now, Until: now.Add(time.Hour), Count: 1, Reason: "r", Source: "log", Kind: "pattern"})
	}
	v6 := netip.MustParsePrefix("2001:db8:7::/64")
	expired := netip.MustParsePrefix("192.0.2.99/32")
	bans = append(bans,
		store.Ban{Prefix: v6, Since: now, Until: now.Add(2 * time.Hour), Count: 2, Reason: "r", Source: "cli", Kind: "manual"},
		store.Ban{Prefix: expired, Since: now.Add(-2 * time.Hour), Until: now.Add(-time.Hour), Count: 1, Reason: "r", Source: "log", Kind: "pattern"})
	if err := st.PutBans(bans, nil); err != nil {
		t.Fatal(err)
	}
	fw := realFirewall(t, firewall.BackendIPSet)
	if err := fw.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	run(t, "ipset", "add", "banner4", "192.0.2.200", "timeout", "600") // a stray
	run(t, "ipset", "add", "banner4", addr4(1).String(), "timeout", "5")
	cfg := DefaultConfig()
	cfg.Logger = quiet
	cfg.ReconcileInterval = 0
	e := startEngine(t, cfg, st, fw)
	if got := e.Stats().ActiveBans; got != n+1 {
		t.Fatalf("%d active bans, want %d", got, n+1)
	}
	out4 := run(t, "ipset", "save", "banner4")
	if c := strings.Count(out4, "\nadd banner4 "); c != n {
		t.Errorf("banner4 holds %d entries, want %d", c, n)
	}
	for _, absent := range []string{"192.0.2.200", "192.0.2.99"} {
		if strings.Contains(out4, " "+absent+" ") {
			t.Errorf("banner4 still holds %s", absent)
		}
	}
	if !strings.Contains(out4, "add banner4 "+addr4(1).String()+" timeout 3") {
		t.Errorf("%v's timeout not refreshed to the time left:\n%.300s", addr4(1), out4)
	}
	if !kernelHas(t, firewall.BackendIPSet, v6) {
		t.Errorf("%v not in banner6", v6)
	}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		if !strings.Contains(run(t, cmd, "-S", "BANNER"), "--match-set banner") {
			t.Errorf("%s chain lost its set match", cmd)
		}
	}
	if strings.Contains(run(t, "ipset", "list", "-n"), "-swap") {
		t.Error("a scratch set is left")
	}
}
