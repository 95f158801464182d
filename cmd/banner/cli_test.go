package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCLIArguments(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[ban]\nmaxretry = 2\nbantme = \"1h\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noDaemon := filepath.Join(dir, "nodaemon.toml")
	if err := os.WriteFile(noDaemon, []byte("[control]\nsocket = \""+filepath.Join(dir, "none.sock")+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sample := filepath.Join("..", "..", "conf", "banner.toml")
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", nil, 2, "usage: banner <command>"},
		{"help", []string{"-h"}, 0, "test-log"},
		{"unknown command", []string{"frobnicate"}, 2, `unknown command "frobnicate"`},
		{"run -h", []string{"run", "-h"}, 0, "-check"},
		{"sample config checks", []string{"run", "-check", "-config", sample}, 0, "configuration OK"},
		{"bad config names file, line and key", []string{"run", "-check", "-config", bad}, 1, "bad.toml:3: ban.bantme: unknown key"},
		{"missing config", []string{"run", "-check", "-config", filepath.Join(dir, "missing.toml")}, 1, "no such file"},
		{"run extra arg", []string{"run", "-config", sample, "extra"}, 2, `unexpected argument "extra"`},
		{"unknown flag", []string{"list", "-bogus"}, 2, "flag provided but not defined"},
		{"ban without address", []string{"ban", "-config", noDaemon}, 2, "want exactly one IP or CIDR"},
		{"ban garbage", []string{"ban", "-config", noDaemon, "300.1.2.3"}, 2, `invalid address "300.1.2.3"`},
		{"ban host bits", []string{"ban", "-config", noDaemon, "203.0.113.7/24"}, 2, "did you mean 203.0.113.0/24"},
		{"ban bad duration", []string{"ban", "-config", noDaemon, "203.0.113.7", "-for", "forever"}, 2, `invalid duration "forever"`},
		{"ban flags after address, no daemon", []string{"ban", "203.0.113.0/24", "-for", "24h", "-config", noDaemon}, 1, "banner daemon not running"},
		{"unban -all with address", []string{"unban", "-all", "-config", noDaemon, "192.0.2.1"}, 2, "-all takes no address"},
		{"list without daemon", []string{"list", "-config", noDaemon}, 1, "banner daemon not running"},
		{"check garbage", []string{"check", "not-an-ip"}, 2, `invalid IP address "not-an-ip"`},
		{"check zone", []string{"check", "fe80::1%eth0"}, 2, "invalid IP address"},
		{"test-log missing file", []string{"test-log", "-config", sample, filepath.Join(dir, "nope.log")}, 1, "no such file"},
		{"test-log bad pattern", []string{"test-log", "-config", sample, "-pattern", "no host tag", sample}, 2, "<HOST>"},
		{"version", []string{"version"}, 0, "banner "},
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

func TestTestLogOnSample(t *testing.T) {
	var out, errb bytes.Buffer
	sample := filepath.Join("..", "..", "conf", "banner.toml")
	logFile := filepath.Join("..", "..", "banner", "logwatch", "testdata", "sample.log")
	code := run(context.Background(), []string{"test-log", "-config", sample, logFile}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"lines read:", "rbl", "unknown_user", "Would ban"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
