package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/internal/testenv"
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
	logFile := testenv.Fixture(t, "maillog/sample.log")
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

// TestTestLogInputs: test-log reads plain and gzip-compressed logs (told
// by the magic bytes, not the name) from a file or from standard input
// ("-"). A damaged input still gets the report of the complete lines read
// before the damage, then an error naming the input, and exit status 1.
func TestTestLogInputs(t *testing.T) {
	sample := filepath.Join("..", "..", "conf", "banner.toml")
	plainPath := filepath.Join("testdata", "mail.log")
	gzPath := filepath.Join("testdata", "mail.log.2.gz") // gzip -9 -n of mail.log
	plain, err := os.ReadFile(plainPath)
	if err != nil {
		t.Fatal(err)
	}
	gz, err := os.ReadFile(gzPath)
	if err != nil {
		t.Fatal(err)
	}
	total := bytes.Count(plain, []byte("\n")) // 20

	// flushed is mail.log's first ten lines and half the eleventh,
	// compressed and flushed, then cut off there: a copy interrupted at a
	// known place. The unknown_user lines (2-6) are all in it.
	lines := bytes.SplitAfter(plain, []byte("\n"))
	var fb bytes.Buffer
	zw := gzip.NewWriter(&fb)
	zw.Write(bytes.Join(lines[:10], nil))
	zw.Write(lines[10][:40])
	if err := zw.Flush(); err != nil {
		t.Fatal(err)
	}
	flushed := bytes.Clone(fb.Bytes())

	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	noSuffix := write("mail.log.1", gz) // compressed, but not named .gz
	halfGz := write("half.log.gz", gz[:len(gz)/2])
	flushedGz := write("flushed.log.gz", flushed)
	headerOnly := write("header.gz", gz[:2])
	badHeader := write("bad.gz", []byte("\x1f\x8bnot really gzip\n"))
	corrupt := write("corrupt.gz", append(bytes.Clone(gz[:20]), make([]byte, 200)...))
	empty := write("empty.log", nil)

	tests := []struct {
		name     string
		args     []string
		stdin    io.Reader
		code     int
		lines    int // -1: no report expected; -2: some, fewer than total
		wantOut  []string
		wantErr  []string
		notInOut []string
	}{
		{"plain file", []string{plainPath}, nil, 0, total, []string{"Would ban 1 address(es)", "203.0.113.45/32"}, nil, nil},
		{"gzip file", []string{gzPath}, nil, 0, total, []string{"Would ban 1 address(es)", "203.0.113.45/32", "top addresses for rbl:\n  198.51.100.7"}, nil, nil},
		{"gzip file without .gz in its name", []string{noSuffix}, nil, 0, total, []string{"Would ban 1 address(es)"}, nil, nil},
		{"plain standard input", []string{"-"}, bytes.NewReader(plain), 0, total, []string{"Would ban 1 address(es)"}, nil, nil},
		{"gzip standard input (zcat-less pipe)", []string{"-"}, bytes.NewReader(gz), 0, total, []string{"Would ban 1 address(es)"}, nil, nil},
		{"empty standard input", []string{"-"}, strings.NewReader(""), 0, 0, []string{"Would ban 0 address(es)"}, nil, nil},
		{"empty file", []string{empty}, nil, 0, 0, []string{"Would ban 0 address(es)"}, nil, nil},
		{"gzip truncated half-way", []string{halfGz}, nil, 1, -2, nil,
			[]string{"banner test-log: reading " + halfGz + ": gzip data truncated", "complete line(s) before it"}, nil},
		{"gzip truncated mid-line: the partial line is dropped", []string{flushedGz}, nil, 1, 10, []string{"Would ban 1 address(es)", "203.0.113.45/32"},
			[]string{"reading " + flushedGz + ": gzip data truncated", "the report covers the 10 complete line(s) before it"}, []string{"4A0007BBC"}},
		{"truncated gzip on standard input", []string{"-"}, bytes.NewReader(flushed), 1, 10, nil,
			[]string{"reading standard input: gzip data truncated"}, nil},
		{"read error on standard input", []string{"-"}, io.MultiReader(bytes.NewReader(plain[:300]), iotest.ErrReader(errors.New("input/output error"))), 1, 1, nil,
			[]string{"reading standard input: input/output error; the report covers the 1 complete line(s) before it"}, nil},
		{"only a gzip magic", []string{headerOnly}, nil, 1, -1, nil, []string{headerOnly + ": not a readable gzip file: gzip data truncated"}, nil},
		{"gzip magic, bad header", []string{badHeader}, nil, 1, -1, nil, []string{badHeader + ": not a readable gzip file: gzip data corrupt"}, nil},
		{"corrupt gzip data", []string{corrupt}, nil, 1, 0, nil, []string{"reading " + corrupt + ": gzip data corrupt (flate: corrupt input"}, nil},
		{"directory", []string{dir}, nil, 1, -1, nil, []string{"read " + dir + ": is a directory"}, nil},
		{"two files, plain and gzip", []string{plainPath, gzPath}, nil, 0, 2 * total, []string{"lines read:", "203.0.113.45/32"}, nil, nil},
		{"a file without its last newline, then another", []string{write("nonl.log", plain[:len(plain)-1]), plainPath}, nil, 0, 2 * total, nil, nil, nil},
		{"one of two files truncated", []string{plainPath, flushedGz}, nil, 1, total + 10, nil,
			[]string{"reading " + flushedGz + ": gzip data truncated", "the report covers its complete lines before that, and the other files"}, nil},
		{"a missing file among others", []string{plainPath, filepath.Join(dir, "nope.log")}, nil, 1, -1, nil, []string{"nope.log: no such file or directory"}, nil},
		{"stdin with a file", []string{plainPath, "-"}, nil, 2, -1, nil, []string{"want log files, or - alone for standard input", "FILE...|-"}, nil},
		{"-top 1", []string{"-top", "1", plainPath}, nil, 0, total, []string{"top addresses for unknown_user:\n  203.0.113.45"}, nil, []string{"top addresses for rbl:\n  198.51.100.7  1\n  "}},
		{"-top negative", []string{"-top", "-1", plainPath}, nil, 2, -1, nil, []string{"-top -1: want 0 (all) or more"}, nil},
	}
	linesRead := regexp.MustCompile(`lines read:\s+(\d+)`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			old := stdin
			stdin = tt.stdin
			if stdin == nil {
				stdin = iotest.ErrReader(errors.New("test-log read standard input unasked"))
			}
			t.Cleanup(func() { stdin = old })
			var out, errb bytes.Buffer
			code := run(context.Background(), append([]string{"test-log", "-config", sample}, tt.args...), &out, &errb)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, &out, &errb)
			}
			m := linesRead.FindStringSubmatch(out.String())
			switch {
			case tt.lines == -1 && m != nil:
				t.Errorf("a report, want none:\n%s", &out)
			case tt.lines == -1:
			case m == nil:
				t.Errorf("no report:\n%s\nstderr:\n%s", &out, &errb)
			case tt.lines == -2:
				if n, _ := strconv.Atoi(m[1]); n <= 0 || n >= total {
					t.Errorf("lines read %d, want some of %d", n, total)
				}
			case m[1] != strconv.Itoa(tt.lines):
				t.Errorf("lines read %s, want %d", m[1], tt.lines)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, &out)
				}
			}
			for _, w := range tt.notInOut {
				if strings.Contains(out.String(), w) {
					t.Errorf("stdout has %q:\n%s", w, &out)
				}
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errb.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, &errb)
				}
			}
			if len(tt.wantErr) == 0 && errb.Len() > 0 {
				t.Errorf("stderr:\n%s", &errb)
			}
		})
	}

	// -json: a truncated input still prints the (partial) report as JSON,
	// and the error on stderr.
	old := stdin
	t.Cleanup(func() { stdin = old })
	stdin = bytes.NewReader(flushed)
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"test-log", "-config", sample, "-json", "-"}, &out, &errb)
	var got struct {
		Report struct {
			Lines int `json:"lines"`
		} `json:"report"`
		Bans []json.RawMessage `json:"would_ban"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatalf("-json output: %v\n%s", err, &out)
	}
	if code != 1 || got.Report.Lines != 10 || len(got.Bans) != 1 || !strings.Contains(errb.String(), "gzip data truncated") {
		t.Errorf("-json on a truncated gzip: exit %d, %d lines, %d bans, stderr %q; want 1, 10, 1 and the error", code, got.Report.Lines, len(got.Bans), &errb)
	}
}

// TestControlWithBrokenConfig: a configuration file broken after the
// daemon started (which keeps its own on SIGHUP) does not lock the admin
// out: ban, unban, list and status warn and use the file's control.socket,
// or the default if even that cannot be read.
func TestControlWithBrokenConfig(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "ctl.sock")
	startControl(t, sock)
	broken := filepath.Join(dir, "broken.toml")
	text := "[ban]\nmaxretry = \"five\"\n\n[control]\nsocket = \"" + sock + "\"\n"
	if err := os.WriteFile(broken, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"list", "-config", broken},
		{"status", "-json", "-config", broken},
		{"unban", "-config", broken, "192.0.2.1/32"},
	} {
		out, code := cli(t, args...)
		if code != 0 || !strings.Contains(out, "broken.toml:2") || !strings.Contains(out, "using its control.socket "+sock) {
			t.Errorf("banner %q: exit %d\n%s", args, code, out)
		}
	}
	// Not even TOML: the default socket, named in the warning.
	if err := os.WriteFile(broken, []byte("[ban\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := cli(t, "list", "-config", broken)
	if code == 0 || !strings.Contains(out, "using the default control socket "+config.Default().Control.Socket) {
		t.Errorf("unparsable config: exit %d\n%s", code, out)
	}
	// A missing file is still an error of its own.
	if out, code := cli(t, "list", "-config", filepath.Join(dir, "missing.toml")); code == 0 || strings.Contains(out, "warning") {
		t.Errorf("missing config: exit %d\n%s", code, out)
	}
}
