package recipients

import (
	"context"
	"log/slog"
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
	tbl := load(t, []string{"example.test", "Other.Test.", "catch.test", "[192.0.2.1]"},
		filepath.Join("testdata", "virtual"), filepath.Join("testdata", "aliases"), filepath.Join("testdata", "plain"))
	tests := []struct {
		rcpt string
		want Verdict
	}{
		{"alice@example.test", Known},
		{"ALICE@Example.TEST", Known},
		{"<alice@example.test>", Known},
		{" alice@example.test ", Known},
		{"alice+news@example.test", Known},
		{"alice+news+more@example.test", Known},
		{"alice-news@example.test", Unknown}, // '-' is not a delimiter here
		{"+alice@example.test", Unknown},     // no split at the first character
		{"bob@other.test", Known},            // full address in virtual
		{"bob@example.test", Unknown},        // bob only exists in other.test
		{"postmaster@other.test", Known},     // bare local part from aliases
		{"root@example.test", Known},
		{"abuse@example.test", Known},  // "abuse:root"
		{"anything@catch.test", Known}, // @catch.test catch-all
		{"x+y@catch.test", Known},
		{"nobody@example.test", Unknown},
		{"nobody@example.test.", Unknown},
		{"alice@example.test.", Known},
		{"nobody@elsewhere.test", NotProtected},
		{"alice@sub.example.test", NotProtected},
		{"", NotProtected},
		{"<>", NotProtected},
		{"@example.test", NotProtected},
		{"alice@", NotProtected},
		{"no-at-sign", NotProtected},
		{"alice@exa mple.test", NotProtected},
		{"alice@example..test", NotProtected},
		{"a\x00@example.test", NotProtected},
		{strings.Repeat("a", 2000) + "@example.test", NotProtected},
		{`"quoted user"@example.test`, Known},
		{`"Quoted User"@Example.Test`, Known},
		{"quoted user@example.test", NotProtected}, // unquoted space
		{`"quoted@local"@example.test`, Known},
		{"quoted@local@example.test", Known}, // internal (unquoted) form
		{"carol@example.test", Known},        // "Carol@EXAMPLE.TEST." in plain
		{"dave@example.test", Known},         // "<dave@example.test>"
		{"user@[192.0.2.1]", Known},
		{"continued@example.test", Unknown}, // continuation lines are not entries
		{"commented@example.test", Unknown},
		{"mailhost.example@example.test", Unknown}, // values are not keys
	}
	for _, tt := range tests {
		t.Run(tt.rcpt, func(t *testing.T) {
			if got := tbl.Check(tt.rcpt); got != tt.want {
				t.Errorf("Check(%q) = %v, want %v", tt.rcpt, got, tt.want)
			}
		})
	}
	s := tbl.Stats()
	if s.Domains != 4 || s.CatchAlls != 1 || s.Reloads != 1 || s.Known == 0 || s.Unknown == 0 || s.NotProtected == 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestDelimiters(t *testing.T) {
	for _, tt := range []struct {
		delim, rcpt string
		want        Verdict
	}{
		{"+", "alice+x@example.test", Known},
		{"+", "alice-x@example.test", Unknown},
		{"+-", "alice-x@example.test", Known},
		{"+-", "alice+x-y@example.test", Known},
		{"", "alice+x@example.test", Unknown},
	} {
		t.Run(tt.delim+" "+tt.rcpt, func(t *testing.T) {
			tbl, err := Load(Config{Domains: []string{"example.test"}, Files: []string{filepath.Join("testdata", "virtual")}, RecipientDelimiter: tt.delim})
			if err != nil {
				t.Fatal(err)
			}
			if got := tbl.Check(tt.rcpt); got != tt.want {
				t.Errorf("Check(%q) = %v, want %v", tt.rcpt, got, tt.want)
			}
		})
	}
}

func TestParseLine(t *testing.T) {
	tests := []struct {
		line string
		want entry
		err  bool
	}{
		{"alice@example.test  alice", entry{keyAddress, "alice", "example.test"}, false},
		{"postmaster: root", entry{keyBare, "postmaster", ""}, false},
		{"root:admin@example.net", entry{keyBare, "root", ""}, false},
		{"@example.test catchall", entry{keyCatchAll, "", "example.test"}, false},
		{"<x@example.test> y", entry{keyAddress, "x", "example.test"}, false},
		{"alice\r", entry{keyBare, "alice", ""}, false},
		{"Alice@Example.Test.", entry{keyAddress, "alice", "example.test"}, false},
		{`"a b"@example.test x`, entry{keyAddress, "a b", "example.test"}, false},
		{`"a\"b"@example.test`, entry{keyAddress, `a"b`, "example.test"}, false},
		{`"quoted@local"@d`, entry{keyAddress, "quoted@local", "d"}, false},
		{"u@[IPv6:2001:db8::1] x", entry{keyAddress, "u", "[ipv6:2001:db8::1]"}, false},
		{"# comment", entry{}, false},
		{"\tcontinuation", entry{}, false},
		{"   # indented comment", entry{}, false},
		{"", entry{}, false},
		{"a\x00b", entry{}, true},
		{"/^spam/ REJECT", entry{}, true},
		{`"unterminated@d`, entry{}, true},
		{": value", entry{}, true},
		{"<>", entry{}, true},
		{"a@", entry{}, true},
		{"a@.d", entry{}, true},
		{"a@d..e", entry{}, true},
		{"a@d/e", entry{}, true},
		{"\vx@d", entry{}, true},
		{"@", entry{}, true},
		{strings.Repeat("a", 2000) + "@d", entry{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := parseLine(tt.line)
			if (err != nil) != tt.err || got != tt.want {
				t.Errorf("parseLine(%q) = %+v, %v; want %+v, err=%v", tt.line, got, err, tt.want, tt.err)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bad := write("bad", "alice@example.test\nweird@exa/mple.test\n")
	long := write("long", "alice@example.test\n"+strings.Repeat("a", MaxLineLength+10)+"\n")
	nul := write("nul", "alice@example.test\nb\x00b@example.test\n")
	regexp := write("regexp", "/^a/ OK\n")
	empty := write("empty", "# nothing\n@other.test x\n")
	good := write("good", "alice@example.test\n")
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"bad key", Config{Domains: []string{"example.test"}, Files: []string{bad}}, bad + ":2:"},
		{"long line", Config{Domains: []string{"example.test"}, Files: []string{long}}, long + ":2: line longer than"},
		{"NUL", Config{Domains: []string{"example.test"}, Files: []string{nul}}, nul + ":2: NUL"},
		{"regexp", Config{Domains: []string{"example.test"}, Files: []string{regexp}}, regexp + ":1: regexp"},
		{"no entries", Config{Domains: []string{"example.test"}, Files: []string{empty}}, "protected domain example.test: no recipient"},
		{"missing", Config{Domains: []string{"example.test"}, Files: []string{filepath.Join(dir, "missing")}}, "no such file"},
		{"bad domain", Config{Domains: []string{"bad domain"}, Files: []string{good}}, "domains[0]"},
		{"no domains", Config{Files: []string{good}}, "domains: must not be empty"},
		{"no files", Config{Domains: []string{"example.test"}}, "files: must not be empty"},
		{"twice", Config{Domains: []string{"example.test"}, Files: []string{good, good}}, "files[1]"},
		{"delimiter", Config{Domains: []string{"example.test"}, Files: []string{good}, RecipientDelimiter: "@"}, "recipient_delimiter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Load: %v, want %q", err, tc.want)
			}
		})
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
	// A broken file (here: truncated to nothing for the domain) is
	// refused by the watcher and by Reload; the old table stays.
	if err := os.WriteFile(path, []byte("# truncated\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for tbl.Stats().ReloadErrors == 0 {
		if time.Now().After(deadline) {
			t.Fatal("broken file not noticed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if err := tbl.Reload(); err == nil {
		t.Fatal("Reload of a broken file succeeded")
	}
	if tbl.Check("bob@example.test") != Known {
		t.Error("a failed reload dropped the old table")
	}
	if s := tbl.Stats(); s.Reloads != 2 || s.ReloadErrors < 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestMinFileAge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "virtual")
	if err := os.WriteFile(path, []byte("alice@example.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tbl, err := Load(Config{Domains: []string{"example.test"}, Files: []string{path}, MinFileAge: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("alice@example.test\nbob@example.test\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if tbl.changed(time.Now()) {
		t.Error("a file modified just now counts as stable")
	}
	if !tbl.changed(time.Now().Add(2 * time.Hour)) {
		t.Error("change not seen once the file is old enough")
	}
}

func TestConcurrentCheckAndReload(t *testing.T) {
	tbl, err := Load(Config{Domains: []string{"example.test"}, Files: []string{filepath.Join("testdata", "virtual")}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			if err := tbl.Reload(); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for ctx.Err() == nil {
		if tbl.Check("alice@example.test") != Known {
			t.Fatal("alice unknown during reload")
		}
	}
	<-done
}

// BenchmarkCheckPlain is Check of an address in its normal form, as
// Postfix's recipient= mostly is (the fast path): 0 allocations.
func BenchmarkCheckPlain(b *testing.B) {
	tbl, err := Load(Config{Domains: []string{"example.test"}, Files: []string{filepath.Join("testdata", "virtual")}, RecipientDelimiter: "+"})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if tbl.Check("alice@example.test") != Known {
			b.Fatal("alice unknown")
		}
	}
}

func BenchmarkCheck(b *testing.B) {
	tbl, err := Load(Config{Domains: []string{"example.test"}, Files: []string{filepath.Join("testdata", "virtual")}, RecipientDelimiter: "+"})
	if err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			tbl.Check("Alice+tag@Example.Test")
		}
	})
}

func FuzzParseLine(f *testing.F) {
	for _, s := range []string{
		"alice@example.test x", "postmaster: root", "@d", "#c", "\tx", "a\x00", `"q"@d`, "<a@b>",
		`"a\"b"@d`, "u@[IPv6:2001:db8::1]", "/re/ x", "a@b@c", "Carol@D.", ": x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		e, err := parseLine(line)
		if err != nil {
			if e != (entry{}) {
				t.Fatalf("parseLine(%q) returned %+v with error %v", line, e, err)
			}
			return
		}
		switch e.kind {
		case keyNone:
			if e != (entry{}) {
				t.Fatalf("keyNone with data: %+v", e)
			}
		case keyAddress, keyBare, keyCatchAll:
			if (e.kind != keyCatchAll) != (e.local != "") || (e.kind != keyBare) != (e.domain != "") {
				t.Fatalf("parseLine(%q) = %+v: inconsistent", line, e)
			}
			if e.local != strings.ToLower(e.local) || e.domain != strings.ToLower(e.domain) || strings.HasSuffix(e.domain, ".") {
				t.Fatalf("parseLine(%q) = %+v: not normalised", line, e)
			}
			// A listed address must be found by Check in its own form.
			if e.kind == keyAddress && !strings.ContainsAny(e.local, "\"\\ \t<>") {
				if l, d, ok := parseRecipient(e.local + "@" + e.domain); !ok || l != e.local || d != e.domain {
					t.Fatalf("parseLine(%q) = %+v but parseRecipient gives %q %q %v", line, e, l, d, ok)
				}
			}
		default:
			t.Fatalf("bad kind %v", e.kind)
		}
	})
}

// FuzzPlainRecipient checks Check's fast path against the full parse:
// whatever plainRecipient accepts, parseRecipient splits the same way.
func FuzzPlainRecipient(f *testing.F) {
	for _, s := range []string{
		"carol@example.test", "a.b+tag@x-y.example", "a@b", "@b", "a@", "a@.b", "a@b.", "a@b..c", "a..b@c",
		"a@b@c", "A@b", "a b@c", "a@b+c", ".a@b", "a.@b", "_@_", "a@[1.2.3.4]", "\"a\"@b", "a@b.c.",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rcpt string) {
		l, d, ok := plainRecipient(rcpt)
		if !ok {
			return
		}
		wl, wd, wok := parseRecipient(rcpt)
		if !wok || l != wl || d != wd || l+"@"+d != rcpt {
			t.Fatalf("plainRecipient(%q) = %q, %q; parseRecipient: %q, %q, %v", rcpt, l, d, wl, wd, wok)
		}
	})
}
