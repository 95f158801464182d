package firewall

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/testenv"
	"github.com/banner-mta/banner/internal/vethtest"
)

// The benchmarks change the firewall, so they refuse to run outside a
// private network namespace. Run them as root with:
//
//	go test -c -o /tmp/firewall.test ./banner/firewall/
//	unshare -n /tmp/firewall.test -test.run '^$' -test.bench . -test.benchtime 3x

func requireBenchNS(b *testing.B) {
	b.Helper()
	testenv.RequireRoot(b)
	testenv.RequireCommands(b, fwCommands...)
	if !vethtest.PrivateNetNS() {
		b.Skip("changes the firewall: run inside a private namespace, e.g. " +
			"unshare -n /tmp/firewall.test -test.run '^$' -test.bench .")
	}
}

// benchEntries returns n distinct IPv4 host entries in 10.0.0.0/8.
func benchEntries(n int, timeout time.Duration) []Entry {
	es := make([]Entry, n)
	for i := range es {
		v := uint32(i + 1)
		a := netip.AddrFrom4([4]byte{10, byte(v >> 16), byte(v >> 8), byte(v)})
		es[i] = Entry{Prefix: netip.PrefixFrom(a, 32), Timeout: timeout}
	}
	return es
}

func benchBackend(b *testing.B, backend string) Backend {
	b.Helper()
	be := newBackend(b, backend, func(c *Config) { c.CommandTimeout = time.Minute })
	b.Cleanup(func() { _, _ = be.Teardown(context.Background()) })
	return be
}

// BenchmarkIPSetSetupAdd100k: Setup plus one Add batch of 100,000 entries.
func BenchmarkIPSetSetupAdd100k(b *testing.B) {
	requireBenchNS(b)
	ctx := context.Background()
	be := benchBackend(b, BackendIPSet)
	es := benchEntries(100000, time.Hour)
	for b.Loop() {
		if err := be.Setup(ctx); err != nil {
			b.Fatal(err)
		}
		if err := be.Add(ctx, es); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := be.Teardown(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkIPSetList100k: List of a set holding 100,000 entries.
func BenchmarkIPSetList100k(b *testing.B) {
	requireBenchNS(b)
	ctx := context.Background()
	be := benchBackend(b, BackendIPSet)
	if err := be.Setup(ctx); err != nil {
		b.Fatal(err)
	}
	if err := be.Add(ctx, benchEntries(100000, time.Hour)); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		got, err := be.List(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != 100000 {
			b.Fatalf("List returned %d entries", len(got))
		}
	}
}

// burst adds n entries in batches of size and reports the amortised cost
// per ban and the median batch latency.
func burst(b *testing.B, backend string, n, size int) {
	requireBenchNS(b)
	ctx := context.Background()
	be := benchBackend(b, backend)
	es := benchEntries(n, time.Hour)
	var lat []time.Duration
	var total time.Duration
	for b.Loop() {
		b.StopTimer()
		_, _ = be.Teardown(ctx)
		if err := be.Setup(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		for i := 0; i < len(es); i += size {
			t0 := time.Now()
			if err := be.Add(ctx, es[i:min(i+size, len(es))]); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(t0))
		}
		total += time.Since(start)
	}
	slices.Sort(lat)
	p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N*len(es)), "ns/ban")
	b.ReportMetric(float64(p50.Nanoseconds())/float64(size), "p50-ns/ban")
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms/batch")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms/batch")
}

// BenchmarkIPSetBurst10k: 10,000 bans issued as batches of 256.
func BenchmarkIPSetBurst10k(b *testing.B) { burst(b, BackendIPSet, 10000, 256) }

// BenchmarkIPSetBurst1kSingle: 1,000 bans issued one at a time (one ipset
// process each), for comparison.
func BenchmarkIPSetBurst1kSingle(b *testing.B) { burst(b, BackendIPSet, 1000, 1) }

// BenchmarkIPTablesBurst10k: 10,000 bans as batches of 256 with the
// iptables backend (each batch lists the chain to skip existing rules).
func BenchmarkIPTablesBurst10k(b *testing.B) { burst(b, BackendIPTables, 10000, 256) }

// BenchmarkIPTablesSetupAdd10k: Setup plus one Add batch of 10,000 rules
// through iptables-restore.
func BenchmarkIPTablesSetupAdd10k(b *testing.B) {
	requireBenchNS(b)
	ctx := context.Background()
	be := benchBackend(b, BackendIPTables)
	es := benchEntries(10000, 0)
	for b.Loop() {
		if err := be.Setup(ctx); err != nil {
			b.Fatal(err)
		}
		if err := be.Add(ctx, es); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if _, err := be.Teardown(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkIPTablesListRemove10k: List then Remove of 10,000 rules.
func BenchmarkIPTablesListRemove10k(b *testing.B) {
	requireBenchNS(b)
	ctx := context.Background()
	be := benchBackend(b, BackendIPTables)
	es := benchEntries(10000, 0)
	ps := make([]netip.Prefix, len(es))
	for i, e := range es {
		ps[i] = e.Prefix
	}
	if err := be.Setup(ctx); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.StopTimer()
		if err := be.Add(ctx, es); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		got, err := be.List(ctx)
		if err != nil || len(got) != len(es) {
			b.Fatalf("List: %d entries, %v", len(got), err)
		}
		if err := be.Remove(ctx, ps); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSwitchToIPSet2k: the first ipset-backend Setup after the
// iptables backend left 2,000 per-ban rules in the chain (backend switched
// without banner teardown): it removes them all before the daemon goes on.
func BenchmarkSwitchToIPSet2k(b *testing.B) {
	requireBenchNS(b)
	ctx := context.Background()
	es := benchEntries(2000, 0)
	for b.Loop() {
		b.StopTimer()
		old := benchBackend(b, BackendIPTables)
		if err := old.Setup(ctx); err != nil {
			b.Fatal(err)
		}
		if err := old.Add(ctx, es); err != nil {
			b.Fatal(err)
		}
		be := benchBackend(b, BackendIPSet)
		b.StartTimer()
		if err := be.Setup(ctx); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if st := be.Stats(); st.HookRepairs == 0 {
			b.Fatalf("no foreign rules removed: %+v", st)
		}
		if _, err := be.Teardown(ctx); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
