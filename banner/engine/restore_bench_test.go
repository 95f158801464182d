package engine

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/store"
	"github.com/banner-mta/banner/internal/testenv"
	"github.com/banner-mta/banner/internal/vethtest"
)

// The restore benchmarks put banner's Start beside the kernel tool doing
// the same work (the floor) in the same run: each round runs banner's
// cases and the floor's in turn, so -count N interleaves them. They change
// the firewall, so they run only as root in a private network namespace:
//
//	go test -c -o /tmp/engine.test ./banner/engine/
//	unshare -n -m /tmp/engine.test -test.run '^$' -test.bench 'Restart100k' -test.benchtime 5x

// restartN is the number of bans; BANNER_BENCH_BANS overrides it.
var restartN = 100_000

func init() {
	if n, err := strconv.Atoi(os.Getenv("BANNER_BENCH_BANS")); err == nil && n > 0 {
		restartN = n
	}
}

// benchFirewall is a real backend with a command timeout long enough for
// listings of 100k rules on a loaded machine.
func benchFirewall(b *testing.B, backend string) firewall.Backend {
	b.Helper()
	cfg := firewall.DefaultConfig()
	cfg.Backend = backend
	cfg.Logger = quiet
	cfg.CommandTimeout = 2 * time.Minute
	fw, err := firewall.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return fw
}

func requireFirewallNS(b *testing.B, cmds ...string) {
	b.Helper()
	testenv.RequireRoot(b)
	testenv.RequireCommands(b, cmds...)
	if !vethtest.PrivateNetNS() {
		b.Skip("changes the firewall: run inside a private namespace, e.g. " +
			"unshare -n -m /tmp/engine.test -test.run '^$' -test.bench Restart100k")
	}
}

// restartStore returns a store file holding n live bans of 10.0.0.0/8
// hosts, with a history record each (as the engine writes them).
func restartStore(b *testing.B, n int) string {
	b.Helper()
	path := filepath.Join(b.TempDir(), "banner.db")
	st, err := store.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	bans := make([]store.Ban, n)
	hist := make([]store.History, n)
	for i := range bans {
		p := netip.PrefixFrom(addr4(i+1), 32)
		bans[i] = store.Ban{Prefix: p, Since: now, Until: now.Add(2 * time.Hour), Count: 1, Reason: "bench", Source: "log", Kind: "pattern"}
		hist[i] = store.History{Prefix: p, Count: 1, LastEnd: now.Add(2 * time.Hour)}
	}
	if err := st.PutBans(bans, hist); err != nil {
		b.Fatal(err)
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	return path
}

// startOnce opens the store, starts an engine over it and fw, and closes
// both; it returns the time from the store's open to Start's return.
func startOnce(b *testing.B, path string, fw firewall.Backend) time.Duration {
	b.Helper()
	cfg := DefaultConfig()
	cfg.Logger = quiet
	if os.Getenv("BANNER_BENCH_LOG") == "1" {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	cfg.ReconcileInterval = 0
	t0 := time.Now()
	st, err := store.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	e, err := New(cfg, st, fw)
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	took := time.Since(t0)
	e.Close()
	st.Close()
	return took
}

func runTool(b *testing.B, stdin []byte, name string, args ...string) time.Duration {
	b.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	t0 := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
	return time.Since(t0)
}

// rounds collects one duration per case and round and reports each case's
// median in ms and each banner case's ratio to the floor's median.
type rounds map[string][]time.Duration

func (r rounds) report(b *testing.B, floor string) {
	med := func(d []time.Duration) float64 {
		d = slices.Clone(d)
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	f := med(r[floor])
	for name, d := range r {
		m := med(d)
		b.ReportMetric(m, name+"-ms")
		if name != floor {
			b.ReportMetric(m/f, name+"/floor")
		}
		b.Logf("%s: %v", name, d)
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkRestart100kIPSet: banner's Start with 100k stored bans into an
// empty ipset (sets and chain absent) and with the 100k already in the
// kernel, beside the floor: one `ipset restore` creating a set and adding
// the same 100k entries. Each iteration is one round of the three, in
// turn; the medians and ratios are reported (-test.benchtime 5x: 5 rounds).
func BenchmarkRestart100kIPSet(b *testing.B) {
	requireFirewallNS(b, "ipset", "iptables", "iptables-restore")
	path := restartStore(b, restartN)
	fw := benchFirewall(b, firewall.BackendIPSet)
	ctx := context.Background()
	var floor bytes.Buffer
	floor.WriteString("create floor4 hash:net family inet hashsize 1024 maxelem 1048576 timeout 0\n")
	for i := range restartN {
		fmt.Fprintf(&floor, "add floor4 %s timeout 7200\n", addr4(i+1))
	}
	r := rounds{}
	for b.Loop() {
		if _, err := fw.Teardown(ctx); err != nil {
			b.Fatal(err)
		}
		r["banner-empty"] = append(r["banner-empty"], startOnce(b, path, fw))
		r["banner-full"] = append(r["banner-full"], startOnce(b, path, fw))
		_ = exec.Command("ipset", "destroy", "floor4").Run()
		r["floor"] = append(r["floor"], runTool(b, floor.Bytes(), "ipset", "restore"))
		_ = exec.Command("ipset", "destroy", "floor4").Run()
	}
	r.report(b, "floor")
	if _, err := fw.Teardown(ctx); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRestart100kIPTables: banner's Start with 100k stored bans and
// their 100k rules already in the chain (iptables backend), beside the
// floor: one `iptables-restore --noflush` loading 100k DROP rules into an
// empty chain. Rounds as in BenchmarkRestart100kIPSet.
func BenchmarkRestart100kIPTables(b *testing.B) {
	requireFirewallNS(b, "iptables", "iptables-restore")
	path := restartStore(b, restartN)
	fw := benchFirewall(b, firewall.BackendIPTables)
	ctx := context.Background()
	var floor bytes.Buffer
	floor.WriteString("*filter\n:FLOOR - [0:0]\n")
	for i := range restartN {
		fmt.Fprintf(&floor, "-A FLOOR -s %s/32 -j DROP\n", addr4(i+1))
	}
	floor.WriteString("COMMIT\n")
	startOnce(b, path, fw) // fills the chain
	r := rounds{}
	for b.Loop() {
		r["banner-full"] = append(r["banner-full"], startOnce(b, path, fw))
		_ = exec.Command("iptables", "-w", "-F", "FLOOR").Run()
		_ = exec.Command("iptables", "-w", "-X", "FLOOR").Run()
		r["floor"] = append(r["floor"], runTool(b, floor.Bytes(), "iptables-restore", "-w", "--noflush"))
		_ = exec.Command("iptables", "-w", "-F", "FLOOR").Run()
		_ = exec.Command("iptables", "-w", "-X", "FLOOR").Run()
	}
	r.report(b, "floor")
	if _, err := fw.Teardown(ctx); err != nil {
		b.Fatal(err)
	}
}

// memChildEnv names the store TestMemoryChild starts an engine over.
const memChildEnv = "BANNER_MEM_CHILD"

// TestMemoryChild is BenchmarkMemoryPerBan's child process: it starts an
// engine over the store named by BANNER_MEM_CHILD (no firewall) and prints
// the process's anonymous resident memory and live heap. It does nothing
// otherwise.
func TestMemoryChild(t *testing.T) {
	path := os.Getenv(memChildEnv)
	if path == "" {
		t.Skip("BenchmarkMemoryPerBan's child process")
	}
	cfg := DefaultConfig()
	cfg.Logger = quiet
	cfg.ReconcileInterval = 0
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	e, err := New(cfg, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // Start's FreeOSMemory runs in the background
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc/self/status")
	}
	for _, l := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(l, "RssAnon:"); ok {
			fmt.Printf("MEM %s %d %d\n", strings.Fields(v)[0], ms.HeapAlloc, e.Stats().ActiveBans)
		}
	}
	e.Close()
	st.Close()
}

// BenchmarkMemoryPerBan: the memory an engine holds per active ban, with
// 100k bans (and their history records) restored from the store and no
// firewall, each measured in a fresh child process (TestMemoryChild)
// against the same engine over an empty store: anonymous resident memory
// (anon-B/ban, what RSS shows of it) and live heap after a GC
// (heap-B/ban). -benchtime 3x gives three rounds; the figures are medians.
func BenchmarkMemoryPerBan(b *testing.B) {
	path := restartStore(b, restartN)
	empty := filepath.Join(b.TempDir(), "empty.db")
	child := func(path string) (anon, heap int64) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMemoryChild$", "-test.v")
		cmd.Env = append(os.Environ(), memChildEnv+"="+path)
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("child: %v: %s", err, out)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) == 4 && f[0] == "MEM" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				heap, _ = strconv.ParseInt(f[2], 10, 64)
				return kb * 1024, heap
			}
		}
		b.Fatalf("child printed no figures: %s", out)
		return 0, 0
	}
	var anon, heap []float64
	for b.Loop() {
		a0, h0 := child(empty)
		a1, h1 := child(path)
		anon = append(anon, float64(a1-a0)/float64(restartN))
		heap = append(heap, float64(h1-h0)/float64(restartN))
	}
	slices.Sort(anon)
	slices.Sort(heap)
	b.ReportMetric(anon[len(anon)/2], "anon-B/ban")
	b.ReportMetric(heap[len(heap)/2], "heap-B/ban")
	b.ReportMetric(0, "ns/op")
}
