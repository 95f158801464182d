package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/store"
	"github.com/banner-mta/banner/internal/testenv"
)

func TestEffectiveAllowlist(t *testing.T) {
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	tests := []struct {
		name  string
		lists [][]netip.Prefix
		want  []netip.Prefix
	}{
		{"loopback and postfix default mynetworks",
			[][]netip.Prefix{pp("127.0.0.0/8", "::1/128"), pp("127.0.0.0/8", "127.0.0.0/8", "::1/128"), pp("127.0.0.1/32", "192.0.2.10/32")},
			pp("127.0.0.0/8", "192.0.2.10/32", "::1/128")},
		{"covered prefixes dropped, host bits masked",
			[][]netip.Prefix{pp("198.51.100.0/24", "198.51.100.77/25", "2001:db8::/32"), pp("2001:db8:1::5/128", "10.0.0.0/8")},
			pp("10.0.0.0/8", "198.51.100.0/24", "2001:db8::/32")},
		{"empty", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := effectiveAllowlist(tt.lists...); !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// testConfig is a configuration for tests: everything under dir, no
// firewall, policy service on a free loopback port, no log files, no
// metrics.
func testConfig(t testing.TB, dir string) *config.File {
	f := config.Default()
	f.Store.Path = filepath.Join(dir, "banner.db")
	f.Control.Socket = filepath.Join(dir, "banner.sock")
	f.Firewall.Backend = "none"
	f.LogWatch.Files = nil
	f.Metrics.Listen = ""
	f.Policy.Listen = []string{"inet:" + testenv.FreeAddr(t)}
	f.DNSBL.Resolvers = []string{"127.0.0.1:53"}
	f.Ban.AllowMynetworks = false
	return f
}

// damageStore writes a store at path with enough bans for the bans bucket
// to need a branch page, then overwrites that page with junk: the file
// opens, reading the bans panics inside bbolt.
func damageStore(t *testing.T, path string) {
	t.Helper()
	st, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	var bans []store.Ban
	for i := range 2000 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)
		bans = append(bans, store.Ban{Prefix: p, Since: now, Until: now.Add(time.Hour), Count: 1, Source: "cli", Kind: "manual"})
	}
	if err := st.PutBans(bans, nil); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	pageSize := db.Info().PageSize
	var root int64
	db.View(func(tx *bolt.Tx) error {
		root = int64(tx.Bucket([]byte("bans")).Root())
		return nil
	})
	db.Close()
	if root < 2 {
		t.Fatalf("bans bucket root page %d", root)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xa5}, pageSize), root*int64(pageSize)); err != nil {
		t.Fatal(err)
	}
}

// TestNewFailsCleanly: a start-up failure is an error naming the cause,
// not a panic, and what was opened is released: the store can be opened
// again, the policy port bound again, the control socket is gone. The
// parts that can fail cheaply are set up before the engine starts and
// touches the firewall: the none backend logs no setup for them.
func TestNewFailsCleanly(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	// A live control socket: another daemon's.
	liveSock := filepath.Join(dir, "live.sock")
	live, err := net.Listen("unix", liveSock)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	tests := []struct {
		name            string
		edit            func(*config.File)
		want            string
		firewallTouched bool
	}{
		{"policy port in use", func(f *config.File) { f.Policy.Listen = []string{"inet:" + busy.Addr().String()} }, "address already in use", false},
		{"metrics port in use", func(f *config.File) { f.Metrics.Listen = busy.Addr().String() }, "metrics", false},
		{"unix listener in a missing directory", func(f *config.File) {
			f.Policy.Listen = []string{"unix:" + filepath.Join(dir, "missing", "policy.sock")}
		}, "policyd listen", false},
		{"resolv.conf missing", func(f *config.File) {
			f.DNSBL.Resolvers, f.DNSBL.ResolvConf = nil, filepath.Join(dir, "no-resolv.conf")
		}, "dnsbl", false},
		{"control socket of a running daemon", func(f *config.File) { f.Control.Socket = liveSock }, "another banner daemon is listening", false},
		{"damaged store", func(f *config.File) {
			f.Store.Path = filepath.Join(dir, "damaged.db")
			damageStore(t, f.Store.Path)
		}, "store file damaged", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := testConfig(t, dir)
			policyAddr := testenv.FreeAddr(t)
			f.Policy.Listen = []string{"inet:" + policyAddr}
			tt.edit(f)
			var logs bytes.Buffer
			d, err := New(context.Background(), f, slog.New(slog.NewTextHandler(&logs, nil)))
			if err == nil {
				d.close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			for _, p := range []string{"store: store:", "firewall: firewall", "dnsbl: dnsbl:", "policy service: policyd", "log watcher: logwatch"} {
				if strings.Contains(err.Error(), p) {
					t.Errorf("error %q: doubled prefix %q", err, p)
				}
			}
			if touched := strings.Contains(logs.String(), "would set up chain"); touched != tt.firewallTouched {
				t.Errorf("firewall touched: %v, want %v; logs:\n%s", touched, tt.firewallTouched, logs.String())
			}
			if tt.firewallTouched && !errors.Is(err, store.ErrDamaged) {
				t.Errorf("error %q does not wrap store.ErrDamaged", err)
			}
			// The store was closed again: bbolt would time out on a
			// second open of a file still held (a damaged one is
			// refused later, on reading).
			st, err := store.Open(f.Store.Path)
			if err != nil {
				t.Fatalf("store still held after failed New: %v", err)
			}
			st.Close()
			if strings.HasPrefix(f.Policy.Listen[0], "inet:"+policyAddr) {
				l, err := net.Listen("tcp", policyAddr)
				if err != nil {
					t.Errorf("policy port still held after failed New: %v", err)
				} else {
					l.Close()
				}
			}
			if f.Control.Socket != liveSock {
				if _, err := os.Lstat(f.Control.Socket); err == nil {
					t.Errorf("control socket %s left behind", f.Control.Socket)
				}
			} else if c, err := net.Dial("unix", liveSock); err != nil {
				t.Errorf("the running daemon's control socket was removed: %v", err)
			} else {
				c.Close()
			}
		})
	}
}

// TestSecondDaemonSameChain: a second daemon started by mistake with
// another store but the same chain fails on the chain's lock before it
// touches the firewall: the first daemon's bans stay in the kernel. Once
// the first daemon is closed, the lock is free.
func TestSecondDaemonSameChain(t *testing.T) {
	if testenv.RunInNetNS(t, "ipset", "iptables", "ip6tables") {
		return
	}
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	cfgA := testConfig(t, t.TempDir())
	cfgA.Firewall.Backend = "ipset"
	a, err := New(ctx, cfgA, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	ban := netip.MustParsePrefix("192.0.2.0/24")
	if _, err := a.engine.Ban(ctx, ban, time.Hour, "test"); err != nil {
		t.Fatal(err)
	}
	inKernel := func() bool {
		t.Helper()
		es, err := a.firewall.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(es, func(e firewall.Entry) bool { return e.Prefix == ban })
	}
	if !inKernel() {
		t.Fatalf("%v not in the kernel after Ban", ban)
	}

	cfgB := testConfig(t, t.TempDir())
	cfgB.Firewall.Backend = "iptables" // the backend does not matter: the chain does
	_, err = New(ctx, cfgB, quiet)
	want := "another banner daemon (or teardown) manages chain " + cfgA.Firewall.Chain + " in this network namespace"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("second daemon: %v, want %q", err, want)
	}
	if !inKernel() {
		t.Errorf("the second daemon removed the first one's ban %v", ban)
	}
	if got := a.engine.List(); len(got) != 1 || got[0].Prefix != ban {
		t.Errorf("first daemon's bans: %v", got)
	}

	a.close()
	cfgB.Firewall.Backend = "ipset"
	b, err := New(ctx, cfgB, quiet)
	if err != nil {
		t.Fatalf("after the first daemon closed: %v", err)
	}
	b.close()
}

// TestReloadNoticesConfigChange: SIGHUP re-reads recipient tables only;
// a changed configuration file gets a warning saying a restart is needed,
// an invalid one an error.
func TestReloadNoticesConfigChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "banner.toml")
	text := fmt.Sprintf(`
[policy]
listen = ["inet:%s"]
[dnsbl]
resolvers = ["127.0.0.1:53"]
[ban]
allow_mynetworks = false
[firewall]
backend = "none"
[logwatch]
files = []
[store]
path = %q
[control]
socket = %q
[metrics]
listen = ""
`, testenv.FreeAddr(t), filepath.Join(dir, "banner.db"), filepath.Join(dir, "banner.sock"))
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	d, err := New(context.Background(), f, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer d.closeAfterFailedNew()

	d.Reload()
	if strings.Contains(logs.String(), "SIGHUP") {
		t.Errorf("unchanged file: %s", logs.String())
	}
	os.WriteFile(path, []byte(text+"\n[log]\nlevel = \"debug\"\n"), 0o600)
	d.Reload()
	if !strings.Contains(logs.String(), "restart banner to apply") {
		t.Errorf("changed file: no restart notice in %s", logs.String())
	}
	os.WriteFile(path, []byte(text+"\n[log]\nlevel = \"loud\"\n"), 0o600)
	d.Reload()
	if !strings.Contains(logs.String(), "now invalid") || !strings.Contains(logs.String(), "log.level") {
		t.Errorf("invalid file: no error in %s", logs.String())
	}
}

func TestNarrowOnly(t *testing.T) {
	var logs bytes.Buffer
	in := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("10.0.0.0/7"),
		netip.MustParsePrefix("::/0"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("2000::/15"),
	}
	got := narrowOnly(in, slog.New(slog.NewTextHandler(&logs, nil)))
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	if !slices.Equal(got, want) {
		t.Errorf("narrowOnly = %v, want %v", got, want)
	}
	if n := strings.Count(logs.String(), "too broad"); n != 4 {
		t.Errorf("%d warnings, want 4:\n%s", n, logs.String())
	}
}
