package config

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/errors (go test ./banner/config/ -run TestErrorReports -args -update)")

// TestErrorReports: each testdata/errors/NAME.toml gives, in one pass and in
// file order, exactly the errors in NAME.golden (-update rewrites them).
func TestErrorReports(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "errors", "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test files: %v", err)
	}
	for _, path := range files {
		name := strings.TrimSuffix(filepath.Base(path), ".toml")
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			_, perr := Parse(filepath.Base(path), data)
			if perr == nil {
				t.Fatal("no error")
			}
			got := perr.Error() + "\n"
			golden := strings.TrimSuffix(path, ".toml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if got != string(want) {
				t.Errorf("errors\n%s\nwant\n%s", got, want)
			}
			// Every error is an *Error, and their lines never go back.
			var lines []int
			for _, e := range perr.(interface{ Unwrap() []error }).Unwrap() {
				var ce *Error
				if !errors.As(e, &ce) {
					t.Fatalf("%v is not an *Error", e)
				}
				lines = append(lines, ce.Line)
			}
			if !slices.IsSortedFunc(lines, compareLines) {
				t.Errorf("lines %v not in file order", lines)
			}
		})
	}
}

// TestThreeKindsOfErrors: a wrong type, an unknown key and a bad value are
// reported together, in line order, whatever order the checks run in.
func TestThreeKindsOfErrors(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       []string
	}{
		{"type, unknown, value", "[ban]\nmaxretry = \"five\"\nbantme = \"1h\"\nfactor = 0.5\n",
			[]string{"t.toml:2: ban.maxretry: wrong type", "t.toml:3: ban.bantme: unknown key", "t.toml:4: ban.factor: must be >= 1"}},
		{"value, type, unknown", "[ban]\nfactor = 0.5\nmaxretry = \"five\"\nbantme = \"1h\"\n",
			[]string{"t.toml:2: ban.factor: must be >= 1", "t.toml:3: ban.maxretry: wrong type", "t.toml:4: ban.bantme: unknown key"}},
		{"value, unknown, type across sections", "[log]\nlevel = \"loud\"\n[dnsbl]\nzone = []\n[ban]\nbantime = 3600\n",
			[]string{"t.toml:2: log.level: want debug", "t.toml:4: dnsbl.zone: unknown key", "t.toml:6: ban.bantime: 3600: write durations"}},
		{"bad duration string and bad value", "[ban]\nbantime = \"1x\"\nfactor = 0.5\n",
			[]string{"t.toml:2: ban.bantime: invalid duration", "t.toml:3: ban.factor: must be >= 1"}},
		{"element of an array of tables", "[[logwatch.pattern]]\nname = \"x\"\nregex = \"x\"\nweight = true\nfoo = 1\n",
			[]string{"t.toml:3: logwatch.pattern[0].regex: must contain <HOST>", "t.toml:4: logwatch.pattern[0].weight: wrong type", "t.toml:5: logwatch.pattern[0].foo: unknown key"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tc.text))
			if err == nil {
				t.Fatal("no error")
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tc.want) {
				t.Fatalf("%d errors, want %d:\n%v", len(got), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("error %d is %q, want it to start %q", i, got[i], w)
				}
			}
		})
	}
}

// TestSyntaxErrorContext: a syntax error names line and column, says what
// the parser expected and quotes the line with a caret under the column.
func TestSyntaxErrorContext(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"[ban]\nmaxretry 5\n", "t.toml:2:10: syntax error: expected '=' after key\n  2 | maxretry 5\n    |          ^"},
		{"[ban]\n\tmaxretry 5\n", "t.toml:2:11: syntax error: expected '=' after key\n  2 | \tmaxretry 5\n    | \t         ^"},
		{"[ban\nmaxretry = 3\n", "t.toml:1:5: syntax error: expected ']' to close table name\n  1 | [ban\n    |     ^"},
		{"[log]\nlevel = \"héhé\nformat = \"text\"\n", "t.toml:2:"},
		{"[ban]\nmaxretry = 3", ""}, // no error
		{"[ban]\nbantime = \"1h\"\nbantime = \"2h\"\n", "t.toml:3:1: bantime: key bantime is already defined\n  3 | bantime = \"2h\"\n    | ^"},
	} {
		_, err := Parse("t.toml", []byte(tc.text))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.text, err)
		case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
			t.Errorf("%q: error\n%v\nwant it to start\n%s", tc.text, err, tc.want)
		}
	}
	// Errors before the syntax error are reported too.
	_, err := Parse("t.toml", []byte("[ban]\nfoo = 1\n[ban\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "t.toml:2: ban.foo: unknown key") || !strings.Contains(err.Error(), "\nt.toml:3:5: syntax error") {
		t.Errorf("error\n%v\nlacks the unknown key before the syntax error", err)
	}
}

// TestKeyBelowArrayBlock: a key of the parent table written below a
// [[x.y]] block lands in the block; the error says so, for any such array.
func TestKeyBelowArrayBlock(t *testing.T) {
	for _, tc := range []struct{ text, want string }{
		{"[policy]\n[[policy.immediate]]\nzone = \"zen.spamhaus.org\"\ncodes = \"127.0.0.4\"\nbantime = \"1h\"\nskip_sasl = false\n",
			"t.toml:6: policy.immediate[0].skip_sasl: unknown key: this line is inside the [[policy.immediate]] block that starts at line 2; keys of [policy] go above it"},
		{"[[policy.immediate]]\nzone = \"zen.spamhaus.org\"\ncodes = \"127.0.0.4\"\nbantime = \"1h\"\n\n[[policy.immediate]]\nzone = \"zen.spamhaus.org\"\ncodes = \"127.0.0.5\"\nbantime = \"1h\"\nlisten = []\n",
			"t.toml:10: policy.immediate[1].listen: unknown key: this line is inside the [[policy.immediate]] block that starts at line 6; keys of [policy] go above it"},
		{"[[logwatch.pattern]]\nname = \"x\"\nregex = \"<HOST>\"\nfiles = []\n",
			"t.toml:4: logwatch.pattern[0].files: unknown key: this line is inside the [[logwatch.pattern]] block that starts at line 1; keys of [logwatch] go above it"},
		// A key of neither keeps the usual message.
		{"[[policy.immediate]]\nzone = \"zen.spamhaus.org\"\ncodes = \"127.0.0.4\"\nbantime = \"1h\"\ncodez = \"x\"\n",
			`t.toml:5: policy.immediate[0].codez: unknown key: did you mean "codes"?`},
	} {
		_, err := Parse("t.toml", []byte(tc.text))
		if err == nil || err.Error() != tc.want {
			t.Errorf("%q: error\n%v\nwant\n%s", tc.text, err, tc.want)
		}
	}
}

// immediateBlock is the shipped [[policy.immediate]] block: its header line
// and the key lines under it.
func immediateBlock(t *testing.T, sample string) (start, end int) {
	t.Helper()
	start = strings.Index(sample, "\n[[policy.immediate]]\n") + 1
	if start == 0 {
		t.Fatal("conf/banner.toml has no [[policy.immediate]] block")
	}
	end = start + strings.Index(sample[start:], "\n\n") + 1
	return start, end
}

// TestSampleImmediateComments: what conf/banner.toml's comments say about
// the [[policy.immediate]] block works when done to a copy of the file.
func TestSampleImmediateComments(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "conf", "banner.toml"))
	if err != nil {
		t.Fatal(err)
	}
	sample := string(data)
	start, end := immediateBlock(t, sample)
	block := sample[start:end]
	if n := strings.Count(block, "\n"); n != 4 {
		t.Fatalf("the block has %d lines, the comment says four:\n%s", n, block)
	}
	for _, says := range []string{
		"To have none, replace the whole block (its\n# [[policy.immediate]] line and the three lines under it) with the line\n#     immediate = []\n",
		"Deleting the block without that brings the default rule back.",
		"other keys of\n# [policy] go above it.",
	} {
		if !strings.Contains(sample[:start], says) {
			t.Fatalf("the comment above the block no longer says %q: update this test with it", says)
		}
	}
	// The block is the last thing in [policy].
	if rest := strings.TrimLeft(sample[end:], "\n"); !strings.HasPrefix(rest, "[dnsbl]\n") {
		t.Errorf("[[policy.immediate]] is not the last part of [policy]: followed by %.40q", rest)
	}

	parse := func(name, text string) *File {
		t.Helper()
		f, err := Parse(name, []byte(text))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return f
	}
	if f := parse("replaced", sample[:start]+"immediate = []\n"+sample[end:]); len(f.Policy.Immediate) != 0 {
		t.Errorf("replacing the block with immediate = [] left rules %+v", f.Policy.Immediate)
	}
	if f := parse("deleted", sample[:start]+sample[end:]); !slices.Equal(f.Policy.Immediate, Default().Policy.Immediate) {
		t.Errorf("deleting the block gave rules %+v, want the default", f.Policy.Immediate)
	}
	// A [policy] key moved to just above the block works; below it, the
	// error says where it should go.
	const setting = "\nskip_sasl = true\n"
	i := strings.Index(sample, setting)
	if i < 0 || i > start {
		t.Fatalf("no %q in [policy]", setting)
	}
	without := sample[:i+1] + sample[i+len(setting):]
	start, end = immediateBlock(t, without)
	if f := parse("above", without[:start]+"skip_sasl = false\n\n"+without[start:]); f.Policy.SkipSASL {
		t.Error("skip_sasl = false above the block not applied")
	}
	_, err = Parse("below", []byte(without[:end]+"skip_sasl = false\n"+without[end:]))
	line := strings.Count(without[:start], "\n") + 1
	if want := "policy.immediate[0].skip_sasl: unknown key: this line is inside the [[policy.immediate]] block that starts at line " +
		strconv.Itoa(line) + "; keys of [policy] go above it"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("skip_sasl below the block: %v, want %q", err, want)
	}
	// Doing both (immediate = [] and keeping the block) says what is wrong.
	_, err = Parse("both", []byte(without[:start]+"immediate = []\n\n"+without[start:]))
	if want := "and also writes [[policy.immediate]] blocks; keep only one of the two"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("immediate = [] and the block: %v, want %q", err, want)
	}
}

// TestWarningsInFileOrder: Warnings come by line, those without one last.
func TestWarningsInFileOrder(t *testing.T) {
	f, err := Parse("t.toml", []byte("[firewall]\nports = [22]\n\n[policy]\nrequest_timeout = \"12s\"\nlisten = [\"inet:192.0.2.1:10040\"]\nfail_action = \"DEFER\"\n\n[ban]\nallowlist = [\"0.0.0.0/0\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	ws := f.Warnings()
	if len(ws) < 4 {
		t.Fatalf("only %d warnings: %v", len(ws), ws)
	}
	var lines []int
	for _, w := range ws {
		lines = append(lines, w.Line)
	}
	if !slices.IsSortedFunc(lines, compareLines) {
		t.Errorf("warning lines %v not in file order: %v", lines, ws)
	}
	ws = []Warning{{Line: 0, Msg: "a"}, {Line: 7, Msg: "b"}, {Line: 2, Msg: "c"}, {Line: 0, Msg: "d"}, {Line: 2, Msg: "e"}}
	SortWarnings(ws)
	var msgs string
	for _, w := range ws {
		msgs += w.Msg
	}
	if msgs != "cebad" {
		t.Errorf("SortWarnings order %q, want \"cebad\"", msgs)
	}
}
