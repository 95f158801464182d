package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/internal/testenv"
)

// TestSwitchIPSetToNFTables is an install switched from the ipset backend
// to nftables, as an admin does it: banner runs with ipset and a store of
// bans (addresses and prefixes of both families), stops, the
// configuration says nftables, banner starts again. Every ban of the store
// is in the nftables sets after Start, and the ipset backend's INPUT
// jumps, chain and sets are gone (the nftables Setup tears them down), so
// no ipset entry keeps dropping a client whose ban is lifted later.
func TestSwitchIPSetToNFTables(t *testing.T) {
	if testenv.RunInNetNS(t, "ipset", "iptables", "ip6tables", "nft") {
		return
	}
	const n4, n6, n24, n64 = 2000, 500, 100, 100
	path := filepath.Join(t.TempDir(), "banner.db")
	cfg := DefaultConfig()
	cfg.Logger = quiet
	cfg.ReconcileInterval = 0
	ctx := context.Background()

	var want []netip.Prefix
	for i := range n4 {
		want = append(want, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(1 + i%250)}), 32))
	}
	for i := range n6 {
		want = append(want, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 14: byte(i >> 8), 15: byte(i)}), 128))
	}
	for i := range n24 {
		want = append(want, netip.PrefixFrom(netip.AddrFrom4([4]byte{203, 0, byte(i), 0}), 24))
	}
	for i := range n64 {
		want = append(want, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, byte(i)}), 64))
	}

	// banner on ipset.
	st := openStore(t, path)
	old := newRealFirewall(t, firewall.BackendIPSet)
	e := startEngine(t, cfg, st, old)
	var wg sync.WaitGroup
	errs := make(chan error, len(want))
	sem := make(chan struct{}, 64)
	for _, p := range want {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if _, err := e.Ban(ctx, p, 24*time.Hour, "switch test"); err != nil {
				errs <- fmt.Errorf("ban %s: %w", p, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := e.sync(t); err != nil {
		t.Fatal(err)
	}
	ipsetCount := func(set string) int {
		out, err := exec.Command("ipset", "list", set).CombinedOutput()
		if err != nil {
			return -1
		}
		n := 0
		inMembers := false
		for l := range strings.Lines(string(out)) {
			if inMembers && strings.TrimSpace(l) != "" {
				n++
			}
			inMembers = inMembers || strings.HasPrefix(l, "Members:")
		}
		return n
	}
	before4, before6 := ipsetCount("banner4"), ipsetCount("banner6")
	t.Logf("on ipset: %d bans in the store; ipset banner4 holds %d, banner6 %d", len(want), before4, before6)
	if before4+before6 != len(want) {
		t.Fatalf("ipset holds %d+%d entries, want %d", before4, before6, len(want))
	}
	e.Close()
	st.Close()

	// The admin sets backend = "nftables" (or auto picks it) and restarts.
	st = openStore(t, path)
	fwcfg := firewall.DefaultConfig()
	fwcfg.Backend = firewall.BackendNFTables
	var logs testenv.SyncBuffer
	fwcfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	nft, err := firewall.New(fwcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = nft.Teardown(context.Background()) })
	t0 := time.Now()
	e = startEngine(t, cfg, st, nft)
	took := time.Since(t0)
	kernel, err := nft.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inKernel := make(map[netip.Prefix]bool, len(kernel))
	for _, k := range kernel {
		inKernel[k.Prefix] = true
	}
	missing := 0
	for _, p := range want {
		if !inKernel[p] {
			missing++
			if missing < 5 {
				t.Errorf("ban %s of the store is not in the nftables sets", p)
			}
		}
	}
	if missing > 0 || len(kernel) != len(want) {
		t.Errorf("nftables holds %d entries, %d of the store's %d missing", len(kernel), missing, len(want))
	}
	var counts []int
	total := 0
	for _, set := range []string{"banner4", "banner4_net", "banner6", "banner6_net"} {
		n := strings.Count(nftSet(t, set), "expires")
		counts = append(counts, n)
		total += n
	}
	t.Logf("on nftables after restart (Start took %v): nft list set inet banner banner4, banner4_net, banner6, banner6_net list %v elements with an expiry",
		took.Round(time.Millisecond), counts)
	if total != len(want) || !slices.Equal(counts, []int{n4, n24, n6, n64}) {
		t.Errorf("nft lists %v elements, want %v", counts, []int{n4, n24, n6, n64})
	}
	t.Logf("nftables backend's warnings at Start:\n%s", logs.String())
	if !strings.Contains(logs.String(), "removed the hooks a previous ipset or iptables backend of banner left") {
		t.Error("Setup did not say it removed the ipset backend's hooks")
	}
	for _, set := range []string{"banner4", "banner6", "banner4_sasl", "banner6_sasl"} { // the sasl group's too
		if n := ipsetCount(set); n != -1 {
			t.Errorf("ipset %s still exists with %d entries after the switch", set, n)
		}
	}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		out, _ := exec.Command(cmd, "-S").CombinedOutput()
		if strings.Contains(string(out), "BANNER") {
			t.Errorf("%s still has banner's hooks:\n%s", cmd, out)
		}
		t.Logf("%s -S after the switch:\n%s", cmd, out)
	}
	// The store is the same whatever the backend.
	if got := e.ledger.bans.len(); got != len(want) {
		t.Errorf("engine holds %d bans after the switch, want %d", got, len(want))
	}
}

func nftSet(t *testing.T, set string) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "set", "inet", "banner", set).CombinedOutput()
	if err != nil {
		t.Fatalf("nft list set %s: %v: %s", set, err, out)
	}
	return string(out)
}

// TestNFTablesRulesetFlushRefill: `nft flush ruleset` (a reload of
// Debian's nftables.conf) removes banner's table with its bans under a
// running engine. The next ban finds the table gone, rebuilds it and is
// applied at once, and the engine re-adds every other ban right after,
// without waiting for reconcile_interval.
func TestNFTablesRulesetFlushRefill(t *testing.T) {
	if testenv.RunInNetNS(t, "nft") {
		return
	}
	cfg := DefaultConfig()
	cfg.Logger = quiet
	cfg.ReconcileInterval = time.Hour
	fw := realFirewall(t, firewall.BackendNFTables)
	e := startEngine(t, cfg, nil, fw)
	ctx := context.Background()
	for i := range 100 {
		if _, err := e.Ban(ctx, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)}), 32), time.Hour, "t"); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("nft", "flush", "ruleset").CombinedOutput(); err != nil {
		t.Fatalf("nft flush ruleset: %v: %s", err, out)
	}
	if _, err := e.Ban(ctx, netip.MustParsePrefix("2001:db8::/64"), time.Hour, "t"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		es, err := fw.List(ctx)
		if err == nil && len(es) == 101 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30 s after the flush the firewall holds %d of 101 bans (%v)", len(es), err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if st := fw.Stats(); st.HookRepairs == 0 {
		t.Errorf("no repair counted: %+v", st)
	}
}
