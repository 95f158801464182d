package engine

import (
	"context"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/fleet"
	"github.com/banner-mta/banner/internal/testenv"
)

// benchRedis starts an empty redis-server (no persistence) on a free
// loopback port and returns its URL.
func benchRedis(b *testing.B) string {
	b.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		b.Skip("redis-server not installed")
	}
	addr := testenv.FreeAddr(b)
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", "")
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("redis-server did not start")
		}
	}
	return "redis://" + addr + "/0"
}

// fleetEngine is an engine with a store and no firewall, joined to the
// fleet at url as node name.
func fleetEngine(b *testing.B, url, name string) *Engine {
	b.Helper()
	n, err := fleet.New(fleet.Config{URL: url, Node: name, PollTimeout: 100 * time.Millisecond, Logger: quiet}, fleet.Cursor{})
	if err != nil {
		b.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Logger = quiet
	cfg.ReconcileInterval = 0
	cfg.Fleet = n
	e := startEngine(b, cfg, openStore(b, ""), nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx, e.FleetSink(fleet.CursorName(""))); close(done) }()
	b.Cleanup(func() { cancel(); <-done; n.Close() })
	for deadline := time.Now().Add(10 * time.Second); !n.Stats().Connected; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("fleet node did not connect")
		}
	}
	return e
}

func benchAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

// BenchmarkFleetPropagation: bans decided on one node (immediate bans
// from log events, as a burst) until both other nodes hold them all, over
// a real redis-server on loopback. ns/op is per ban; bans/s the rate.
func BenchmarkFleetPropagation(b *testing.B) {
	url := benchRedis(b)
	a, x, y := fleetEngine(b, url, "a"), fleetEngine(b, url, "b"), fleetEngine(b, url, "c")
	ctx := context.Background()
	base := 0
	b.ResetTimer()
	for b.Loop() {
		const burst = 1000
		start := time.Now()
		evs := make([]banner.Event, burst)
		for i := range evs {
			evs[i] = banner.Event{Addr: benchAddr(base + i), Kind: banner.KindPattern, Source: banner.SourceLog, BanFor: time.Hour, Reason: "bench"}
		}
		base += burst
		if err := a.Ingest(ctx, evs, nil); err != nil {
			b.Fatal(err)
		}
		for x.Stats().ActiveBans < base || y.Stats().ActiveBans < base {
			time.Sleep(100 * time.Microsecond)
			if time.Since(start) > time.Minute {
				b.Fatalf("propagation stalled: %d and %d of %d", x.Stats().ActiveBans, y.Stats().ActiveBans, base)
			}
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(base)/b.Elapsed().Seconds(), "bans/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(base), "ns/ban")
}

// BenchmarkFleetLatency: one ban at a time by hand on one node, timed
// from the call until another node enforces it (its Banned sees it); p50
// and p99 over the run. The ban call itself includes the store's fsync.
func BenchmarkFleetLatency(b *testing.B) {
	url := benchRedis(b)
	a, x := fleetEngine(b, url, "a"), fleetEngine(b, url, "b")
	fleetEngine(b, url, "c")
	ctx := context.Background()
	var lat []time.Duration
	i := 0
	for b.Loop() {
		i++
		addr := benchAddr(1<<20 + i)
		start := time.Now()
		if _, err := a.Ban(ctx, netip.PrefixFrom(addr, 32), time.Hour, "bench"); err != nil {
			b.Fatal(err)
		}
		for {
			if _, ok := x.Banned(addr); ok {
				break
			}
			if time.Since(start) > 10*time.Second {
				b.Fatal("ban did not propagate")
			}
			time.Sleep(20 * time.Microsecond)
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}
