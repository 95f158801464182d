package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/control"
	"github.com/banner-mta/banner/internal/testenv"
	"github.com/banner-mta/banner/internal/vethtest"
)

// BenchmarkBanCLI measures one `banner ban -for 1h IP` as a whole process
// (the real binary: process start, flags, configuration, one control
// request; the daemon's store transaction, fsynced, and its netlink add)
// against the floor, `ipset -exist add SET IP timeout 3600` into a set of
// the same type in the same namespace, in turn, one pair per round, each
// round a new address. To tell where banner's time goes, each round also
// times the parts: the same ban request sent from this process
// (control-ban: the daemon's side alone, socket, store with its fsync,
// netlink), `banner version` (process start and package inits of the
// banner binary, no configuration, no socket), a minimal Go program's
// start (hello), and write+fdatasync twice of a 4 KiB page on the store's
// file system (what a bbolt commit pays at least: data, then meta), and
// testdata/minictl, the same ban from a binary linking only the control
// client (what a small CLI binary would cost). The
// floor does no fsync; banner must (a ban is durable before the CLI is
// told it is done). Medians are reported, and the median of the per-round
// banner/ipset ratios. BANNER_BIN names a built banner (else it is built
// into a temporary directory). Run as root in a private namespace,
// e.g. with .ci/ban-cli-bench:
//
//	go test -c -o /tmp/banner.test ./cmd/banner/
//	unshare -n -m sh -c 'ip link set lo up; nice -n -15 /tmp/banner.test -test.run "^$" -test.bench BanCLI -test.benchtime 21x'
func BenchmarkBanCLI(b *testing.B) {
	testenv.RequireRoot(b)
	testenv.RequireCommands(b, "ipset", "iptables", "go")
	if !vethtest.PrivateNetNS() {
		b.Skip("changes the firewall: run inside a private namespace (see the comment)")
	}
	dir := b.TempDir()
	bin := os.Getenv("BANNER_BIN")
	if bin == "" {
		bin = filepath.Join(dir, "banner")
		if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
			b.Fatalf("go build: %v: %s", err, out)
		}
	}
	hello := buildHello(b, dir)
	mini := filepath.Join(dir, "minictl")
	if out, err := exec.Command("go", "build", "-o", mini, "./testdata/minictl").CombinedOutput(); err != nil {
		b.Fatalf("go build minictl: %v: %s", err, out)
	}
	cfgPath := startBulkDaemon(b, dir, "")
	sock := filepath.Join(dir, "banner.sock")
	if out, err := exec.Command("ipset", "create", "floor4", "hash:net", "family", "inet", "timeout", "0", "maxelem", "1048576").CombinedOutput(); err != nil {
		b.Fatalf("ipset create: %v: %s", err, out)
	}
	b.Cleanup(func() { exec.Command("ipset", "destroy", "floor4").Run() })
	syncFile, err := os.OpenFile(filepath.Join(dir, "sync"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		b.Fatal(err)
	}
	defer syncFile.Close()
	page := make([]byte, 4096)

	timeCmd := func(name string, args ...string) time.Duration {
		b.Helper()
		t0 := time.Now()
		out, err := exec.Command(name, args...).CombinedOutput()
		d := time.Since(t0)
		if err != nil {
			b.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return d
	}
	addr := func(net byte, i int) string {
		return netip.AddrFrom4([4]byte{10, net, byte(i >> 8), byte(i)}).String()
	}
	// Warm up (page cache, the daemon's first reconcile), not counted.
	for i := range 3 {
		timeCmd(bin, "ban", "-config", cfgPath, "-for", "1h", addr(4, i))
		timeCmd("ipset", "-exist", "add", "floor4", addr(5, i), "timeout", "3600")
		timeCmd(bin, "version")
		timeCmd(hello)
		timeCmd(mini, sock, addr(6, i), "1h")
	}
	var cli, floor, ctl, version, start, fsync, ratio, small []time.Duration
	round := 0
	for b.Loop() {
		round++
		// A then B, in turn; the parts after.
		c := timeCmd(bin, "ban", "-config", cfgPath, "-for", "1h", addr(1, round))
		f := timeCmd("ipset", "-exist", "add", "floor4", addr(2, round), "timeout", "3600")
		cli, floor = append(cli, c), append(floor, f)
		ratio = append(ratio, time.Duration(float64(c)/float64(f)*1000))

		b.StopTimer()
		t0 := time.Now()
		resp, err := control.Do(context.Background(), sock, control.Request{Cmd: control.CmdBan, Prefix: addr(3, round), For: "1h0m0s", Reason: "bench"})
		ctl = append(ctl, time.Since(t0))
		if err != nil || resp.Ban == nil || resp.Ban.Already {
			b.Fatalf("control ban: %v %+v", err, resp)
		}
		version = append(version, timeCmd(bin, "version"))
		start = append(start, timeCmd(hello))
		small = append(small, timeCmd(mini, sock, addr(7, round), "1h"))
		t0 = time.Now()
		for range 2 {
			if _, err := syncFile.WriteAt(page, 0); err != nil {
				b.Fatal(err)
			}
			if err := syncFile.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		fsync = append(fsync, time.Since(t0))
		b.StartTimer()
	}
	if !ipsetHas("banner4", addr(1, round)) || !ipsetHas("floor4", addr(2, round)) {
		b.Fatal("last round's bans are not in the kernel")
	}
	med := func(d []time.Duration) time.Duration {
		s := slices.Clone(d)
		slices.Sort(s)
		return s[len(s)/2]
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(med(cli)), "banner-ms")
	b.ReportMetric(ms(med(floor)), "ipset-ms")
	b.ReportMetric(float64(med(ratio))/1000, "ratio")
	b.ReportMetric(ms(med(ctl)), "control-ban-ms")
	b.ReportMetric(ms(med(version)), "banner-version-ms")
	b.ReportMetric(ms(med(start)), "hello-ms")
	b.ReportMetric(ms(med(fsync)), "2fsync-ms")
	b.ReportMetric(ms(med(small)), "minictl-ms")
	b.Logf("%d rounds (ms): banner %v; ipset %v; control-ban %v; banner version %v; hello %v; 2 fsyncs %v; minictl %v",
		round, msList(cli), msList(floor), msList(ctl), msList(version), msList(start), msList(fsync), msList(small))
}

// buildHello builds the smallest Go program (it exits at once) into dir:
// the floor of a Go process's start on this machine.
func buildHello(b *testing.B, dir string) string {
	b.Helper()
	src := filepath.Join(dir, "hello")
	if err := os.MkdirAll(src, 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.24\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(src, "hello")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build hello: %v: %s", err, out)
	}
	return bin
}

func msList(ds []time.Duration) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
	}
	return "[" + strings.Join(s, " ") + "]"
}
