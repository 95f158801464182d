package ownnets

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/internal/testenv"
)

func prefixes(t *testing.T, ss ...string) []netip.Prefix {
	t.Helper()
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestParseMynetworks(t *testing.T) {
	files := map[string]string{
		"/etc/postfix/mynets": "# office\n192.0.2.0/24, [2001:db8:1::]/48\n\n198.51.100.7 # printer\nbogus\n",
		"/etc/postfix/huge":   strings.Repeat("#", maxPatternFile+1),
	}
	readFile := func(name string) ([]byte, error) {
		if s, ok := files[name]; ok {
			return []byte(s), nil
		}
		return nil, errors.New("no such file")
	}
	tests := []struct {
		name, value string
		want        []string // prefixes
		skipped     int
	}{
		{"postfix 3 default", "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128\n",
			[]string{"127.0.0.0/8", "127.0.0.0/8", "::1/128"}, 0},
		{"commas and spaces", "192.0.2.1,  198.51.100.0/24,[2001:db8::]/32",
			[]string{"192.0.2.1/32", "198.51.100.0/24", "2001:db8::/32"}, 0},
		{"bare ipv6 address in brackets", "[2001:db8::5]", []string{"2001:db8::5/128"}, 0},
		{"host bits are masked", "192.0.2.77/24", []string{"192.0.2.0/24"}, 0},
		{"pattern file", "/etc/postfix/mynets", []string{"192.0.2.0/24", "2001:db8:1::/48", "198.51.100.7/32"}, 1},
		{"missing file", "/etc/postfix/none 192.0.2.1", []string{"192.0.2.1/32"}, 1},
		{"oversized file", "/etc/postfix/huge", nil, 1},
		{"tables are skipped", "cidr:/etc/postfix/network_table hash:/etc/postfix/x 10.0.0.0/8", []string{"10.0.0.0/8"}, 2},
		{"exclusions are skipped", "!192.0.2.5 192.0.2.0/24", []string{"192.0.2.0/24"}, 1},
		{"unbracketed ipv6", "2001:db8::/32 ::1", nil, 2},
		{"empty", "", nil, 0},
		{"hostile", "[ [::1 []/8 [::1]x [::1]/129 1.2.3.4/33 1.2.3.4/-1 1.2.3.4/ 1.2.3.4/0008 999.1.1.1 [fe80::1%eth0] [::ffff:1.2.3.4]/95 example.com .example.com \x00 $mynetworks",
			nil, 16},
		{"ipv4 prefix length 0 is kept", "0.0.0.0/0", []string{"0.0.0.0/0"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, skipped := ParseMynetworks(tt.value, readFile)
			want := prefixes(t, tt.want...)
			if !slices.Equal(got, want) {
				t.Errorf("prefixes = %v, want %v", got, want)
			}
			if len(skipped) != tt.skipped {
				t.Errorf("skipped %d %v, want %d", len(skipped), skipped, tt.skipped)
			}
			for _, s := range skipped {
				if s.Reason == "" || s.String() == "" {
					t.Errorf("skipped entry without a reason: %#v", s)
				}
			}
		})
	}
}

func FuzzParseMynetworks(f *testing.F) {
	for _, s := range []string{"127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128", "!1.2.3.4,cidr:/x", "[::1]/", "/file"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		nets, skipped := ParseMynetworks(s, func(string) ([]byte, error) { return []byte(s), nil })
		for _, p := range nets {
			if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
				t.Fatalf("%q gave unusable prefix %v", s, p)
			}
		}
		for _, sk := range skipped {
			if sk.Reason == "" {
				t.Fatalf("%q: skipped %q without a reason", s, sk.Entry)
			}
		}
	})
}

func TestLocal(t *testing.T) {
	got, err := Local()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range got {
		if !p.IsSingleIP() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Errorf("Local() gave %v, want plain single addresses", p)
		}
	}
	// Every Linux host has loopback up unless it is a fresh namespace.
	t.Logf("local addresses: %v", got)
}

// TestPostfixMynetworks runs the real postconf of an installed Postfix on
// config directories of its own (a fresh Postfix install may have no
// /etc/postfix/main.cf at all): Postfix's computed default, an explicit
// value, and a directory without main.cf, which must fail.
func TestPostfixMynetworks(t *testing.T) {
	if _, err := exec.LookPath("postconf"); err != nil {
		if _, err := os.Stat("/usr/sbin/postconf"); err != nil {
			testenv.Require(t, false, "postconf (Postfix) is not installed")
		}
	}
	ctx := context.Background()
	confDir := func(t *testing.T, mainCF string) string {
		dir := t.TempDir()
		for name, text := range map[string]string{"main.cf": mainCF, "master.cf": ""} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}

	// No mynetworks in main.cf: Postfix computes it from the interfaces,
	// and loopback is always among them.
	nets, skipped, err := PostfixMynetworks(ctx, confDir(t, ""), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("default mynetworks: %v, skipped %v", nets, skipped)
	if !slices.ContainsFunc(nets, func(p netip.Prefix) bool { return p.Contains(netip.MustParseAddr("127.0.0.1")) }) {
		t.Errorf("default mynetworks %v lacks loopback", nets)
	}

	// An explicit value, spread over a continuation line, with an entry
	// too broad to allowlist: parsed as written; the daemon, not this
	// package, leaves out what TooBroad reports.
	nets, skipped, err = PostfixMynetworks(ctx, confDir(t, "mynetworks = 127.0.0.0/8, [::1]/128 192.0.2.0/24\n  0.0.0.0/0\n"), 10*time.Second)
	want := prefixes(t, "127.0.0.0/8", "::1/128", "192.0.2.0/24", "0.0.0.0/0")
	if err != nil || !slices.Equal(nets, want) || len(skipped) != 0 {
		t.Errorf("explicit mynetworks = %v, skipped %v, %v; want %v", nets, skipped, err, want)
	}
	if len(nets) > 0 && !banner.TooBroad(nets[len(nets)-1]) {
		t.Errorf("TooBroad(%v) = false", nets[len(nets)-1])
	}

	if _, _, err := PostfixMynetworks(ctx, t.TempDir(), 10*time.Second); err == nil {
		t.Error("postconf -c with an empty directory (no main.cf) did not fail")
	}
}

func TestReadPatternFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readPatternFile(fifo); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("FIFO: %v, want a refusal (reading it would block)", err)
	}
	big := filepath.Join(dir, "big")
	os.WriteFile(big, make([]byte, 3*maxPatternFile), 0o600)
	if b, err := readPatternFile(big); err != nil || len(b) != maxPatternFile+1 {
		t.Errorf("big file: %d bytes, %v; want maxPatternFile+1", len(b), err)
	}
	nets, skipped := ParseMynetworks(big, readPatternFile)
	if len(nets) != 0 || len(skipped) != 1 || !strings.Contains(skipped[0].Reason, "larger than") {
		t.Errorf("big pattern file: %v %v", nets, skipped)
	}
}
