package logwatch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// crashLine is the line of issue 12 item 8 (what
// `printf '<13>1 2026-12-02T06:20:00Z mx postfix/smtpd 1 - [x k="abc\\\n'`
// appends): an RFC 5424 structured-data element that ends in an escape.
const crashLine = `<13>1 2026-12-02T06:20:00Z mx postfix/smtpd 1 - [x k="abc\` + "\n"

// TestParse5424Unterminated: structured data cut off anywhere, including
// right after an escaping backslash, is no syslog prefix and never reads
// past the end of the line.
func TestParse5424Unterminated(t *testing.T) {
	for _, line := range []string{
		crashLine,
		strings.TrimSuffix(crashLine, "\n"),
		`<13>1 2026-12-02T06:20:00Z mx postfix/smtpd 1 - [x k="abc\"`,
		`<13>1 2026-12-02T06:20:00Z mx postfix/smtpd 1 - [x k="abc\]`,
		`<13>1 2026-12-02T06:20:00Z mx postfix/smtpd 1 - [x k="abc"`,
		`<13>1 2026-12-02T06:20:00Z mx postfix/smtpd 1 - [x k="abc"][`,
		`<13>1 2026-12-02T06:20:00Z mx postfix/smtpd 1 - [`,
		`<13>1 2026-12-02T06:20:00Z mx postfix/smtpd 1 - [\`,
	} {
		if s, ok := parseSyslog([]byte(line)); ok {
			t.Errorf("%q parsed as %q / %q", line, s.prog, s.msg)
		}
	}
	// a complete element that ends the line is still read
	s, ok := parseSyslog([]byte(`<13>1 2026-12-02T06:20:00Z mx postfix/smtpd 1 - [x k="a\\"]`))
	if !ok || string(s.prog) != "postfix/smtpd" || len(s.msg) != 0 {
		t.Errorf("complete element: %v %q %q", ok, s.prog, s.msg)
	}
}

// TestWatcherCrashLine: the crash line appended to a real followed file is
// read like any other line, and the lines after it still match.
func TestWatcherCrashLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	cfg := testConfig(path)
	cfg.FromStart = true
	if err := os.WriteFile(path, []byte(numLine(0)+crashLine+numLine(1)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	w := newWatcher(t, cfg, c)
	stop := runWatcher(t, w)
	waitFor(t, "3 lines", func() bool { return w.Stats().Lines == 3 })
	appendFile(t, path, crashLine+numLine(2))
	waitFor(t, "5 lines", func() bool { return w.Stats().Lines == 5 })
	stop()
	c.exactlyOnce(t, 3)
	if st := w.Stats(); st.MatchPanics != 0 || st.NoSyslogPrefix != 2 {
		t.Errorf("match panics %d, no prefix %d; want 0, 2", st.MatchPanics, st.NoSyslogPrefix)
	}
}

// TestWatcherRecoversMatchPanic: a panic while matching one line of a real
// file is recovered; the line is skipped, counted in Stats.MatchPanics
// (and its JSON), logged once with the file and the line's offset, and
// the watcher reads on.
func TestWatcherRecoversMatchPanic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mail.log")
	cfg := testConfig(path)
	cfg.FromStart = true
	var logs syncBuf
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	const n = 6
	var b strings.Builder
	for i := range n {
		b.WriteString(numLine(i))
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	w := newWatcher(t, cfg, c)
	// The matcher asks its clock once per matched line: lines 2 and 4 panic.
	var calls atomic.Int64
	w.m.now = func() time.Time {
		if k := calls.Add(1); k == 3 || k == 5 {
			panic(fmt.Sprintf("test panic %d", k))
		}
		return testNow
	}
	stop := runWatcher(t, w)
	waitFor(t, "the lines", func() bool { return w.Stats().Lines == n })
	stop()
	st := w.Stats()
	if st.MatchPanics != 2 || c.count() != n-2 || c.seen[2] != 0 || c.seen[4] != 0 {
		t.Fatalf("panics %d, emitted %v; want 2 panics, lines 2 and 4 skipped", st.MatchPanics, c.seen)
	}
	out := logs.String()
	if k := strings.Count(out, "matching a log entry panicked"); k != 1 {
		t.Errorf("logged %d times, want once (rate-limited):\n%s", k, out)
	}
	want := fmt.Sprintf("file=%s inode=", path)
	off := fmt.Sprintf("offset=%d ", 2*len(numLine(0)))
	if !strings.Contains(out, want) || !strings.Contains(out, off) || !strings.Contains(out, "test panic 3") {
		t.Errorf("log lacks %q, %q or the panic:\n%s", want, off, out)
	}
	js, _ := json.Marshal(st)
	if !strings.Contains(string(js), `"match_panics":2`) {
		t.Errorf("JSON %s", js)
	}
}

// TestAnalyzeRecoversMatchPanic: test-log's analysis skips and counts a
// line whose matching panics, and reads on; the crash line itself is read.
func TestAnalyzeRecoversMatchPanic(t *testing.T) {
	m := newTestMatcher(t, nil)
	var calls atomic.Int64
	m.now = func() time.Time {
		if calls.Add(1) == 2 {
			panic("test panic")
		}
		return testNow
	}
	in := numLine(0) + crashLine + numLine(1) + numLine(2)
	rep, err := Analyze(strings.NewReader(in), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Lines != 4 || rep.Matched != 2 || rep.MatchPanics != 1 || !strings.Contains(rep.FirstPanic, "line 3: test panic") {
		t.Fatalf("report %+v", rep)
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil || !strings.Contains(buf.String(), "matching panicked:  1") {
		t.Errorf("text (%v):\n%s", err, buf.String())
	}
}
