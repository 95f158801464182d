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

	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/control"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/store"
	"github.com/banner-mta/banner/internal/testenv"
)

func TestTeardownUsage(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"help", []string{"teardown", "-h"}, 0, "-force"},
		{"help says the store is kept", []string{"teardown", "-h"}, 0, "store (bans and escalation history) is kept"},
		{"listed in usage", []string{"-h"}, 0, "teardown"},
		{"extra argument", []string{"teardown", "BANNER"}, 2, `unexpected argument "BANNER"`},
		{"argument after flags", []string{"teardown", "-force", "now"}, 2, `unexpected argument "now"`},
		{"unknown flag", []string{"teardown", "-all"}, 2, "flag provided but not defined: -all"},
		{"bad bool", []string{"teardown", "-force=maybe"}, 2, "invalid boolean value"},
		{"usage line", []string{"teardown", "x"}, 2, "usage: banner teardown [-config F] [-force]"},
		{"missing config", []string{"teardown", "-config", filepath.Join(dir, "missing.toml")}, 1, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := cli(t, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.want) {
				t.Errorf("banner %q: exit %d, want %d; output:\n%s\nwant it to contain %q", tt.args, code, tt.code, out, tt.want)
			}
		})
	}
}

// stubHandler answers the control socket like a daemon would.
type stubHandler struct{}

func (stubHandler) Ban(context.Context, netip.Prefix, time.Duration, string) (control.BanInfo, error) {
	return control.BanInfo{}, nil
}
func (stubHandler) Unban(context.Context, netip.Prefix) error         { return nil }
func (stubHandler) UnbanAll(context.Context) (int, error)             { return 0, nil }
func (stubHandler) Forget(context.Context, netip.Prefix) (int, error) { return 0, nil }
func (stubHandler) List(context.Context) []control.BanInfo            { return nil }
func (stubHandler) Status(context.Context) any                        { return map[string]string{"stub": "yes"} }

// startControl serves a control socket at path until the returned stop.
func startControl(t *testing.T, path string) (stop func()) {
	t.Helper()
	// The control socket answers root only: as another user every request
	// is refused, whatever the test wants to see.
	testenv.Require(t, os.Geteuid() == 0, "the control socket answers root only: run as root")
	srv, err := control.Listen(path, stubHandler{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("control server: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// bannerLines returns the lines of out that mention banner's chain or sets.
func bannerLines(out string) []string {
	var ls []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "BANNER") || strings.Contains(l, "banner4") || strings.Contains(l, "banner6") {
			ls = append(ls, l)
		}
	}
	return ls
}

// TestTeardownIntegration sets banner's firewall up with real iptables,
// ip6tables and ipset in a private network namespace, for both backends,
// next to rules of the admin's own, and tears it down with the CLI.
func TestTeardownIntegration(t *testing.T) {
	if testenv.RunInNetNS(t, "ipset", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore") {
		return
	}
	ctx := context.Background()
	// The admin's own rules, in INPUT and in a chain of theirs, and a set
	// of theirs: teardown must leave them exactly as they are.
	for _, cmd := range []string{"iptables", "ip6tables"} {
		mustRun(t, cmd, "-A", "INPUT", "-i", "lo", "-j", "ACCEPT")
		mustRun(t, cmd, "-N", "ADMIN")
		mustRun(t, cmd, "-A", "ADMIN", "-p", "tcp", "--dport", "2525", "-j", "ACCEPT")
		mustRun(t, cmd, "-A", "INPUT", "-p", "tcp", "--dport", "2525", "-j", "ADMIN")
	}
	mustRun(t, "ipset", "create", "adminset", "hash:ip")
	mustRun(t, "iptables", "-A", "INPUT", "-m", "set", "--match-set", "adminset", "src", "-j", "DROP")
	before4, before6 := mustRun(t, "iptables", "-S"), mustRun(t, "ip6tables", "-S")

	for _, backend := range []string{firewall.BackendIPSet, firewall.BackendIPTables} {
		t.Run(backend, func(t *testing.T) {
			dir := t.TempDir()
			sock := filepath.Join(dir, "run", "banner.sock")
			dbPath := filepath.Join(dir, "banner.db")
			cfgPath := filepath.Join(dir, "banner.toml")
			cfgText := fmt.Sprintf("[firewall]\nbackend = %q\nports = [25, 587]\n\n[store]\npath = %q\n\n[control]\nsocket = %q\n", backend, dbPath, sock)
			if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(cfgPath)
			if err != nil {
				t.Fatal(err)
			}

			// Nothing there yet, no store: nothing to remove.
			out, code := cli(t, "teardown", "-config", cfgPath)
			if code != 0 || !strings.Contains(out, "nothing to remove") || !strings.Contains(out, "no store at") {
				t.Fatalf("teardown on a clean box: exit %d\n%s", code, out)
			}
			if _, err := os.Stat(dbPath); err == nil {
				t.Error("teardown created the store")
			}

			// The store holds one active and one expired ban.
			st, err := store.Open(dbPath)
			if err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			if err := st.PutBans([]store.Ban{
				{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Since: now, Until: now.Add(time.Hour), Count: 1, Reason: "test", Source: "cli"},
				{Prefix: netip.MustParsePrefix("198.51.100.8/32"), Since: now.Add(-2 * time.Hour), Until: now.Add(-time.Hour), Count: 1, Reason: "test", Source: "cli"},
			}, nil); err != nil {
				t.Fatal(err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}

			setup := func(t *testing.T) {
				t.Helper()
				fw, err := firewall.New(cfg.FirewallConfig(nil))
				if err != nil {
					t.Fatal(err)
				}
				if err := fw.Setup(ctx); err != nil {
					t.Fatal(err)
				}
				if err := fw.Add(ctx, []firewall.Entry{
					{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Timeout: time.Hour},
					{Prefix: netip.MustParsePrefix("2001:db8::/64"), Timeout: time.Hour},
				}); err != nil {
					t.Fatal(err)
				}
				// Jumps of other forms, as older versions or other settings
				// left them: teardown removes every jump to the chain.
				mustRun(t, "iptables", "-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "465", "-j", "BANNER")
				mustRun(t, "ip6tables", "-A", "INPUT", "-p", "tcp", "--syn", "--dport", "25", "-g", "BANNER")
			}
			wantHooks := func(t *testing.T, present bool) {
				t.Helper()
				for _, c := range []struct{ cmd, before string }{{"iptables", before4}, {"ip6tables", before6}} {
					got := mustRun(t, c.cmd, "-S")
					if present {
						if len(bannerLines(got)) == 0 {
							t.Errorf("%s -S shows nothing of banner:\n%s", c.cmd, got)
						}
						continue
					}
					if got != c.before {
						t.Errorf("%s -S after teardown:\n%s\nwant exactly the admin's rules:\n%s", c.cmd, got, c.before)
					}
				}
				sets := strings.Fields(mustRun(t, "ipset", "list", "-n"))
				if !slices.Contains(sets, "adminset") {
					t.Errorf("the admin's set is gone: %q", sets)
				}
				ours := slices.Contains(sets, "banner4") || slices.Contains(sets, "banner6")
				if want := present && backend == firewall.BackendIPSet; ours != want {
					t.Errorf("ipset list -n = %q, want banner's sets present: %v", sets, want)
				}
			}
			setup(t)
			wantHooks(t, true)

			// A running daemon (its control socket answers) refuses.
			stop := startControl(t, sock)
			out, code = cli(t, "teardown", "-config", cfgPath)
			if code != 1 || !strings.Contains(out, "stop banner first: systemctl stop banner") || !strings.Contains(out, sock) {
				t.Errorf("teardown with the daemon running: exit %d, want 1 and the advice\n%s", code, out)
			}
			wantHooks(t, true)
			stop()

			// A jump to the chain from a chain of the admin's: refused,
			// named, nothing changed.
			mustRun(t, "iptables", "-A", "ADMIN", "-p", "tcp", "--dport", "26", "-j", "BANNER")
			out, code = cli(t, "teardown", "-config", cfgPath)
			if code != 1 || !strings.Contains(out, "IPv4 -A ADMIN -p tcp -m tcp --dport 26 -j BANNER") || !strings.Contains(out, "nothing was changed") {
				t.Errorf("teardown with a foreign jump: exit %d, want 1 naming the rule\n%s", code, out)
			}
			if !strings.Contains(mustRun(t, "iptables", "-S", "ADMIN"), "-j BANNER") {
				t.Error("the admin's jump to BANNER was deleted")
			}
			wantHooks(t, true)
			mustRun(t, "iptables", "-D", "ADMIN", "-p", "tcp", "--dport", "26", "-j", "BANNER")

			if backend == firewall.BackendIPSet {
				// A set matched in another table than filter: refused,
				// named, nothing changed anywhere.
				raw := []string{"-t", "raw", "-A", "PREROUTING", "-m", "set", "--match-set", "banner4", "src", "-j", "DROP"}
				mustRun(t, "iptables", raw...)
				state := func() string {
					var b strings.Builder
					for _, cmd := range []string{"iptables", "ip6tables"} {
						for _, table := range []string{"filter", "raw", "mangle", "nat", "security"} {
							b.WriteString(mustRun(t, cmd, "-t", table, "-S"))
						}
					}
					return b.String() + mustRun(t, "ipset", "save")
				}
				before := state()
				out, code = cli(t, "teardown", "-config", cfgPath)
				if code != 1 || !strings.Contains(out, "IPv4 -t raw -A PREROUTING -m set --match-set banner4 src -j DROP") || !strings.Contains(out, "nothing was changed") {
					t.Errorf("teardown with a foreign set match in raw: exit %d, want 1 naming the rule\n%s", code, out)
				}
				if after := state(); after != before {
					t.Errorf("teardown refused but changed the firewall:\n%s\nwant\n%s", after, before)
				}
				raw[2] = "-D"
				mustRun(t, "iptables", raw...)
			}

			// The real thing.
			out, code = cli(t, "teardown", "-config", cfgPath)
			if code != 0 {
				t.Fatalf("teardown: exit %d\n%s", code, out)
			}
			want := []string{
				"removed IPv4 jump -A INPUT -p tcp -m multiport --dports 25,587 -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j BANNER\n",
				"removed IPv4 jump -A INPUT -p tcp -m multiport --dports 465 -j BANNER\n",
				"removed IPv6 jump -A INPUT -p tcp -m multiport --dports 25,587 -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j BANNER\n",
				"removed IPv6 jump -A INPUT -p tcp -m tcp --dport 25 --tcp-flags FIN,SYN,RST,ACK SYN -g BANNER\n",
				"removed IPv4 chain BANNER (1 rule)\n",
				"removed IPv6 chain BANNER (1 rule)\n",
				// The sasl port group ([ban.sasl] ports, on by default).
				"removed IPv4 jump -A INPUT -p tcp -m multiport --dports 25,465,587 -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j BANNER_SASL\n",
				"removed IPv4 chain BANNER_SASL (",
				"removed IPv6 chain BANNER_SASL (",
				"kept the store " + dbPath + ": 1 active ban and the escalation history",
			}
			if backend == firewall.BackendIPSet {
				want = append(want, "removed set banner4 (1 entry)\n", "removed set banner6 (1 entry)\n",
					"removed set banner4_sasl (0 entries)\n", "removed set banner6_sasl (0 entries)\n")
			}
			for _, w := range want {
				if !strings.Contains(out, w) {
					t.Errorf("teardown output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "nothing to remove") {
				t.Errorf("teardown says nothing to remove:\n%s", out)
			}
			wantHooks(t, false)

			// Again: idempotent.
			out, code = cli(t, "teardown", "-config", cfgPath)
			if code != 0 || !strings.Contains(out, "nothing to remove") || strings.Contains(out, "removed ") {
				t.Errorf("second teardown: exit %d\n%s", code, out)
			}
			wantHooks(t, false)

			// -force tears down under a running daemon, with a warning.
			setup(t)
			startControl(t, sock)
			out, code = cli(t, "teardown", "-force", "-config", cfgPath)
			if code != 0 || !strings.Contains(out, "warning: the banner daemon is running") || !strings.Contains(out, "removed IPv4 chain BANNER") {
				t.Errorf("teardown -force: exit %d\n%s", code, out)
			}
			wantHooks(t, false)

			// A daemon whose socket is elsewhere still holds the store.
			if backend == firewall.BackendIPSet {
				setup(t)
				other := filepath.Join(dir, "other.toml")
				text := strings.Replace(cfgText, sock, filepath.Join(dir, "elsewhere.sock"), 1)
				if err := os.WriteFile(other, []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
				st, err := store.Open(dbPath)
				if err != nil {
					t.Fatal(err)
				}
				out, code = cli(t, "teardown", "-config", other)
				if code != 1 || !strings.Contains(out, "holds the store") || !strings.Contains(out, "stop banner first") {
					t.Errorf("teardown with the store locked: exit %d\n%s", code, out)
				}
				wantHooks(t, true)
				st.Close()
				if out, code = cli(t, "teardown", "-config", other); code != 0 {
					t.Errorf("teardown: exit %d\n%s", code, out)
				}
				wantHooks(t, false)
			}

			// A daemon with another control socket and store still holds
			// the locks on the chain and sets: refused, nothing changed;
			// -force goes ahead with a warning.
			setup(t)
			other := filepath.Join(dir, "other-store.toml")
			text := strings.NewReplacer(sock, filepath.Join(dir, "elsewhere.sock"), dbPath, filepath.Join(dir, "elsewhere.db")).Replace(cfgText)
			if err := os.WriteFile(other, []byte(text), 0o600); err != nil {
				t.Fatal(err)
			}
			locks, err := firewall.Lock(cfg.FirewallConfig(nil))
			if err != nil {
				t.Fatal(err)
			}
			defer locks.Release()
			out, code = cli(t, "teardown", "-config", other)
			if code != 1 || !strings.Contains(out, "manages chain BANNER in this network namespace") || !strings.Contains(out, "stop banner first") {
				t.Errorf("teardown with the chain locked: exit %d\n%s", code, out)
			}
			wantHooks(t, true)
			out, code = cli(t, "teardown", "-force", "-config", other)
			if code != 0 || !strings.Contains(out, "warning: firewall: another banner daemon (or teardown) manages chain BANNER") || !strings.Contains(out, "removed IPv4 chain BANNER") {
				t.Errorf("teardown -force with the chain locked: exit %d\n%s", code, out)
			}
			wantHooks(t, false)
			locks.Release()
		})
	}
}

// TestTeardownLeftSets switches the configuration from the ipset backend to
// iptables without a teardown in between and tears down with the new
// configuration: the sets the ipset backend left go too, unless something
// still uses one, which teardown keeps and names.
func TestTeardownLeftSets(t *testing.T) {
	if testenv.RunInNetNS(t, "ipset", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore") {
		return
	}
	oldDir := firewall.LockDir
	firewall.LockDir = t.TempDir()
	t.Cleanup(func() { firewall.LockDir = oldDir })
	ctx := context.Background()
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "banner.toml")
	cfgText := fmt.Sprintf("[firewall]\nbackend = \"iptables\"\n\n[store]\npath = %q\n\n[control]\nsocket = %q\n",
		filepath.Join(dir, "banner.db"), filepath.Join(dir, "banner.sock"))
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	// What the ipset backend of this configuration set up before the
	// switch.
	ipsetUp := func(t *testing.T) {
		t.Helper()
		fc := cfg.FirewallConfig(nil)
		fc.Backend = firewall.BackendIPSet
		fw, err := firewall.New(fc)
		if err != nil {
			t.Fatal(err)
		}
		if err := fw.Setup(ctx); err != nil {
			t.Fatal(err)
		}
		if err := fw.Add(ctx, []firewall.Entry{
			{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Timeout: time.Hour},
			{Prefix: netip.MustParsePrefix("198.51.100.8/32"), Timeout: time.Hour},
			{Prefix: netip.MustParsePrefix("2001:db8::/64"), Timeout: time.Hour},
		}); err != nil {
			t.Fatal(err)
		}
	}
	sets := func() []string { return strings.Fields(mustRun(t, "ipset", "list", "-n")) }

	ipsetUp(t)
	out, code := cli(t, "teardown", "-config", cfgPath)
	if code != 0 {
		t.Fatalf("teardown: exit %d\n%s", code, out)
	}
	for _, w := range []string{
		"removed IPv4 chain BANNER (1 rule)\n",
		"removed set banner4 (2 entries, left by the ipset backend)\n",
		"removed set banner6 (1 entry, left by the ipset backend)\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("teardown output lacks %q:\n%s", w, out)
		}
	}
	if s := sets(); len(s) != 0 {
		t.Errorf("sets left after teardown: %q", s)
	}

	// A rule of the admin's still matches banner4: kept, and named.
	ipsetUp(t)
	raw := []string{"-t", "raw", "-A", "PREROUTING", "-m", "set", "--match-set", "banner4", "src", "-j", "DROP"}
	mustRun(t, "iptables", raw...)
	out, code = cli(t, "teardown", "-config", cfgPath)
	if code != 0 {
		t.Fatalf("teardown with banner4 in use: exit %d\n%s", code, out)
	}
	for _, w := range []string{
		"removed set banner6 (1 entry, left by the ipset backend)\n",
		"kept set banner4 (2 entries, left by the ipset backend): something else uses it, the kernel counts 1 reference to it: " +
			"IPv4 -t raw -A PREROUTING -m set --match-set banner4 src -j DROP; left in place\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("teardown output lacks %q:\n%s", w, out)
		}
	}
	if s := sets(); !slices.Equal(s, []string{"banner4"}) {
		t.Errorf("sets after teardown = %q, want banner4 kept", s)
	}
	raw[2] = "-D"
	mustRun(t, "iptables", raw...)
	out, code = cli(t, "teardown", "-config", cfgPath)
	if code != 0 || !strings.Contains(out, "removed set banner4 (2 entries, left by the ipset backend)\n") || strings.Contains(out, "kept set") {
		t.Errorf("teardown with banner4 unused: exit %d\n%s", code, out)
	}
	if s := sets(); len(s) != 0 {
		t.Errorf("sets left: %q", s)
	}
}
