package recipients

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func load(t *testing.T, domains []string, files ...string) *Table {
	t.Helper()
	tbl, err := Load(Config{Domains: domains, Files: files, RecipientDelimiter: "+"})
	if err != nil {
		t.Fatal(err)
	}
	return tbl
}

func TestCheck(t *testing.T) {
	tbl := load(t, []string{"example.test", "Other.Test.", "catch.test"},
		filepath.Join("testdata", "virtual"), filepath.Join("testdata", "aliases"))
	tests := []struct {
		rcpt string
		want Verdict
	}{
		{"alice@example.test", Known},
		{"ALICE@Example.TEST", Known},
		{"<alice@example.test>", Known},
		{"alice+news@example.test", Known},
		{"alice-news@example.test", Unknown},
		{"bob@other.test", Known},        // full address in virtual
		{"bob@example.test", Unknown},    // bob only exists in other.test
		{"postmaster@other.test", Known}, // bare local part from aliases
		{"root@example.test", Known},
		{"anything@catch.test", Known}, // @catch.test catch-all
		{"nobody@example.test", Unknown},
		{"nobody@example.test.", Unknown},
		{"nobody@elsewhere.test", NotProtected},
		{"", NotProtected},
		{"@example.test", NotProtected},
		{"alice@", NotProtected},
		{"no-at-sign", NotProtected},
		{`"quoted user"@example.test`, NotProtected},
		{"continued@example.test", Unknown}, // continuation lines are not entries
		{"commented@example.test", Unknown},
	}
	for _, tt := range tests {
		if got := tbl.Check(tt.rcpt); got != tt.want {
			t.Errorf("Check(%q) = %v, want %v", tt.rcpt, got, tt.want)
		}
	}
	if s := tbl.Stats(); s.Domains != 3 || s.CatchAlls != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		line    string
		key     string
		ok, err bool
	}{
		{"alice@example.test  alice", "alice@example.test", true, false},
		{"postmaster: root", "postmaster", true, false},
		{"root:admin@example.net", "root", true, false},
		{"@example.test catchall", "@example.test", true, false},
		{"<x@example.test> y", "x@example.test", true, false},
		{"alice\r", "alice", true, false},
		{"# comment", "", false, false},
		{"   # indented comment", "", false, false},
		{"\tcontinuation", "", false, false},
		{"", "", false, false},
		{"a\x00b", "", false, true},
		{"a@b@c", "", false, true},
		{`"quoted"@example.test`, "", false, true},
		{": value", "", false, true},
	}
	for _, tt := range tests {
		key, ok, err := ParseLine(tt.line)
		if key != tt.key || ok != tt.ok || (err != nil) != tt.err {
			t.Errorf("ParseLine(%q) = %q, %v, %v; want %q, %v, err=%v", tt.line, key, ok, err, tt.key, tt.ok, tt.err)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("alice\nweird@@x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(dir, "long")
	if err := os.WriteFile(long, []byte(strings.Repeat("a", maxLine+10)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Domains: []string{"example.test"}, Files: []string{bad}}, bad + ":2:"},
		{Config{Domains: []string{"example.test"}, Files: []string{long}}, "too long"},
		{Config{Domains: []string{"example.test"}, Files: []string{filepath.Join(dir, "missing")}}, "no such file"},
		{Config{Domains: []string{"bad domain"}}, "domains[0]"},
	} {
		_, err := Load(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Load(%+v): %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

func TestReloadKeepsOldTableOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "virtual")
	if err := os.WriteFile(path, []byte("alice@example.test x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tbl := load(t, []string{"example.test"}, path)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { tbl.WatchChanges(ctx, 10*time.Millisecond); close(done) }()

	if err := os.WriteFile(path, []byte("alice@example.test x\nbob@example.test y\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for tbl.Check("bob@example.test") != Known {
		if time.Now().After(deadline) {
			t.Fatal("change not picked up")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel() // the broken file below must meet Reload, not a half-written read by the watcher
	<-done
	if err := os.WriteFile(path, []byte("a@@b\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := tbl.Reload(); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	if tbl.Check("bob@example.test") != Known {
		t.Error("a failed reload dropped the old table")
	}
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{"alice@example.test x", "postmaster: root", "@d", "#c", "\tx", "a\x00", `"q"@d`, "<a@b>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		key, ok, err := ParseLine(line)
		if ok && (key == "" || err != nil) {
			t.Fatalf("ParseLine(%q) = %q, %v, %v", line, key, ok, err)
		}
	})
}
