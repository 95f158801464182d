package main

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/dnsbl"
	"github.com/banner-mta/banner/internal/dnstest"
)

// TestCheckExitStatus runs `banner check` against a loopback DNS server:
// 0 listed, 1 not listed, 2 usage or configuration error, 3 could not tell.
func TestCheckExitStatus(t *testing.T) {
	dns := dnstest.Start(t)
	const (
		listedIP = "192.0.2.2" // on zen
		cleanIP  = "192.0.2.8" // on nothing
	)
	dns.Set("2.2.0.192.zen.spamhaus.org", []netip.Addr{netip.MustParseAddr("127.0.0.2")}, time.Minute)
	dns.SetServfail("broken.example.org")
	dns.SetServfail("allow.example.org")

	dir := t.TempDir()
	write := func(name, zones string) string {
		p := filepath.Join(dir, name)
		text := fmt.Sprintf("[dnsbl]\nzones = [%s]\nresolvers = [%q]\nquery_timeout = \"1s\"\n\n[policy]\nimmediate = []\n", zones, dns.Addr())
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	zen := write("zen.toml", `"zen.spamhaus.org=127.0.0.[2..11]*3"`)
	broken := write("broken.toml", `"broken.example.org*3"`)
	zenAndBroken := write("zenbroken.toml", `"zen.spamhaus.org=127.0.0.[2..11]*3", "broken.example.org*3"`)
	zenAndAllow := write("zenallow.toml", `"zen.spamhaus.org=127.0.0.[2..11]*3", "allow.example.org*-5"`)
	weakBroken := write("weak.toml", `"zen.spamhaus.org=127.0.0.[2..11]*3", "broken.example.org*1"`)
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[dnsbl]\nthreshhold = 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"listed", []string{"check", "-config", zen, listedIP}, 0, "LISTED"},
		{"not listed", []string{"check", "-config", zen, cleanIP}, 1, "not listed"},
		{"not listed, json", []string{"check", "-json", "-config", zen, cleanIP}, 1, `"listed": false`},
		{"zone failed, could list", []string{"check", "-config", broken, cleanIP}, 3, "UNKNOWN: no zone answered"},
		{"listed, a positive zone failed", []string{"check", "-config", zenAndBroken, listedIP}, 0, "LISTED (incomplete"},
		{"not listed, a zone that could list failed", []string{"check", "-config", zenAndBroken, cleanIP}, 3, "incomplete"},
		{"listed, an allowlist zone failed", []string{"check", "-config", zenAndAllow, listedIP}, 3, "incomplete"},
		{"not listed, the failed zone weighs too little", []string{"check", "-config", weakBroken, cleanIP}, 1, "incomplete"},
		{"config error", []string{"check", "-config", bad, listedIP}, 2, "dnsbl.threshhold: unknown key"},
		{"missing config", []string{"check", "-config", filepath.Join(dir, "none.toml"), listedIP}, 2, "no such file"},
		{"usage", []string{"check", "-config", zen}, 2, "want exactly one IP address"},
		{"help documents the exit status", []string{"check", "-h"}, 0, "3 could not tell"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), tt.args, &out, &errb)
			all := out.String() + errb.String()
			if code != tt.code || !strings.Contains(all, tt.want) {
				t.Errorf("banner %q: exit %d, want %d; output:\n%s\nwant it to contain %q", tt.args, code, tt.code, all, tt.want)
			}
		})
	}
}

// TestCheckVerdict covers the arithmetic of "could the failed zones change
// the verdict", including zones of weight 0 and several failed zones.
func TestCheckVerdict(t *testing.T) {
	failed := fmt.Errorf("failed")
	zone := func(w float64) dnsbl.Zone { return dnsbl.Zone{Domain: "x.example", Weight: w} }
	tests := []struct {
		name    string
		zones   []dnsbl.Zone
		results []dnsbl.ZoneResult
		thr     float64
		want    int
	}{
		{"no zones", nil, nil, 3, checkNotListed},
		{"listed", []dnsbl.Zone{zone(3)}, []dnsbl.ZoneResult{{Weight: 3, Matched: true}}, 3, checkListed},
		{"failed weight 0", []dnsbl.Zone{zone(3), zone(0)}, []dnsbl.ZoneResult{{}, {Err: failed}}, 3, checkNotListed},
		{"two failed zones together reach it", []dnsbl.Zone{zone(3), zone(1.5), zone(1.5)}, []dnsbl.ZoneResult{{}, {Err: failed}, {Err: failed}}, 3, checkUnknown},
		{"two failed zones together fall short", []dnsbl.Zone{zone(3), zone(1), zone(1)}, []dnsbl.ZoneResult{{}, {Err: failed}, {Err: failed}}, 3, checkNotListed},
		{"listed, failed allowlist cannot pull it under", []dnsbl.Zone{zone(3), zone(3), zone(-2)}, []dnsbl.ZoneResult{{Weight: 3, Matched: true}, {Weight: 3, Matched: true}, {Err: failed}}, 3, checkListed},
		{"listed, failed allowlist can pull it under", []dnsbl.Zone{zone(3), zone(-2)}, []dnsbl.ZoneResult{{Weight: 3, Matched: true}, {Err: failed}}, 3, checkUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := dnsbl.Result{Threshold: tt.thr, Zones: tt.results}
			for _, z := range tt.results {
				res.Score += z.Weight
				res.Unknown = res.Unknown || z.Err != nil
			}
			res.Listed = res.Score >= tt.thr
			if got := checkVerdict(res, tt.zones); got != tt.want {
				t.Errorf("checkVerdict = %d, want %d", got, tt.want)
			}
		})
	}
}
