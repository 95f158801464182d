package firewall

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/testenv"
	"github.com/banner-mta/banner/internal/vethtest"
)

// TestBackendSwitch switches the backend of one configuration without a
// teardown, as an admin editing `[firewall] backend` does, and sends real
// packets over a veth pair: the new backend's Setup removes the old
// backend's rules from the shared chain (the ipset set match, or the
// iptables per-ban DROP rules), warns and counts it, so a client the new
// backend does not ban (or unbans) gets through, while one it bans is
// dropped. Repair then removes a rule added to the chain by hand and keeps
// the backend's own.
func TestBackendSwitch(t *testing.T) {
	if testenv.RunInNetNS(t, append(fwCommands, "nsenter")...) {
		return
	}
	server := netip.MustParsePrefix("10.200.0.1/24")
	unbanned, banned := netip.MustParseAddr("10.200.0.2"), netip.MustParseAddr("10.200.0.3")
	pair := vethtest.New(t, server, netip.PrefixFrom(unbanned, 24), netip.PrefixFrom(banned, 24))
	listen(t, "10.200.0.1:25")
	smtp := netip.MustParseAddrPort("10.200.0.1:25")
	const dialTimeout = time.Second
	ctx := context.Background()

	passes := func(t *testing.T, src netip.Addr) {
		t.Helper()
		if err := pair.Dial(src, smtp, dialTimeout); err != nil {
			t.Errorf("%s -> %s: %v, want it to pass", src, smtp, err)
		}
	}
	dropped := func(t *testing.T, src netip.Addr) {
		t.Helper()
		if err := pair.Dial(src, smtp, dialTimeout); !isTimeout(err) {
			t.Errorf("%s -> %s: %v, want a timeout (SYN dropped)", src, smtp, err)
		}
	}
	host := func(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }
	v6 := netip.MustParsePrefix("2001:db8::7/128")

	for _, tc := range []struct {
		from, to string
		// foreign are the old backend's rules the new Setup must remove.
		foreign []string
	}{
		{BackendIPSet, BackendIPTables, []string{
			"IPv4 foreign rule -A BANNER -m set --match-set banner4 src -j DROP",
			"IPv6 foreign rule -A BANNER -m set --match-set banner6 src -j DROP",
		}},
		{BackendIPTables, BackendIPSet, []string{
			"IPv4 foreign rule -A BANNER -s 10.200.0.2/32 -j DROP",
			"IPv4 foreign rule -A BANNER -s 10.200.0.3/32 -j DROP",
			"IPv6 foreign rule -A BANNER -s 2001:db8::7/128 -j DROP",
		}},
	} {
		t.Run(tc.from+"_to_"+tc.to, func(t *testing.T) {
			old := newBackend(t, tc.from, nil)
			t.Cleanup(func() { _, _ = old.Teardown(ctx) })
			if err := old.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			if err := old.Add(ctx, []Entry{{Prefix: host(unbanned), Timeout: time.Hour}, {Prefix: host(banned), Timeout: time.Hour}, {Prefix: v6, Timeout: time.Hour}}); err != nil {
				t.Fatal(err)
			}
			dropped(t, unbanned)

			// The admin switches the backend and restarts banner: no
			// teardown in between.
			var logs testenv.SyncBuffer
			b := newBackend(t, tc.to, func(c *Config) {
				c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
			})
			t.Cleanup(func() { _, _ = b.Teardown(ctx) })
			if err := b.Setup(ctx); err != nil {
				t.Fatal(err)
			}
			checkJump(t, "25")
			for _, cmd := range []string{"iptables", "ip6tables"} {
				lines := chainLines(t, cmd)
				var want []string
				if tc.to == BackendIPSet {
					set := "banner4"
					if cmd == "ip6tables" {
						set = "banner6"
					}
					want = []string{"-A BANNER -m set --match-set " + set + " src -j DROP"}
				}
				if !slices.Equal(lines, want) {
					t.Errorf("%s BANNER after the %s backend's Setup = %q, want %q", cmd, tc.to, lines, want)
				}
			}
			st := b.Stats()
			if st.HookRepairs != uint64(len(tc.foreign)) {
				t.Errorf("HookRepairs = %d, want %d (%+v)", st.HookRepairs, len(tc.foreign), st)
			}
			for _, f := range tc.foreign {
				if !strings.Contains(st.LastHookRepair, f) {
					t.Errorf("LastHookRepair = %q, lacks %q", st.LastHookRepair, f)
				}
				if !strings.Contains(logs.String(), f) {
					t.Errorf("log lacks %q:\n%s", f, logs.String())
				}
			}
			if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "left by another backend or by hand") {
				t.Errorf("Setup did not warn about the foreign rules:\n%s", l)
			}

			// The engine's first reconcile: the one ban still active is
			// re-added, the other was lifted meanwhile.
			if err := b.Add(ctx, []Entry{{Prefix: host(banned), Timeout: time.Hour}, {Prefix: v6, Timeout: time.Hour}}); err != nil {
				t.Fatal(err)
			}
			if err := b.Remove(ctx, []netip.Prefix{host(unbanned)}); err != nil {
				t.Fatal(err)
			}
			passes(t, unbanned)
			dropped(t, banned)

			// Nothing foreign left: Repair finds nothing and keeps the
			// bans, which List sees.
			if got, err := b.Repair(ctx); err != nil || got != nil {
				t.Errorf("Repair after the switch = %q, %v; want nil, nil", got, err)
			}
			wantList := func(t *testing.T) {
				t.Helper()
				es, err := b.List(ctx)
				if err != nil {
					t.Fatal(err)
				}
				var got []netip.Prefix
				for _, e := range es {
					got = append(got, e.Prefix)
				}
				slices.SortFunc(got, comparePrefix)
				if want := []netip.Prefix{host(banned), v6}; !slices.Equal(got, want) {
					t.Errorf("List = %v, want %v", got, want)
				}
			}
			wantList(t)

			// A rule put in the chain by hand, with a quoted comment: the
			// next Repair removes it, counts and logs it, and keeps the
			// bans.
			sh(t, "iptables", "-I", "BANNER", "1", "-s", unbanned.String(), "-m", "comment", "--comment", "by hand", "-j", "DROP")
			sh(t, "ip6tables", "-A", "BANNER", "-p", "tcp", "-j", "DROP")
			dropped(t, unbanned)
			logs.Reset()
			before := b.Stats().HookRepairs
			got, err := b.Repair(ctx)
			if err != nil {
				t.Fatal(err)
			}
			want := []string{
				`IPv4 foreign rule -A BANNER -s 10.200.0.2/32 -m comment --comment by hand -j DROP (removed)`,
				`IPv6 foreign rule -A BANNER -p tcp -j DROP (removed)`,
			}
			if !slices.Equal(got, want) {
				t.Errorf("Repair = %q, want %q", got, want)
			}
			if n := b.Stats().HookRepairs - before; n != 2 {
				t.Errorf("Repair counted %d hook repairs, want 2", n)
			}
			if l := logs.String(); !strings.Contains(l, "left by another backend or by hand") || strings.Contains(l, "hooks were missing") {
				t.Errorf("Repair log:\n%s", l)
			}
			passes(t, unbanned)
			dropped(t, banned)
			wantList(t)
		})
	}
}

// TestTeardownLeftSets checks that the iptables backend's teardown
// destroys the sets the ipset backend of the same configuration left, and
// keeps, saying why, a set something else uses, one a banner process
// manages and one that is not the ipset backend's.
func TestTeardownLeftSets(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	oldDir := LockDir
	LockDir = t.TempDir()
	t.Cleanup(func() { LockDir = oldDir })
	ctx := context.Background()
	ipset := newBackend(t, BackendIPSet, nil)
	ipt := newBackend(t, BackendIPTables, nil)
	t.Cleanup(func() { _, _ = ipset.Teardown(ctx) })
	setUp := func(t *testing.T) {
		t.Helper()
		if err := ipset.Setup(ctx); err != nil {
			t.Fatal(err)
		}
		if err := ipset.Add(ctx, []Entry{{Prefix: prefixes("198.51.100.1/32")[0], Timeout: time.Hour}, {Prefix: prefixes("198.51.100.0/28")[0], Timeout: 0}, {Prefix: prefixes("2001:db8::7/128")[0], Timeout: 0}}); err != nil {
			t.Fatal(err)
		}
	}
	sets := func() []string { return strings.Fields(sh(t, "ipset", "list", "-n")) }

	t.Run("unused", func(t *testing.T) {
		// The config now says iptables; the ipset backend's chain (with
		// its set match rules) and sets are still there.
		setUp(t)
		r, err := ipt.Teardown(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"IPv4 jump -A INPUT -p tcp -m multiport --dports 25 -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j BANNER",
			"IPv4 chain BANNER (1 rule)",
			"IPv6 jump -A INPUT -p tcp -m multiport --dports 25 -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j BANNER",
			"IPv6 chain BANNER (1 rule)",
			"set banner4 (2 entries, left by the ipset backend)",
			"set banner6 (1 entry, left by the ipset backend)",
		}
		if !slices.Equal(r.Removed, want) || r.Kept != nil {
			t.Errorf("Teardown = %q, kept %q; want %q", r.Removed, r.Kept, want)
		}
		if s := sets(); len(s) != 0 {
			t.Errorf("sets left: %q", s)
		}
		if r, err := ipt.Teardown(ctx); err != nil || r.Removed != nil || r.Kept != nil {
			t.Errorf("second Teardown = %+v, %v", r, err)
		}
	})

	t.Run("referenced", func(t *testing.T) {
		setUp(t)
		raw := []string{"-t", "raw", "-A", "PREROUTING", "-m", "set", "--match-set", "banner4", "src", "-j", "DROP"}
		sh(t, "iptables", raw...)
		r, err := ipt.Teardown(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kept) != 1 || !strings.Contains(r.Kept[0], "set banner4 (2 entries, left by the ipset backend): something else uses it, the kernel counts 1 reference to it: "+
			"IPv4 -t raw -A PREROUTING -m set --match-set banner4 src -j DROP; left in place") {
			t.Errorf("Kept = %q", r.Kept)
		}
		if !slices.Contains(r.Removed, "set banner6 (1 entry, left by the ipset backend)") || !slices.Contains(r.Removed, "IPv4 chain BANNER (1 rule)") {
			t.Errorf("Removed = %q", r.Removed)
		}
		if s := sets(); !slices.Equal(s, []string{"banner4"}) {
			t.Errorf("sets = %q, want banner4 kept", s)
		}
		raw[2] = "-D"
		sh(t, "iptables", raw...)
		r, err = ipt.Teardown(ctx)
		if err != nil || !slices.Equal(r.Removed, []string{"set banner4 (2 entries, left by the ipset backend)"}) || r.Kept != nil {
			t.Errorf("Teardown with the raw rule gone = %+v, %v", r, err)
		}
	})

	t.Run("locked", func(t *testing.T) {
		setUp(t)
		cfg := DefaultConfig()
		locks, err := Lock(cfg) // the ipset backend's: chain and sets
		if err != nil {
			t.Fatal(err)
		}
		r, err := ipt.Teardown(ctx)
		locks.Release()
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Kept) != 2 || !strings.Contains(r.Kept[0], "manages set banner4") || !strings.Contains(r.Kept[1], "manages set banner6") {
			t.Errorf("Kept = %q", r.Kept)
		}
		if s := sets(); len(s) != 2 {
			t.Errorf("sets = %q, want both kept", s)
		}
		if _, err := ipt.Teardown(ctx); err != nil || len(sets()) != 0 {
			t.Errorf("Teardown unlocked: %v, sets %q", err, sets())
		}
	})

	t.Run("not the ipset backend's", func(t *testing.T) {
		sh(t, "ipset", "create", "banner4", "hash:ip")
		t.Cleanup(func() { _ = shOK("ipset", "destroy", "banner4") })
		r, err := ipt.Teardown(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Removed != nil || len(r.Kept) != 1 || !strings.Contains(r.Kept[0], "set banner4 (0 entries): not as the ipset backend makes it (type hash:ip without timeouts") {
			t.Errorf("Teardown = %+v", r)
		}
	})
}

// TestSetupRefusesAnotherToolsChain: [firewall] chain set to the name of a
// chain another tool owns (fail2ban's f2b-postfix here), which holds no
// rule of banner's form: Setup refuses, naming the chain and its rules,
// and changes nothing, rather than delete that tool's rules as foreign and
// replace its INPUT jump. An empty chain of that name is taken as banner's;
// so is one holding a rule of banner's form (a restart, a backend switch),
// and then the rest goes, as after a switch.
func TestSetupRefusesAnotherToolsChain(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	const chain = "f2b-postfix"
	state := func() string {
		return sh(t, "iptables", "-S") + sh(t, "ip6tables", "-S")
	}
	for _, cmd := range []string{"iptables", "ip6tables"} {
		sh(t, cmd, "-N", chain)
		sh(t, cmd, "-A", chain, "-j", "RETURN")
		sh(t, cmd, "-I", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "25", "-j", chain)
	}
	sh(t, "iptables", "-I", chain, "1", "-s", "198.51.100.9/32", "-j", "REJECT", "--reject-with", "icmp-port-unreachable")
	for _, backend := range []string{BackendIPSet, BackendIPTables} {
		t.Run(backend, func(t *testing.T) {
			before := state()
			b := newBackend(t, backend, func(c *Config) { c.Chain = chain })
			err := b.Setup(ctx)
			if err == nil || !strings.Contains(err.Error(), "chain f2b-postfix exists and none of its 2 rule(s) is banner's") ||
				!strings.Contains(err.Error(), "-A f2b-postfix -s 198.51.100.9/32 -j REJECT") {
				t.Errorf("Setup on another tool's chain: %v", err)
			}
			if after := state(); after != before {
				t.Errorf("refused Setup changed the firewall:\n%s\nwas\n%s", after, before)
			}
		})
	}

	// Empty: banner's.
	for _, cmd := range []string{"iptables", "ip6tables"} {
		sh(t, cmd, "-N", "BANNERX")
	}
	b := newBackend(t, BackendIPSet, func(c *Config) { c.Chain = "BANNERX"; c.Set4, c.Set6 = "bx4", "bx6" })
	if err := b.Setup(ctx); err != nil {
		t.Errorf("Setup on an empty chain: %v", err)
	}
	if _, err := b.Teardown(ctx); err != nil {
		t.Fatal(err)
	}
}
