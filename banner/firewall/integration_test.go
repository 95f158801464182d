package firewall

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/testenv"
)

// Integration tests: real iptables, ip6tables and ipset inside a private
// network namespace (testenv.RunInNetNS). Nothing touches the host.

var fwCommands = []string{"iptables", "ip6tables", "ipset", "iptables-restore", "ip6tables-restore"}

func sh(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// shOK runs a command and reports whether it succeeded.
func shOK(name string, args ...string) bool { return exec.Command(name, args...).Run() == nil }

func newBackend(t testing.TB, backend string, modify func(*Config)) Backend {
	t.Helper()
	cfg := DefaultConfig()
	cfg.Backend = backend
	cfg.SASLPorts = nil // the main group alone, unless modify sets it
	if modify != nil {
		modify(&cfg)
	}
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jumps returns the INPUT rules of cmd that jump to BANNER, and the position
// of the first.
func jumps(t testing.TB, cmd string) ([]string, int) {
	t.Helper()
	var js []string
	pos, first := 0, 0
	for _, l := range strings.Split(sh(t, cmd, "-S", "INPUT"), "\n") {
		if !strings.HasPrefix(l, "-A INPUT ") {
			continue
		}
		pos++
		if strings.HasSuffix(l, " -j BANNER") {
			js = append(js, l)
			if first == 0 {
				first = pos
			}
		}
	}
	return js, first
}

// jumpRule is the INPUT jump as iptables -S prints it for ports and drop.
func jumpRule(ports, drop string) string {
	if drop == DropAll {
		return "-A INPUT -p tcp -m multiport --dports " + ports + " -j BANNER"
	}
	return "-A INPUT -p tcp -m multiport --dports " + ports + " -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j BANNER"
}

// checkJump checks that INPUT holds exactly one jump to BANNER, at position
// 1, for ports in the default drop mode ("new").
func checkJump(t testing.TB, ports string) {
	t.Helper()
	checkJumpDrop(t, ports, DropNew)
}

func checkJumpDrop(t testing.TB, ports, drop string) {
	t.Helper()
	for _, cmd := range []string{"iptables", "ip6tables"} {
		js, pos := jumps(t, cmd)
		want := jumpRule(ports, drop)
		if len(js) != 1 || js[0] != want || pos != 1 {
			t.Errorf("%s INPUT jumps = %q at position %d, want exactly %q at 1", cmd, js, pos, want)
		}
	}
}

// chainLines returns the -A lines of BANNER for cmd.
func chainLines(t testing.TB, cmd string) []string {
	t.Helper()
	var ls []string
	for _, l := range strings.Split(sh(t, cmd, "-S", "BANNER"), "\n") {
		if strings.HasPrefix(l, "-A ") {
			ls = append(ls, l)
		}
	}
	return ls
}

// kernelBans returns the bans as the kernel tools show them, one string per
// entry/rule: for ipset the save lines without timeouts, for iptables the
// DROP rules.
func kernelBans(t testing.TB, backend string) []string {
	t.Helper()
	var bans []string
	if backend == BackendIPSet {
		for _, set := range []string{"banner4", "banner6"} {
			for _, l := range strings.Split(sh(t, "ipset", "save", set), "\n") {
				if strings.HasPrefix(l, "add ") {
					w := strings.Fields(l)
					bans = append(bans, w[2])
				}
			}
		}
	} else {
		for _, cmd := range []string{"iptables", "ip6tables"} {
			for _, l := range chainLines(t, cmd) {
				if w := strings.Fields(l); len(w) == 6 && w[2] == "-s" {
					bans = append(bans, strings.TrimSuffix(strings.TrimSuffix(w[3], "/32"), "/128"))
				}
			}
		}
	}
	slices.Sort(bans)
	return bans
}

func prefixes(ss ...string) []netip.Prefix {
	ps := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		ps[i] = netip.MustParsePrefix(s)
	}
	return ps
}

func TestBackends(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	for _, backend := range []string{BackendIPSet, BackendIPTables} {
		t.Run(backend, func(t *testing.T) {
			b := newBackend(t, backend, nil)
			t.Cleanup(func() { _, _ = b.Teardown(ctx) })

			t.Run("setup", func(t *testing.T) {
				if err := b.Setup(ctx); err != nil {
					t.Fatal(err)
				}
				checkJump(t, "25")
				if backend == BackendIPSet {
					for cmd, set := range map[string]string{"iptables": "banner4", "ip6tables": "banner6"} {
						want := []string{"-A BANNER -m set --match-set " + set + " src -j DROP"}
						if got := chainLines(t, cmd); !slices.Equal(got, want) {
							t.Errorf("%s BANNER = %q, want %q", cmd, got, want)
						}
					}
					h := sh(t, "ipset", "list", "-t", "banner6")
					if !strings.Contains(h, "Type: hash:net") || !strings.Contains(h, "family inet6") || !strings.Contains(h, "maxelem 1048576 timeout 0") {
						t.Errorf("banner6 header:\n%s", h)
					}
				} else if got := chainLines(t, "iptables"); len(got) != 0 {
					t.Errorf("fresh BANNER chain has rules %q", got)
				}
			})

			entries := []Entry{
				{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Timeout: time.Hour},
				{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Timeout: 0},
				{Prefix: netip.MustParsePrefix("2001:db8::/64"), Timeout: time.Hour},
				{Prefix: netip.MustParsePrefix("2001:db8::7/128"), Timeout: 0},
			}
			wantBans := []string{"192.0.2.0/24", "198.51.100.7", "2001:db8::/64", "2001:db8::7"}
			t.Run("add", func(t *testing.T) {
				if err := b.Add(ctx, entries); err != nil {
					t.Fatal(err)
				}
				if got := kernelBans(t, backend); !slices.Equal(got, wantBans) {
					t.Errorf("kernel holds %q, want %q", got, wantBans)
				}
				got, err := b.List(ctx)
				if err != nil {
					t.Fatal(err)
				}
				slices.SortFunc(got, func(a, b Entry) int { return comparePrefix(a.Prefix, b.Prefix) })
				if len(got) != 4 {
					t.Fatalf("List = %v", got)
				}
				for i, e := range []Entry{entries[1], entries[0], entries[2], entries[3]} {
					if got[i].Prefix != e.Prefix {
						t.Errorf("List[%d] = %v, want %v", i, got[i], e)
					}
					wantMin, wantMax := e.Timeout-5*time.Second, e.Timeout
					if backend == BackendIPTables {
						wantMin, wantMax = 0, 0
					}
					if got[i].Timeout < wantMin || got[i].Timeout > wantMax {
						t.Errorf("List[%d].Timeout = %v, want %v..%v", i, got[i].Timeout, wantMin, wantMax)
					}
				}
			})

			t.Run("add twice", func(t *testing.T) {
				if err := b.Add(ctx, append(entries, entries[0])); err != nil {
					t.Fatal(err)
				}
				if got := kernelBans(t, backend); !slices.Equal(got, wantBans) {
					t.Errorf("kernel holds %q, want %q (no duplicates)", got, wantBans)
				}
			})

			if backend == BackendIPSet {
				t.Run("add replaces timeout", func(t *testing.T) {
					if err := b.Add(ctx, []Entry{{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Timeout: 10 * time.Minute}}); err != nil {
						t.Fatal(err)
					}
					got, err := b.List(ctx)
					if err != nil {
						t.Fatal(err)
					}
					for _, e := range got {
						if e.Prefix.String() == "198.51.100.7/32" && (e.Timeout < 590*time.Second || e.Timeout > 600*time.Second) {
							t.Errorf("timeout %v not replaced by 600s", e.Timeout)
						}
					}
				})
			}

			t.Run("setup again", func(t *testing.T) {
				if err := b.Setup(ctx); err != nil {
					t.Fatal(err)
				}
				checkJump(t, "25")
				if got := kernelBans(t, backend); !slices.Equal(got, wantBans) {
					t.Errorf("after second Setup kernel holds %q, want %q", got, wantBans)
				}
				if backend == BackendIPSet {
					for _, cmd := range []string{"iptables", "ip6tables"} {
						if got := chainLines(t, cmd); len(got) != 1 {
							t.Errorf("%s BANNER = %q, want one rule", cmd, got)
						}
					}
				}
			})

			t.Run("ports change replaces jump", func(t *testing.T) {
				b3 := newBackend(t, backend, func(c *Config) { c.Ports = []uint16{587, 25, 465} })
				if err := b3.Setup(ctx); err != nil {
					t.Fatal(err)
				}
				checkJump(t, "25,465,587")
				if got := kernelBans(t, backend); !slices.Equal(got, wantBans) {
					t.Errorf("after ports change kernel holds %q, want %q", got, wantBans)
				}
				if err := b.Setup(ctx); err != nil { // back to 25
					t.Fatal(err)
				}
				checkJump(t, "25")
			})

			t.Run("drop change replaces jump", func(t *testing.T) {
				// drop = "all" is also the jump of banner before the drop
				// option: an upgrade replaces it the same way.
				ball := newBackend(t, backend, func(c *Config) { c.Drop = DropAll })
				if err := ball.Setup(ctx); err != nil {
					t.Fatal(err)
				}
				checkJumpDrop(t, "25", DropAll)
				if err := b.Setup(ctx); err != nil { // back to "new"
					t.Fatal(err)
				}
				checkJumpDrop(t, "25", DropNew)
				if got := kernelBans(t, backend); !slices.Equal(got, wantBans) {
					t.Errorf("after drop changes kernel holds %q, want %q", got, wantBans)
				}
				// Both forms at once (say, restored by netfilter-persistent
				// next to ours): one Setup leaves exactly the configured one.
				sh(t, "iptables", "-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "25", "-j", "BANNER")
				if err := b.Setup(ctx); err != nil {
					t.Fatal(err)
				}
				checkJumpDrop(t, "25", DropNew)
			})

			t.Run("jump at another position is left", func(t *testing.T) {
				sh(t, "iptables", "-I", "INPUT", "1", "-p", "icmp", "-j", "ACCEPT")
				t.Cleanup(func() { sh(t, "iptables", "-D", "INPUT", "-p", "icmp", "-j", "ACCEPT") })
				if err := b.Setup(ctx); err != nil {
					t.Fatal(err)
				}
				js, pos := jumps(t, "iptables")
				if len(js) != 1 || pos != 2 {
					t.Errorf("jumps %q at %d, want one at 2", js, pos)
				}
			})

			t.Run("remove", func(t *testing.T) {
				err := b.Remove(ctx, prefixes("198.51.100.7/32", "2001:db8::7/128", "203.0.113.9/32", "2001:db8:ffff::1/128"))
				if err != nil {
					t.Fatal(err)
				}
				want := []string{"192.0.2.0/24", "2001:db8::/64"}
				if got := kernelBans(t, backend); !slices.Equal(got, want) {
					t.Errorf("kernel holds %q, want %q", got, want)
				}
				if err := b.Remove(ctx, prefixes("198.51.100.7/32")); err != nil {
					t.Errorf("removing an absent entry: %v", err)
				}
			})

			if backend == BackendIPSet {
				t.Run("kernel expiry", func(t *testing.T) {
					p := netip.MustParsePrefix("203.0.113.50/32")
					if err := b.Add(ctx, []Entry{{Prefix: p, Timeout: 2 * time.Second}}); err != nil {
						t.Fatal(err)
					}
					if !slices.Contains(kernelBans(t, backend), "203.0.113.50") {
						t.Fatal("entry with 2s timeout not added")
					}
					deadline := time.Now().Add(6 * time.Second)
					for slices.Contains(kernelBans(t, backend), "203.0.113.50") {
						if time.Now().After(deadline) {
							t.Fatal("entry with 2s timeout still present after 6s")
						}
						time.Sleep(200 * time.Millisecond)
					}
				})
			}

			t.Run("stats", func(t *testing.T) {
				s := b.Stats()
				if s.Adds < 8 || s.Removes < 5 || s.Errors != 0 {
					t.Errorf("Stats = %+v", s)
				}
			})

			t.Run("teardown", func(t *testing.T) {
				for range 2 { // twice: the second finds nothing to do
					if _, err := b.Teardown(ctx); err != nil {
						t.Fatal(err)
					}
				}
				for _, cmd := range []string{"iptables", "ip6tables"} {
					if js, _ := jumps(t, cmd); len(js) != 0 {
						t.Errorf("%s jumps left: %q", cmd, js)
					}
					if shOK(cmd, "-S", "BANNER") {
						t.Errorf("%s chain BANNER left", cmd)
					}
				}
				if out := sh(t, "ipset", "list", "-n"); strings.TrimSpace(out) != "" {
					t.Errorf("sets left: %q", out)
				}
				if _, err := b.List(ctx); backend == BackendIPSet && !errors.Is(err, ErrNotSetUp) {
					t.Errorf("List after Teardown: %v, want ErrNotSetUp", err)
				}
			})
		})
	}
}

func TestIPSetExistingSet(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	tests := []struct {
		name, create string
		wantErr      []string // substrings; nil = Setup succeeds
		wantLog      string
	}{
		{"wrong type", "ipset create banner4 hash:ip timeout 0", []string{"set banner4", "hash:ip", "ipset destroy banner4", "set4"}, ""},
		{"wrong family", "ipset create banner4 hash:net family inet6 timeout 0", []string{"set banner4", "family \"inet6\"", "ipset destroy banner4"}, ""},
		{"no timeout", "ipset create banner4 hash:net", []string{"set banner4", "without timeout"}, ""},
		{"smaller maxelem", "ipset create banner4 hash:net timeout 0 maxelem 1024", nil, "existing set is smaller"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := strings.Fields(tt.create)
			sh(t, w[0], w[1:]...)
			var logs bytes.Buffer
			b := newBackend(t, BackendIPSet, func(c *Config) {
				c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			})
			t.Cleanup(func() {
				_, _ = b.Teardown(ctx)
				_ = exec.Command("ipset", "destroy", "banner4").Run()
			})
			entry := "198.51.100.1"
			if strings.Contains(tt.create, "inet6") {
				entry = "2001:db8::1"
			}
			sh(t, "ipset", "add", "banner4", entry)
			err := b.Setup(ctx)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				if err == nil {
					t.Fatal("Setup succeeded over a mismatched set")
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not contain %q", err, s)
					}
				}
				if b.Stats().Errors != 1 {
					t.Errorf("Stats().Errors = %d, want 1", b.Stats().Errors)
				}
			}
			if tt.wantLog != "" && !strings.Contains(logs.String(), tt.wantLog) {
				t.Errorf("log does not contain %q:\n%s", tt.wantLog, logs.String())
			}
			// The existing entry is never destroyed.
			if !strings.Contains(sh(t, "ipset", "save", "banner4"), entry) {
				t.Error("existing entry lost")
			}
		})
	}
}

func TestIPv6Off(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	for _, backend := range []string{BackendIPSet, BackendIPTables} {
		t.Run(backend, func(t *testing.T) {
			b := newBackend(t, backend, func(c *Config) { c.IPv6 = false })
			t.Cleanup(func() { _, _ = b.Teardown(ctx) })
			if err := b.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			if shOK("ip6tables", "-S", "BANNER") {
				t.Error("ip6tables chain created with ipv6 = false")
			}
			err := b.Add(ctx, []Entry{{Prefix: netip.MustParsePrefix("2001:db8::7/128")}, {Prefix: netip.MustParsePrefix("198.51.100.7/32")}})
			if !errors.Is(err, ErrIPv6Disabled) {
				t.Errorf("Add of an IPv6 entry: %v, want ErrIPv6Disabled", err)
			}
			if got := kernelBansV4(t, backend); !slices.Equal(got, []string{"198.51.100.7"}) {
				t.Errorf("IPv4 part of the batch not applied: %q", got)
			}
		})
	}
}

func kernelBansV4(t testing.TB, backend string) []string {
	t.Helper()
	var bans []string
	if backend == BackendIPSet {
		for _, l := range strings.Split(sh(t, "ipset", "save", "banner4"), "\n") {
			if strings.HasPrefix(l, "add ") {
				bans = append(bans, strings.Fields(l)[2])
			}
		}
		return bans
	}
	for _, l := range chainLines(t, "iptables") {
		bans = append(bans, strings.TrimSuffix(strings.Fields(l)[3], "/32"))
	}
	return bans
}

func TestNotSetUp(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	for _, backend := range []string{BackendIPSet, BackendIPTables} {
		t.Run(backend, func(t *testing.T) {
			b := newBackend(t, backend, nil)
			err := b.Add(ctx, []Entry{{Prefix: netip.MustParsePrefix("198.51.100.7/32")}})
			if !errors.Is(err, ErrNotSetUp) {
				t.Errorf("Add before Setup: %v, want ErrNotSetUp", err)
			}
			if b.Stats().Errors != 1 || b.Stats().LastError == "" {
				t.Errorf("Stats = %+v", b.Stats())
			}
		})
	}
}

func TestCommandTimeout(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	b := newBackend(t, BackendIPSet, func(c *Config) { c.CommandTimeout = time.Nanosecond })
	start := time.Now()
	err := b.Setup(context.Background())
	if err == nil {
		t.Fatal("Setup with a 1ns command timeout succeeded")
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("Setup took %v with a 1ns command timeout", time.Since(start))
	}
	if !strings.Contains(err.Error(), "deadline exceeded") && !strings.Contains(err.Error(), "gave up") {
		t.Errorf("error does not say it timed out: %v", err)
	}
}

// TestRepair breaks the scaffolding the way `iptables -F INPUT`,
// `iptables -F BANNER`, `netfilter-persistent reload` or an `ipset destroy`
// do and checks that Repair restores exactly what is missing, in both
// families, counts and logs it, and leaves the entries alone.
func TestRepair(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	for _, backend := range []string{BackendIPSet, BackendIPTables} {
		t.Run(backend, func(t *testing.T) {
			var logs testenv.SyncBuffer
			b := newBackend(t, backend, func(c *Config) {
				c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			})
			t.Cleanup(func() { _, _ = b.Teardown(ctx) })
			if err := b.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			ban := []Entry{{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Timeout: time.Hour}, {Prefix: netip.MustParsePrefix("2001:db8::7/128"), Timeout: time.Hour}}
			if err := b.Add(ctx, ban); err != nil {
				t.Fatal(err)
			}
			wantBans := []string{"198.51.100.7", "2001:db8::7"}
			matchRules := map[string][]string{
				"iptables":  {"-A BANNER -m set --match-set banner4 src -j DROP"},
				"ip6tables": {"-A BANNER -m set --match-set banner6 src -j DROP"},
			}
			// intact checks the whole scaffolding with the tools themselves.
			intact := func(t *testing.T) {
				t.Helper()
				checkJump(t, "25")
				if backend == BackendIPSet {
					for cmd, want := range matchRules {
						if got := chainLines(t, cmd); !slices.Equal(got, want) {
							t.Errorf("%s BANNER = %q, want %q", cmd, got, want)
						}
					}
					for _, set := range []string{"banner4", "banner6"} {
						if h := sh(t, "ipset", "list", "-t", set); !strings.Contains(h, "Type: hash:net") || !strings.Contains(h, "timeout 0") {
							t.Errorf("set %s:\n%s", set, h)
						}
					}
				}
			}
			// repair runs Repair and checks it reports exactly want (as
			// substrings, in any order), counts it and logs it at Warn.
			repair := func(t *testing.T, want ...string) {
				t.Helper()
				before := b.Stats()
				logs.Reset()
				got, err := b.Repair(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if len(got) != len(want) {
					t.Errorf("Repair restored %q, want %d pieces %q", got, len(want), want)
				}
				for _, w := range want {
					if !slices.ContainsFunc(got, func(g string) bool { return strings.Contains(g, w) }) {
						t.Errorf("Repair restored %q, nothing naming %q", got, w)
					}
				}
				after := b.Stats()
				if after.HookRepairs-before.HookRepairs != uint64(len(got)) || after.Errors != before.Errors {
					t.Errorf("stats before %+v after %+v", before, after)
				}
				switch {
				case len(want) == 0 && logs.String() != "":
					t.Errorf("Repair with nothing missing logged:\n%s", logs.String())
				case len(want) > 0 && (!strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "firewall hooks were missing")):
					t.Errorf("Repair did not warn:\n%s", logs.String())
				case len(want) > 0 && after.LastHookRepair == "":
					t.Errorf("LastHookRepair empty: %+v", after)
				}
				intact(t)
			}

			t.Run("nothing missing", func(t *testing.T) { repair(t) })

			t.Run("INPUT flushed", func(t *testing.T) {
				sh(t, "iptables", "-F", "INPUT")
				sh(t, "ip6tables", "-F", "INPUT")
				repair(t, "IPv4 jump -I INPUT 1", "IPv6 jump -I INPUT 1")
				if got := kernelBans(t, backend); !slices.Equal(got, wantBans) {
					t.Errorf("kernel holds %q, want %q", got, wantBans)
				}
			})

			t.Run("one jump deleted", func(t *testing.T) {
				sh(t, "ip6tables", "-D", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "25", "--syn", "-j", "BANNER")
				repair(t, "IPv6 jump")
			})

			t.Run("jump of the other form", func(t *testing.T) {
				sh(t, "iptables", "-F", "INPUT")
				sh(t, "iptables", "-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "25", "-j", "BANNER")
				repair(t, "IPv4 jump -I INPUT 1", "IPv4 stale jump")
			})

			t.Run("chain flushed", func(t *testing.T) {
				sh(t, "iptables", "-F", "BANNER")
				sh(t, "ip6tables", "-F", "BANNER")
				if backend == BackendIPSet {
					repair(t, "IPv4 rule -A BANNER -m set --match-set banner4 src -j DROP",
						"IPv6 rule -A BANNER -m set --match-set banner6 src -j DROP")
					if got := kernelBans(t, backend); !slices.Equal(got, wantBans) {
						t.Errorf("kernel holds %q, want %q", got, wantBans)
					}
					return
				}
				// iptables: the DROP rules are the entries, not hooks; the
				// engine's reconcile re-adds them.
				repair(t)
				if got := kernelBans(t, backend); len(got) != 0 {
					t.Errorf("kernel holds %q after the flush", got)
				}
				if err := b.Add(ctx, ban); err != nil {
					t.Fatal(err)
				}
			})

			t.Run("everything gone", func(t *testing.T) {
				// What `netfilter-persistent reload` with a rule file
				// without banner does, plus the sets destroyed.
				for _, cmd := range []string{"iptables", "ip6tables"} {
					sh(t, cmd, "-F", "INPUT")
					sh(t, cmd, "-F", "BANNER")
					sh(t, cmd, "-X", "BANNER")
				}
				want := []string{"IPv4 chain BANNER", "IPv6 chain BANNER", "IPv4 jump", "IPv6 jump"}
				if backend == BackendIPSet {
					sh(t, "ipset", "destroy", "banner4")
					sh(t, "ipset", "destroy", "banner6")
					want = append(want, "set banner4", "set banner6", "IPv4 rule", "IPv6 rule")
				}
				repair(t, want...)
				// A re-created set or chain is empty: the engine re-adds.
				if got := kernelBans(t, backend); len(got) != 0 {
					t.Errorf("kernel holds %q after re-creation", got)
				}
				if err := b.Add(ctx, ban); err != nil {
					t.Fatal(err)
				}
				if got := kernelBans(t, backend); !slices.Equal(got, wantBans) {
					t.Errorf("kernel holds %q, want %q", got, wantBans)
				}
			})

			if backend == BackendIPSet {
				t.Run("set destroyed", func(t *testing.T) {
					// destroy needs the rule using the set gone first
					sh(t, "iptables", "-D", "BANNER", "-m", "set", "--match-set", "banner4", "src", "-j", "DROP")
					sh(t, "ipset", "destroy", "banner4")
					repair(t, "set banner4", "IPv4 rule -A BANNER -m set --match-set banner4 src -j DROP")
				})
			}

			t.Run("repair twice", func(t *testing.T) { repair(t) })
		})
	}
}
