package daemon

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/store"
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

// TestNewFailsCleanly: a start-up failure is an error naming the cause,
// not a panic, and what was opened is released (the store can be opened
// again).
func TestNewFailsCleanly(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	tests := []struct {
		name string
		edit func(*config.File)
		want string
	}{
		{"policy port in use", func(f *config.File) { f.Policy.Listen = []string{"inet:" + busy.Addr().String()} }, "address already in use"},
		{"metrics port in use", func(f *config.File) { f.Metrics.Listen = busy.Addr().String() }, "metrics"},
		{"unix listener in a missing directory", func(f *config.File) {
			f.Policy.Listen = []string{"unix:" + filepath.Join(dir, "missing", "policy.sock")}
		}, "policy service"},
		{"resolv.conf missing", func(f *config.File) {
			f.DNSBL.Resolvers, f.DNSBL.ResolvConf = nil, filepath.Join(dir, "no-resolv.conf")
		}, "dnsbl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := config.Default()
			f.Store.Path = filepath.Join(dir, "banner.db")
			f.Control.Socket = filepath.Join(dir, "banner.sock")
			f.Firewall.Backend = "none"
			f.LogWatch.Files = nil
			f.Metrics.Listen = ""
			f.Policy.Listen = []string{"inet:127.0.0.1:0"}
			f.DNSBL.Resolvers = []string{"127.0.0.1:53"}
			f.Ban.AllowMynetworks = false
			tt.edit(f)
			d, err := New(context.Background(), f, slog.New(slog.DiscardHandler))
			if err == nil {
				d.close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not mention %q", err, tt.want)
			}
			// The store was closed again: bbolt would time out on a
			// second open of a file still held.
			st, err := store.Open(f.Store.Path)
			if err != nil {
				t.Fatalf("store still held after failed New: %v", err)
			}
			st.Close()
		})
	}
}

// TestReloadNoticesConfigChange: SIGHUP re-reads recipient tables only;
// a changed configuration file gets a warning saying a restart is needed,
// an invalid one an error.
func TestReloadNoticesConfigChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "banner.toml")
	text := fmt.Sprintf(`
[policy]
listen = ["inet:127.0.0.1:0"]
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
`, filepath.Join(dir, "banner.db"), filepath.Join(dir, "banner.sock"))
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
