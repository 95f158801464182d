package firewall

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/internal/testenv"
)

// xtVariant puts iptables, ip6tables and their -restore commands of one
// backend ("legacy" or "nft", as iptables-legacy and iptables-nft) first on
// PATH for the rest of the test. It reports false if that backend is not
// installed.
func xtVariant(t *testing.T, variant string) bool {
	t.Helper()
	dir := t.TempDir()
	for _, cmd := range []string{"iptables", "ip6tables", "iptables-restore", "ip6tables-restore"} {
		base, suffix, _ := strings.Cut(cmd, "-")
		if suffix != "" {
			suffix = "-" + suffix
		}
		p, err := exec.LookPath(base + "-" + variant + suffix) // iptables-legacy-restore

		if err != nil {
			return false
		}
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			t.Fatal(err)
		}
		// The xtables multi-binaries pick the tool by the name they are
		// called by.
		if err := os.Symlink(target, filepath.Join(dir, cmd)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	if v := sh(t, "iptables", "--version"); !strings.Contains(v, map[string]string{"legacy": "(legacy)", "nft": "(nf_tables)"}[variant]) {
		t.Fatalf("iptables --version = %q, want the %s variant", v, variant)
	}
	return true
}

// otherForm rewrites the INPUT jump for ports as another iptables might
// print it (the SYN match before the port match, or the protocol as a
// number): equivalent for the kernel, different as text.
func otherForm(ports, drop string) func(*family, []string) []string {
	from := jumpRule(ports, drop)
	to := "-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -m multiport --dports " + ports + " -j BANNER"
	if drop == DropAll {
		to = "-A INPUT -p 6 -m multiport --dports " + ports + " -j BANNER"
	}
	return func(_ *family, lines []string) []string {
		out := make([]string, len(lines))
		for i, l := range lines {
			if l == from {
				l = to
			}
			out[i] = l
		}
		return out
	}
}

func backendXT(b Backend) *xt {
	if g, ok := b.(*Grouped); ok {
		b = g.Member(banner.GroupMain)
	}
	switch b := b.(type) {
	case *IPSet:
		return b.xt
	case *IPTables:
		return b.xt
	}
	return nil
}

// TestRepairJumpCheck runs Repair over and over with iptables-legacy and
// iptables-nft, for both backends and several port sets and drop modes, and
// with the jump listed in a form other than the one banner expects (as
// another iptables version could print it): there is always exactly one
// jump per family, and nothing is reported repaired when nothing was
// missing. With a listing-only check, each Repair would insert another.
func TestRepairJumpCheck(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	ctx := context.Background()
	ran := 0
	for _, variant := range []string{"legacy", "nft"} {
		t.Run(variant, func(t *testing.T) {
			if !xtVariant(t, variant) {
				t.Skipf("iptables-%s is not installed", variant)
			}
			ran++
			for _, backend := range []string{BackendIPSet, BackendIPTables} {
				for _, c := range []struct {
					ports []uint16
					list  string
					drop  string
				}{{[]uint16{25}, "25", DropNew}, {[]uint16{587, 25, 465}, "25,465,587", DropNew}, {[]uint16{25, 465}, "25,465", DropAll}} {
					t.Run(backend+"/"+c.list+"/"+c.drop, func(t *testing.T) {
						b := newBackend(t, backend, func(cfg *Config) { cfg.Ports, cfg.Drop = c.ports, c.drop })
						t.Cleanup(func() { _, _ = b.Teardown(ctx) })
						if err := b.Setup(ctx); err != nil {
							t.Fatal(err)
						}
						repairs := func(t *testing.T, n int) {
							t.Helper()
							for i := range n {
								got, err := b.Repair(ctx)
								if err != nil || got != nil {
									t.Fatalf("Repair %d with nothing missing = %q, %v", i+1, got, err)
								}
							}
							checkJumpDrop(t, c.list, c.drop)
						}
						repairs(t, 3)

						// Listed in another form: -C finds it.
						x := backendXT(b)
						x.listHook = otherForm(c.list, c.drop)
						repairs(t, 3)

						// A stale jump beside it, and banner's jump moved
						// to position 2 by an admin's rule: which listed
						// jump is banner's is unknown, yet only the stale
						// one goes (the only thing reported) and banner's
						// stays where it is.
						for _, cmd := range []string{"iptables", "ip6tables"} {
							sh(t, cmd, "-I", "INPUT", "1", "-i", "lo", "-j", "ACCEPT")
							sh(t, cmd, "-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "2525", "-j", "BANNER")
						}
						got, err := b.Repair(ctx)
						want := []string{
							"IPv4 stale jump -A INPUT -p tcp -m multiport --dports 2525 -j BANNER (deleted)",
							"IPv6 stale jump -A INPUT -p tcp -m multiport --dports 2525 -j BANNER (deleted)",
						}
						if err != nil || !slices.Equal(got, want) {
							t.Errorf("Repair with a stale jump = %q, %v; want %q", got, err, want)
						}
						for _, cmd := range []string{"iptables", "ip6tables"} {
							if js, pos := jumps(t, cmd); len(js) != 1 || js[0] != jumpRule(c.list, c.drop) || pos != 2 {
								t.Errorf("%s jumps after Repair = %q at %d, want one %q at 2 (where it was)", cmd, js, pos, jumpRule(c.list, c.drop))
							}
							sh(t, cmd, "-D", "INPUT", "-i", "lo", "-j", "ACCEPT")
						}
						repairs(t, 3)

						// Missing for real: inserted once.
						sh(t, "iptables", "-F", "INPUT")
						got, err = b.Repair(ctx)
						if err != nil || len(got) != 1 || !strings.HasPrefix(got[0], "IPv4 jump -I INPUT 1") {
							t.Errorf("Repair after iptables -F INPUT = %q, %v", got, err)
						}
						repairs(t, 3)

						// Teardown removes the jump it cannot read back.
						if _, err := removed(b.Teardown(ctx)); err != nil {
							t.Fatal(err)
						}
						for _, cmd := range []string{"iptables", "ip6tables"} {
							if js, _ := jumps(t, cmd); len(js) != 0 || shOK(cmd, "-S", "BANNER") {
								t.Errorf("%s after Teardown: jumps %q, chain left: %v", cmd, js, shOK(cmd, "-S", "BANNER"))
							}
						}
					})
				}
			}
		})
	}
	testenv.Require(t, ran > 0, "needs iptables-legacy or iptables-nft")
}

// TestTeardownCreatesNoLegacyTables: with iptables-legacy, listing a table
// creates it (nat turns connection tracking on); teardown looks for
// foreign set users only in the tables the kernel already holds, and
// leaves no new table behind.
func TestTeardownCreatesNoLegacyTables(t *testing.T) {
	if testenv.RunInNetNS(t, fwCommands...) {
		return
	}
	if !xtVariant(t, "legacy") {
		testenv.Require(t, false, "needs iptables-legacy")
		return
	}
	tables := func(t *testing.T, file string) []string {
		b, err := os.ReadFile(file)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		f := strings.Fields(string(b))
		slices.Sort(f)
		return f
	}
	ctx := context.Background()
	b := newBackend(t, BackendIPSet, nil)
	if err := b.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	before4, before6 := tables(t, "/proc/net/ip_tables_names"), tables(t, "/proc/net/ip6_tables_names")
	if _, err := removed(b.Teardown(ctx)); err != nil {
		t.Fatal(err)
	}
	if after := tables(t, "/proc/net/ip_tables_names"); !slices.Equal(after, before4) {
		t.Errorf("IPv4 legacy tables %q after teardown, were %q", after, before4)
	}
	if after := tables(t, "/proc/net/ip6_tables_names"); !slices.Equal(after, before6) {
		t.Errorf("IPv6 legacy tables %q after teardown, were %q", after, before6)
	}
}
