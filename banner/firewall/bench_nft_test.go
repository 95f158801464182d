package firewall

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/vethtest"
)

// The nftables benchmarks run each figure for the ipset backend and the
// nftables backend side by side (sub-benchmarks ipset and nftables), so one
// run compares them on the same machine. Interleaved rounds, as the README
// figures were made:
//
//	go test -c -o /tmp/firewall.test ./banner/firewall/
//	for i in 1 2 3 4 5; do
//	  unshare -n /tmp/firewall.test -test.run '^$' -test.benchtime 3x \
//	    -test.bench 'Benchmark(Load100k|Load100kNFTFile|Batch1k|Repair100k|List100k)$'
//	  unshare -n /tmp/firewall.test -test.run '^$' -test.benchtime 2000x \
//	    -test.bench 'BenchmarkConnect$'
//	done

var sideBySide = []string{BackendIPSet, BackendNFTables}

// BenchmarkLoad100k: Setup and one Add of 100,000 bans into empty sets, as
// the engine's Start does on a fresh boot.
func BenchmarkLoad100k(b *testing.B) {
	for _, backend := range sideBySide {
		b.Run(backend, func(b *testing.B) {
			requireBenchNS(b)
			ctx := context.Background()
			be := benchBackend(b, backend)
			es := benchEntries(100000, time.Hour)
			for b.Loop() {
				if err := be.Setup(ctx); err != nil {
					b.Fatal(err)
				}
				if err := be.Add(ctx, es); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				if got, err := be.List(ctx); err != nil || len(got) != len(es) {
					b.Fatalf("List after load: %d entries, %v", len(got), err)
				}
				if _, err := be.Teardown(ctx); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkLoad100kNFTFile: the same load through `nft -f` (what
// sigs.k8s.io/knftables does: it writes nft syntax to an nft process), into
// the nftables backend's table: the figure that decided for netlink.
func BenchmarkLoad100kNFTFile(b *testing.B) {
	requireBenchNS(b)
	ctx := context.Background()
	be := benchBackend(b, BackendNFTables)
	var buf strings.Builder
	buf.WriteString("add element inet banner banner4 { ")
	for i, e := range benchEntries(100000, time.Hour) {
		if i > 0 {
			buf.WriteString(", ")
		}
		buf.WriteString(e.Prefix.Addr().String() + " timeout 3600s")
	}
	buf.WriteString(" }\n")
	file := filepath.Join(b.TempDir(), "load.nft")
	if err := os.WriteFile(file, []byte(buf.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := be.Setup(ctx); err != nil {
			b.Fatal(err)
		}
		if out, err := exec.Command("nft", "-f", file).CombinedOutput(); err != nil {
			b.Fatalf("nft -f: %v: %s", err, out)
		}
		b.StopTimer()
		if _, err := be.Teardown(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkBatch1k: with 100,000 bans in the set, an Add of 1,000 new bans
// then a Remove of the same 1,000, each one call (one ipset restore, one
// nftables transaction). Reports the per-ban cost of each.
func BenchmarkBatch1k(b *testing.B) {
	for _, backend := range sideBySide {
		b.Run(backend, func(b *testing.B) {
			requireBenchNS(b)
			ctx := context.Background()
			be := benchBackend(b, backend)
			if err := be.Setup(ctx); err != nil {
				b.Fatal(err)
			}
			all := benchEntries(101000, time.Hour)
			if err := be.Add(ctx, all[:100000]); err != nil {
				b.Fatal(err)
			}
			batch := all[100000:]
			ps := make([]netip.Prefix, len(batch))
			for i, e := range batch {
				ps[i] = e.Prefix
			}
			var add, rm time.Duration
			for b.Loop() {
				t0 := time.Now()
				if err := be.Add(ctx, batch); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := be.Remove(ctx, ps); err != nil {
					b.Fatal(err)
				}
				add, rm = add+t1.Sub(t0), rm+time.Since(t1)
			}
			b.ReportMetric(float64(add.Nanoseconds())/float64(b.N*len(batch)), "add-ns/ban")
			b.ReportMetric(float64(rm.Nanoseconds())/float64(b.N*len(batch)), "remove-ns/ban")
		})
	}
}

// BenchmarkRepair100k: the ruleset is flushed under a running banner with
// 100,000 bans (`nft flush ruleset`; for ipset also the sets destroyed, as
// a restart of netfilter-persistent with ipset-persistent does, so both
// start from nothing), then timed: what the engine's reconcile does until
// every ban is enforced again (Repair, List, Add of the missing ones).
func BenchmarkRepair100k(b *testing.B) {
	for _, backend := range sideBySide {
		b.Run(backend, func(b *testing.B) {
			requireBenchNS(b)
			ctx := context.Background()
			be := benchBackend(b, backend)
			if err := be.Setup(ctx); err != nil {
				b.Fatal(err)
			}
			es := benchEntries(100000, time.Hour)
			if err := be.Add(ctx, es); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				b.StopTimer()
				if out, err := exec.Command("nft", "flush", "ruleset").CombinedOutput(); err != nil {
					b.Fatalf("nft flush ruleset: %v: %s", err, out)
				}
				if backend == BackendIPSet {
					for _, s := range []string{"banner4", "banner6"} {
						if out, err := exec.Command("ipset", "destroy", s).CombinedOutput(); err != nil {
							b.Fatalf("ipset destroy %s: %v: %s", s, err, out)
						}
					}
				}
				b.StartTimer()
				if made, err := be.Repair(ctx); err != nil || len(made) == 0 {
					b.Fatalf("Repair = %q, %v", made, err)
				}
				got, err := be.List(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if len(got) != 0 {
					b.Fatalf("List after flush: %d entries", len(got))
				}
				if err := be.Add(ctx, es); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkConnect: TCP connects over a veth pair to port 25 from a client
// that is not banned, with no ban and with 100,000 bans in the set: every
// SYN to port 25 goes through the set lookup, so the difference is the
// lookup's cost. (Each connect also enters the client namespace on a fresh
// thread: that overhead is the same in every case.)
func BenchmarkConnect(b *testing.B) {
	requireBenchNS(b)
	pair := vethtest.New(b, netip.MustParsePrefix("10.254.0.1/24"), netip.MustParsePrefix("10.254.0.2/24"))
	ln, err := net.Listen("tcp", "10.254.0.1:25")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	src, dst := netip.MustParseAddr("10.254.0.2"), netip.MustParseAddrPort("10.254.0.1:25")
	dial := func(b *testing.B) {
		if err := pair.Dial(src, dst, 5*time.Second); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("no-firewall", func(b *testing.B) {
		for b.Loop() {
			dial(b)
		}
	})
	ctx := context.Background()
	for _, backend := range sideBySide {
		for _, n := range []int{0, 100000} {
			name := backend + "/bans=0"
			if n > 0 {
				name = backend + "/bans=100k"
			}
			b.Run(name, func(b *testing.B) {
				be := benchBackend(b, backend)
				if err := be.Setup(ctx); err != nil {
					b.Fatal(err)
				}
				if n > 0 {
					if err := be.Add(ctx, benchEntries(n, time.Hour)); err != nil {
						b.Fatal(err)
					}
				}
				for b.Loop() {
					dial(b)
				}
				b.StopTimer()
				if _, err := be.Teardown(ctx); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// BenchmarkList100k: List of sets holding 100,000 bans, what every
// reconcile reads.
func BenchmarkList100k(b *testing.B) {
	for _, backend := range sideBySide {
		b.Run(backend, func(b *testing.B) {
			requireBenchNS(b)
			ctx := context.Background()
			be := benchBackend(b, backend)
			if err := be.Setup(ctx); err != nil {
				b.Fatal(err)
			}
			if err := be.Add(ctx, benchEntries(100000, time.Hour)); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				got, err := be.List(ctx)
				if err != nil || len(got) != 100000 {
					b.Fatalf("List: %d entries, %v", len(got), err)
				}
			}
		})
	}
}
