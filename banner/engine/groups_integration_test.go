package engine

import (
	"context"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/internal/testenv"
)

// groupHas reports whether the kernel holds address a in the sets (or
// chain) of port group g, asking the tools, not the backend.
func groupHas(t *testing.T, backend string, g banner.Groups, a netip.Addr) bool {
	t.Helper()
	set, chain, table := "banner4", "BANNER", "banner"
	if g == banner.GroupSASL {
		set, chain, table = "banner4_sasl", "BANNER_SASL", "banner_sasl"
	}
	switch backend {
	case firewall.BackendNFTables:
		return exec.Command("nft", "get", "element", "inet", table, set, "{", a.String(), "}").Run() == nil
	case firewall.BackendIPSet:
		return exec.Command("ipset", "test", set, a.String()).Run() == nil
	default:
		out, _ := exec.Command("iptables", "-S", chain).CombinedOutput()
		return strings.Contains(string(out), "-s "+a.String()+"/32 -j DROP")
	}
}

// TestIntegrationPortGroups: with each real backend, the engine puts a
// SASL ban into the sasl group's sets and an ordinary ban into the main
// group's; a restart with them in the kernel keeps each in its group;
// after a reboot (everything gone from the kernel) a restart
// puts each back into its own group from the store; with [ban.sasl]
// ports emptied, a restart moves the SASL ban into the main group and
// removes the sasl group from the kernel.
func TestIntegrationPortGroups(t *testing.T) {
	if testenv.RunInNetNS(t, "ipset", "iptables", "ip6tables", "nft") {
		return
	}
	for _, backend := range []string{firewall.BackendNFTables, firewall.BackendIPSet, firewall.BackendIPTables} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			path := filepath.Join(t.TempDir(), "banner.db")
			fwFor := func(sasl bool) firewall.Backend {
				cfg := firewall.DefaultConfig()
				cfg.Backend = backend
				cfg.Logger = quiet
				if !sasl {
					cfg.SASLPorts = nil
				}
				fw, err := firewall.New(cfg)
				if err != nil {
					t.Fatal(err)
				}
				return fw
			}
			ecfg := func(sasl bool) Config {
				cfg := DefaultConfig()
				cfg.MaxRetry = 2
				cfg.Logger = quiet
				cfg.ReconcileInterval = 0
				cfg.Kinds = map[banner.Kind]KindRule{banner.KindSASL: {MaxRetry: 2, FindTime: time.Hour, OwnPorts: sasl}}
				return cfg
			}
			guesser, prober := netip.MustParseAddr("198.51.100.61"), netip.MustParseAddr("198.51.100.62")
			want := func(when string, gSASL, gMain banner.Groups) {
				t.Helper()
				for _, c := range []struct {
					a    netip.Addr
					want banner.Groups
				}{{guesser, gSASL}, {prober, gMain}} {
					for _, g := range []banner.Groups{banner.GroupMain, banner.GroupSASL} {
						if got := groupHas(t, backend, g, c.a); got != c.want.Has(g) {
							t.Errorf("%s: %s in the %v group's sets: %v, want %v", when, c.a, g, got, c.want.Has(g))
						}
					}
				}
			}

			st := openStore(t, path)
			fw := fwFor(true)
			e := startEngine(t, ecfg(true), st, fw)
			for i := range 2 {
				e.Report(banner.Event{Addr: guesser, Kind: banner.KindSASL, Source: banner.SourceLog, Key: string(rune('a' + i))})
				e.Report(banner.Event{Addr: prober, Kind: banner.KindUnknownUser, Source: banner.SourceLog, Key: string(rune('a'+i)) + "@example.com"})
			}
			e.sync(t)
			want("banned", banner.GroupSASL, banner.GroupMain)
			e.Close()
			st.Close()

			// restart starts banner again over the store, with the SASL
			// port group on, and checks each ban is in its group.
			restart := func(when string) {
				t.Helper()
				st = openStore(t, path)
				fw = fwFor(true)
				e = startEngine(t, ecfg(true), st, fw)
				want(when, banner.GroupSASL, banner.GroupMain)
				e.Close()
				st.Close()
			}
			// With the bans still in the kernel (the iptables backend
			// under iptables-nft reloads its chains unlisted).
			restart("restarted in place")

			// A reboot: the kernel forgets everything.
			if _, err := fw.Teardown(ctx); err != nil {
				t.Fatal(err)
			}
			want("after the reboot", 0, 0)
			restart("restarted")

			// [ban.sasl] ports = []: one group.
			st = openStore(t, path)
			t.Cleanup(func() { st.Close() })
			fw = fwFor(false)
			t.Cleanup(func() { fw.Teardown(ctx) })
			e = startEngine(t, ecfg(false), st, fw)
			want("restarted without sasl ports", banner.GroupMain, banner.GroupMain)
			var left string
			switch backend {
			case firewall.BackendNFTables:
				left, _ = runOut("nft", "list", "tables")
			case firewall.BackendIPSet:
				left, _ = runOut("ipset", "list", "-n")
				l2, _ := runOut("iptables", "-S")
				left += l2
			default:
				left, _ = runOut("iptables", "-S")
			}
			if strings.Contains(left, "sasl") || strings.Contains(left, "SASL") {
				t.Errorf("the sasl group is still in the kernel:\n%s", left)
			}
			e.Close()
		})
	}
}

func runOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
