package engine

import (
	"context"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/internal/testenv"
)

func TestBanTimeJitter(t *testing.T) {
	ctx := context.Background()
	scoreBan := func(t *testing.T, e *Engine, a netip.Addr) banner.Ban {
		t.Helper()
		for _, k := range []string{"a", "b"} {
			e.Report(banner.Event{Addr: a, Kind: banner.KindUnknownUser, Source: banner.SourceLog, Key: k})
		}
		e.sync(t)
		b, ok := e.Banned(a)
		if !ok {
			t.Fatalf("%v not banned", a)
		}
		return b
	}
	t.Run("fixed rand", func(t *testing.T) {
		c := newClock()
		cfg := testConfig(c)
		cfg.BanTimeJitter = 10 * time.Minute
		cfg.Rand = func() float64 { return 0.5 }
		e := startEngine(t, cfg, nil, nil)
		b := scoreBan(t, e, netip.MustParseAddr("192.0.2.1"))
		if got, want := b.Until.Sub(b.Since), cfg.BanTime+5*time.Minute; got != want {
			t.Errorf("scored ban lasts %v, want bantime + half the jitter = %v", got, want)
		}
		m, err := e.Ban(ctx, netip.MustParsePrefix("192.0.2.2/32"), 0, "default length")
		if err != nil || m.Until.Sub(m.Since) != cfg.BanTime+5*time.Minute {
			t.Errorf("manual ban without -for: %v, %v; want the jitter too", m.Until.Sub(m.Since), err)
		}
		f, err := e.Ban(ctx, netip.MustParsePrefix("192.0.2.3/32"), 2*time.Hour, "given")
		if err != nil || f.Until.Sub(f.Since) != 2*time.Hour {
			t.Errorf("manual ban -for 2h: %v, %v; want exactly 2h", f.Until.Sub(f.Since), err)
		}
	})
	t.Run("after the maxtime cap", func(t *testing.T) {
		c := newClock()
		cfg := testConfig(c)
		cfg.MaxTime = cfg.BanTime
		cfg.BanTimeJitter = time.Hour
		cfg.Rand = func() float64 { return 0.9999 }
		e := startEngine(t, cfg, nil, nil)
		b := scoreBan(t, e, netip.MustParseAddr("192.0.2.1"))
		if got, want := b.Until.Sub(b.Since), cfg.MaxTime+59*time.Minute+59*time.Second; got != want {
			t.Errorf("capped ban lasts %v, want maxtime + jitter %v", got, want)
		}
	})
	t.Run("random", func(t *testing.T) {
		c := newClock()
		cfg := testConfig(c)
		cfg.BanTimeJitter = time.Hour
		e := startEngine(t, cfg, nil, nil)
		lengths := map[time.Duration]bool{}
		for i := range 20 {
			b := scoreBan(t, e, netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}))
			d := b.Until.Sub(b.Since)
			if d < cfg.BanTime || d >= cfg.BanTime+cfg.BanTimeJitter || d%time.Second != 0 {
				t.Errorf("ban lasts %v: want whole seconds in [bantime, bantime+jitter)", d)
			}
			lengths[d] = true
		}
		if len(lengths) < 10 {
			t.Errorf("20 bans had only %d distinct lengths: %v", len(lengths), lengths)
		}
	})
	t.Run("off and Simulate", func(t *testing.T) {
		c := newClock()
		cfg := testConfig(c)
		e := startEngine(t, cfg, nil, nil)
		if b := scoreBan(t, e, netip.MustParseAddr("192.0.2.1")); b.Until.Sub(b.Since) != cfg.BanTime {
			t.Errorf("jitter off: %v", b.Until.Sub(b.Since))
		}
		cfg.BanTimeJitter = time.Hour
		now := c.Now()
		bans := Simulate(cfg, []banner.Event{
			{Addr: netip.MustParseAddr("192.0.2.9"), Kind: banner.KindUnknownUser, Key: "a", Time: now},
			{Addr: netip.MustParseAddr("192.0.2.9"), Kind: banner.KindUnknownUser, Key: "b", Time: now},
		})
		if len(bans) != 1 || bans[0].Until.Sub(bans[0].Since) != cfg.BanTime {
			t.Errorf("Simulate: %+v; want one ban of bantime, no jitter", bans)
		}
	})
	t.Run("validate", func(t *testing.T) {
		cfg := DefaultConfig()
		for _, j := range []time.Duration{-time.Second, 8 * 24 * time.Hour} {
			cfg.BanTimeJitter = j
			if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "bantime_jitter") {
				t.Errorf("jitter %v: %v", j, err)
			}
		}
	})
}

// TestIntegrationJitterKernelTimeout: the kernel's timeout of a jittered
// ban is the ban's length, jitter included (ipset in a namespace).
func TestIntegrationJitterKernelTimeout(t *testing.T) {
	if testenv.RunInNetNS(t, "ipset", "iptables") {
		return
	}
	cfg := DefaultConfig()
	cfg.Logger = quiet
	cfg.ReconcileInterval = 0
	cfg.MaxRetry = 1
	cfg.BanTimeJitter = 30 * time.Minute
	cfg.Rand = func() float64 { return 0.5 }
	e := startEngine(t, cfg, nil, realFirewall(t, firewall.BackendIPSet))
	a := netip.MustParseAddr("198.51.100.20")
	e.Report(banner.Event{Addr: a, Kind: banner.KindPattern, Source: banner.SourceLog})
	waitFor(t, "the ban in the kernel", 5*time.Second, func() bool { return kernelHas(t, firewall.BackendIPSet, netip.PrefixFrom(a, 32)) })
	for _, line := range strings.Split(run(t, "ipset", "list", "banner4"), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == a.String() && f[1] == "timeout" {
			secs, _ := strconv.Atoi(f[2])
			want := int((cfg.BanTime + 15*time.Minute) / time.Second)
			if secs > want || secs < want-5 {
				t.Errorf("kernel timeout %ds, want about %d (bantime + jitter)", secs, want)
			}
			return
		}
	}
	t.Errorf("no timeout for %v in:\n%s", a, run(t, "ipset", "list", "banner4"))
}
