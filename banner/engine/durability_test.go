package engine

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/store"
	"github.com/banner-mta/banner/internal/testenv"
)

// TestFullDiskConfirmsNothingLosesNothing: with the store on a real tmpfs
// that is full, a ban or unban is not confirmed (its error wraps
// banner.ErrNotDurable) but holds in the engine and the kernel; the writes
// are retried and land once space is free; and a restart then restores
// every ban that was confirmed or retried, and no confirmed unban comes
// back. Real ipset sets in a private namespace.
func TestFullDiskConfirmsNothingLosesNothing(t *testing.T) {
	if testenv.RunInNetNS(t, "ipset", "iptables", "mount") {
		return
	}
	dir := testenv.SmallDisk(t, 1<<20)
	path := filepath.Join(dir, "banner.db")
	cfg := DefaultConfig()
	cfg.Logger = quiet
	cfg.ReconcileInterval = 0
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	fw := realFirewall(t, firewall.BackendIPSet)
	e, err := New(cfg, st, fw)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	prefix := func(i int) netip.Prefix {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(1 + i%250)}), 32)
	}
	// Bans that are saved before the disk fills, to be unbanned on a full disk.
	for i := range 5 {
		if _, err := e.Ban(ctx, prefix(i), time.Hour, "before"); err != nil {
			t.Fatalf("ban %v on a free disk: %v", prefix(i), err)
		}
	}
	filler := testenv.FillDisk(t, dir)

	confirmed := map[netip.Prefix]bool{}
	refused := 0
	for i := 5; i < 2000 && refused < 20; i++ {
		_, err := e.Ban(ctx, prefix(i), time.Hour, "on a full disk")
		switch {
		case err == nil:
			confirmed[prefix(i)] = true
		case errors.Is(err, banner.ErrNotDurable):
			refused++
		default:
			t.Fatalf("ban %v: %v", prefix(i), err)
		}
	}
	if refused == 0 {
		t.Fatal("no ban was refused although the store's disk is full")
	}
	if err := e.Unban(ctx, prefix(0)); !errors.Is(err, banner.ErrNotDurable) {
		t.Fatalf("unban on a full disk: %v, want an error wrapping ErrNotDurable", err)
	}
	s := e.Stats()
	if s.StorePending == 0 || s.StoreFailingSince.IsZero() {
		t.Fatalf("stats while the disk is full: pending %d, failing since %v", s.StorePending, s.StoreFailingSince)
	}
	if _, ok := e.Banned(prefix(0).Addr()); ok {
		t.Fatal("the unban is not in force in the engine")
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for e.Stats().StorePending > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pending writes not retried within a minute: %d left", e.Stats().StorePending)
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := e.List()
	e.Close()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}

	// Restart: every ban in force before the stop is back, prefix(0) is not.
	st2, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st2.Close()
	e2, err := New(cfg, st2, fw)
	if err != nil {
		t.Fatal(err)
	}
	if err := e2.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	got := map[netip.Prefix]bool{}
	for _, b := range e2.List() {
		got[b.Prefix] = true
	}
	for _, b := range want {
		if !got[b.Prefix] {
			t.Errorf("ban of %v lost across the restart", b.Prefix)
		}
	}
	for p := range confirmed {
		if !got[p] {
			t.Errorf("confirmed ban of %v lost", p)
		}
	}
	if got[prefix(0)] {
		t.Error("the unban of prefix(0) came back after the restart")
	}
	kernel, err := fw.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(kernel) != len(want) {
		t.Errorf("kernel holds %d entries after the restart, want %d", len(kernel), len(want))
	}
	t.Logf("%d bans confirmed, %d refused while full and saved on retry; %d in force after the restart",
		len(confirmed), refused, len(got))
}

// TestPrefixBanNeverCoversAllowlist: with ipv6_prefix 64, an offence by an
// address whose /64 holds an allowlisted address bans the widest prefix
// that leaves the allowlisted one out, says so in the reason, and the
// kernel's set never matches the allowlisted address. Real ipset sets.
func TestPrefixBanNeverCoversAllowlist(t *testing.T) {
	if testenv.RunInNetNS(t, "ipset", "iptables") {
		return
	}
	cfg := DefaultConfig()
	cfg.Logger = quiet
	cfg.ReconcileInterval = 0
	cfg.IPv6Prefix = 64
	cfg.Allowlist = []netip.Prefix{netip.MustParsePrefix("2001:db8:1::5/128")}
	fw := realFirewall(t, firewall.BackendIPSet)
	e := startEngine(t, cfg, nil, fw)
	offender := netip.MustParseAddr("2001:db8:1::66")
	e.Report(banner.Event{Addr: offender, Kind: banner.KindDNSBL, Source: banner.SourcePolicy, BanFor: time.Hour, Reason: "listed"})
	deadline := time.Now().Add(10 * time.Second)
	var b banner.Ban
	for {
		var ok bool
		if b, ok = e.Banned(offender); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("offender not banned")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if want := netip.MustParsePrefix("2001:db8:1::40/122"); b.Prefix != want {
		t.Errorf("banned %v, want %v (the widest prefix without 2001:db8:1::5)", b.Prefix, want)
	}
	if !strings.Contains(b.Reason, "overlaps allowlisted 2001:db8:1::5/128") {
		t.Errorf("reason %q does not say why the ban is narrower", b.Reason)
	}
	if err := e.sync(t); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ipset", "test", "banner6", "2001:db8:1::5").CombinedOutput(); err == nil {
		t.Errorf("ipset test banner6 2001:db8:1::5: %s: the allowlisted address is in the set", out)
	}
	if out, err := exec.Command("ipset", "test", "banner6", offender.String()).CombinedOutput(); err != nil {
		t.Errorf("ipset test banner6 %v: %v: %s: the offender is not in the set", offender, err, out)
	}
}
