package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/banner-mta/banner/internal/testenv"
	"github.com/banner-mta/banner/internal/vethtest"
)

// ipsetMembers lists what the kernel's set holds, asking ipset itself.
func ipsetMembers(t testing.TB, set string) map[string]bool {
	t.Helper()
	out, err := exec.Command("ipset", "list", set).CombinedOutput()
	if err != nil {
		t.Fatalf("ipset list %s: %v: %s", set, err, out)
	}
	m := map[string]bool{}
	members := false
	for _, l := range strings.Split(string(out), "\n") {
		if l == "Members:" {
			members = true
			continue
		}
		if f := strings.Fields(l); members && len(f) > 0 {
			m[f[0]] = true
		}
	}
	return m
}

// startBulkDaemon writes a configuration with the ipset backend, the
// allowlist 198.51.100.0/28 and extra, and runs `banner run` on it.
func startBulkDaemon(t testing.TB, dir, extra string) string {
	t.Helper()
	return startBulkDaemonWith(t, dir, "ipset", extra)
}

// startBulkDaemonWith is startBulkDaemon with the firewall backend given.
func startBulkDaemonWith(t testing.TB, dir, backend, extra string) string {
	t.Helper()
	cfgPath := filepath.Join(dir, "banner.toml")
	cfg := fmt.Sprintf(`
[policy]
listen = ["inet:%s"]
[dnsbl]
resolvers = ["127.0.0.1:1"]
[ban]
allowlist = ["198.51.100.0/28"]
allow_mynetworks = false
[firewall]
backend = %q
ports = [25]
ipv6 = false
[logwatch]
files = []
[store]
path = %q
[control]
socket = %q
[metrics]
listen = ""
%s`, testenv.FreeAddr(t), backend, filepath.Join(dir, "banner.db"), filepath.Join(dir, "banner.sock"), extra)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testenv.SyncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"run", "-config", cfgPath}, logs, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("banner run exited %d:\n%s", code, logs)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("banner run did not stop")
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", logs)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, "banner.sock")); err == nil {
			if _, code := cliTB(t, "status", "-config", cfgPath); code == 0 {
				return cfgPath
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon not up:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func cliTB(t testing.TB, args ...string) (string, int) {
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return out.String() + errb.String(), code
}

// writeAtomic replaces path with data the way a feed should be updated:
// write a temporary file, rename it over.
func writeAtomic(t testing.TB, path, data string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestBanFileAndFeeds: `banner ban -file` and a [[feeds]] entry in the
// Spamhaus DROP format reach the kernel (ipset, in a private namespace),
// the feed is kept in step with its file (added, removed), and neither
// overrides the allowlist.
func TestBanFileAndFeeds(t *testing.T) {
	if testenv.RunInNetNS(t, "ipset", "iptables") {
		return
	}
	dir := t.TempDir()
	feed := filepath.Join(dir, "drop.txt")
	writeAtomic(t, feed, "; Spamhaus DROP List 2026/12/01\n192.0.2.0/24 ; SBL1\n198.51.100.0/24 ; SBL2\n10.1.0.0/16 ; SBL3\n")
	cfgPath := startBulkDaemon(t, dir, fmt.Sprintf("[[feeds]]\nname = \"drop\"\npath = %q\ninterval = \"2s\"\n", feed))

	inStep := func(what string, want, not []string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			m := ipsetMembers(t, "banner4")
			ok := true
			for _, w := range want {
				ok = ok && m[w]
			}
			for _, n := range not {
				ok = ok && !m[n]
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: kernel holds %v; want %v and not %v", what, slices.Sorted(func(yield func(string) bool) {
					for k := range m {
						if !yield(k) {
							return
						}
					}
				}), want, not)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	inStep("feed loaded", []string{"192.0.2.0/24", "10.1.0.0/16"}, []string{"198.51.100.0/24"})
	writeAtomic(t, feed, "192.0.2.0/24 ; SBL1\n10.2.0.0/16 ; SBL4\n")
	inStep("feed changed", []string{"192.0.2.0/24", "10.2.0.0/16"}, []string{"10.1.0.0/16"})
	out, _ := cliTB(t, "list", "-config", cfgPath)
	if !strings.Contains(out, "feed drop") {
		t.Errorf("banner list does not show the feed's bans:\n%s", out)
	}

	var list strings.Builder
	list.WriteString("# bulk test\n198.51.100.3\nnot-an-address\n")
	for i := range 1000 {
		fmt.Fprintf(&list, "172.16.%d.%d\n", i/250, i%250+1)
	}
	file := filepath.Join(dir, "list.txt")
	writeAtomic(t, file, list.String())
	out, code := cliTB(t, "ban", "-config", cfgPath, "-file", file, "-for", "2h", "-reason", "abuse list")
	if code != 0 || !strings.Contains(out, "banned 1000, already banned 0, refused 1 (of 1001 listed)") || !strings.Contains(out, "line 3") {
		t.Fatalf("ban -file: exit %d\n%s", code, out)
	}
	m := ipsetMembers(t, "banner4")
	for _, a := range []string{"172.16.0.1", "172.16.3.250"} {
		if !m[a] {
			t.Errorf("%s not in the kernel", a)
		}
	}
	if m["198.51.100.3"] {
		t.Error("an allowlisted address from the file is in the kernel")
	}
	// No trail per address of a list, but the ban says where it came from.
	out, code = cliTB(t, "explain", "-config", cfgPath, "172.16.0.1")
	if code != 0 || !strings.Contains(out, "banned by banner ban -file, its length set by -for; abuse list") {
		t.Errorf("explain of an address banned by ban -file (exit %d):\n%s", code, out)
	}
}

// BenchmarkBanFile100k measures `banner ban -file` of 100,000 addresses
// from the command to the kernel (parse, one control request, one store
// transaction fsynced, one firewall batch) against the floor, the kernel
// load alone of the same 100,000 into a fresh set, interleaved (banner,
// floor, banner, floor, ...); medians of the rounds. Per backend:
//
//   - nftables (the default, auto's choice where nftables works): the floor
//     is one netlink transaction adding the 100,000 to a timeout set of a
//     table of its own (google/nftables, 1,000 elements per message, as
//     banner sends them);
//   - ipset: the floor is `ipset restore` of the 100,000 adds into a fresh
//     set.
//
// Run as root in a private namespace:
//
//	go test -c -o /tmp/banner.test ./cmd/banner/
//	unshare -n sh -c 'ip link set lo up; /tmp/banner.test -test.run "^$" -test.bench BanFile100k -test.benchtime 5x -test.benchmem'
func BenchmarkBanFile100k(b *testing.B) {
	testenv.RequireRoot(b)
	if !vethtest.PrivateNetNS() {
		b.Skip("changes the firewall: run inside a private namespace (see the comment)")
	}
	for _, backend := range []string{"nftables", "ipset"} {
		b.Run(backend, func(b *testing.B) { benchBanFile(b, backend) })
	}
}

func benchBanFile(b *testing.B, backend string) {
	if backend == "ipset" {
		testenv.RequireCommands(b, "ipset", "iptables")
	}
	dir := b.TempDir()
	cfgPath := startBulkDaemonWith(b, dir, backend, "")
	const n = 100000
	var banner, floor []time.Duration
	round := 0
	for b.Loop() {
		b.StopTimer()
		round++
		var list, restore strings.Builder
		addrs := make([]netip.Addr, n)
		for i := range n {
			v := uint32(round)<<20 | uint32(i)
			a := netip.AddrFrom4([4]byte{10, byte(v >> 16), byte(v >> 8), byte(v)})
			addrs[i] = a
			fmt.Fprintf(&list, "%s\n", a)
			fmt.Fprintf(&restore, "add floor4 %s timeout 3600\n", a)
		}
		file := filepath.Join(dir, "list.txt")
		writeAtomic(b, file, list.String())
		if backend == "ipset" {
			if out, err := exec.Command("ipset", "create", "floor4", "hash:net", "timeout", "0", "maxelem", "1048576").CombinedOutput(); err != nil {
				b.Fatalf("ipset create: %v: %s", err, out)
			}
		}
		b.StartTimer()
		t0 := time.Now()
		out, code := cliTB(b, "ban", "-config", cfgPath, "-file", file, "-for", "1h")
		banner = append(banner, time.Since(t0))
		b.StopTimer()
		if code != 0 || !strings.Contains(out, fmt.Sprintf("banned %d,", n)) {
			b.Fatalf("ban -file: %d %s", code, out)
		}
		var got int
		if backend == "ipset" {
			t1 := time.Now()
			cmd := exec.Command("ipset", "restore")
			cmd.Stdin = strings.NewReader(restore.String())
			if out, err := cmd.CombinedOutput(); err != nil {
				b.Fatalf("ipset restore: %v: %s", err, out)
			}
			floor = append(floor, time.Since(t1))
			got = len(ipsetMembers(b, "banner4"))
			exec.Command("ipset", "destroy", "floor4").Run()
		} else {
			floor = append(floor, nftFloorLoad(b, addrs))
			got = nftSetLen(b, "banner", "banner4")
		}
		if got != n {
			b.Fatalf("kernel holds %d, want %d", got, n)
		}
		if out, code := cliTB(b, "unban", "-config", cfgPath, "-all"); code != 0 {
			b.Fatalf("unban -all: %s", out)
		}
		b.StartTimer()
	}
	med := func(d []time.Duration) float64 {
		s := slices.Clone(d)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[len(s)/2].Seconds()
	}
	ratios := make([]time.Duration, len(banner))
	for i := range banner {
		ratios[i] = time.Duration(float64(banner[i]) / float64(floor[i]) * 1e6)
	}
	b.ReportMetric(med(banner), "banner-s")
	b.ReportMetric(med(floor), "floor-s")
	b.ReportMetric(med(ratios)*1e3, "ratio")
	b.Logf("%s, rounds %d: banner %v, floor %v", backend, len(banner), banner, floor)
}

// nftFloorLoad adds addrs to a fresh timeout set of a table of its own in
// one netlink transaction (1,000 elements per message), timed from the
// first message to the kernel's answer to the commit, and deletes the table
// again (untimed).
func nftFloorLoad(b *testing.B, addrs []netip.Addr) time.Duration {
	b.Helper()
	// As banner's: a send buffer that holds the whole transaction.
	c, err := nftables.New(nftables.WithSockOptions(func(c *netlink.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 64<<20)
		}); err != nil {
			return err
		}
		return serr
	}))
	if err != nil {
		b.Fatal(err)
	}
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "floor"})
	set := &nftables.Set{Table: t, Name: "floor4", KeyType: nftables.TypeIPAddr, HasTimeout: true}
	if err := c.AddSet(set, nil); err != nil {
		b.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		b.Fatalf("nftables: making the floor's set: %v", err)
	}
	t0 := time.Now()
	for i := 0; i < len(addrs); i += 1000 {
		els := make([]nftables.SetElement, 0, 1000)
		for _, a := range addrs[i:min(i+1000, len(addrs))] {
			els = append(els, nftables.SetElement{Key: a.AsSlice(), Timeout: time.Hour})
		}
		if err := c.SetAddElements(set, els); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.Flush(); err != nil {
		b.Fatalf("nftables: the floor's load: %v", err)
	}
	d := time.Since(t0)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		b.Fatalf("nftables: deleting the floor's table: %v", err)
	}
	return d
}

// nftSetLen is how many elements the kernel's set holds, as nft lists
// them (google/nftables reads a dump in page-sized pieces: minutes for
// 100,000).
func nftSetLen(b *testing.B, table, set string) int {
	b.Helper()
	out, err := exec.Command("nft", "-j", "list", "set", "inet", table, set).Output()
	if err != nil {
		b.Fatalf("nft list set %s: %v", set, err)
	}
	return strings.Count(string(out), `{"elem":`)
}
