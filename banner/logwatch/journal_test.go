package logwatch

import (
	"bytes"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/internal/journaltest"
	"github.com/banner-mta/banner/internal/testenv"
)

// memPositions is a PositionStore in memory.
type memPositions struct {
	mu  sync.Mutex
	pos map[string]banner.LogPosition
}

func (m *memPositions) LogPosition(name string) (banner.LogPosition, bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p, ok := m.pos[name]
	return p, ok, nil
}

func (m *memPositions) SetLogPosition(name string, p banner.LogPosition) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pos == nil {
		m.pos = map[string]banner.LogPosition{}
	}
	m.pos[name] = p
	return nil
}

func (m *memPositions) cursor() string {
	p, _, _ := m.LogPosition(JournalName)
	return p.Cursor
}

// postfix writes a Postfix entry of identifier carrying numLine(n)'s message.
func postfix(j *journaltest.Writer, ident string, n int) {
	l := numLine(n)
	j.Postfix(ident, strings.TrimSuffix(l[strings.Index(l, "NOQUEUE"):], "\n"))
}

func requireJournalTools(t testing.TB) { t.Helper(); journaltest.Require(t) }

func newJournalFile(t testing.TB, path string) *journaltest.Writer {
	return journaltest.NewWriter(t, path)
}

// journalWatcher returns a watcher reading the journal directory dir.
func journalWatcher(t *testing.T, dir string, pos PositionStore, fromStart bool, c *collector, log *slog.Logger) *Watcher {
	t.Helper()
	cfg := testConfig("")
	cfg.Files = nil
	cfg.Journal = true
	cfg.JournalArgs = []string{"--directory=" + dir}
	cfg.FromStart = fromStart
	cfg.Positions = pos
	cfg.SaveInterval = 50 * time.Millisecond
	if log != nil {
		cfg.Logger = log
	}
	w, err := New(cfg, c.emit)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// TestJournalSource: Postfix's entries (single and multi-instance) are
// read from a real journal and matched from their split fields; other
// programs' mail entries are skipped; the cursor saved is the last entry's.
func TestJournalSource(t *testing.T) {
	requireJournalTools(t)
	dir := t.TempDir()
	j := newJournalFile(t, filepath.Join(dir, "a.journal"))
	for i := range 5 {
		postfix(j, "postfix/smtpd", i)
	}
	j.Entry("SYSLOG_IDENTIFIER", "dovecot", "SYSLOG_FACILITY", "2", "MESSAGE", "imap-login: Login: user=<x>")
	j.Entry("SYSLOG_IDENTIFIER", "postfix/smtpd", "SYSLOG_FACILITY", "2", "MESSAGE", "connect from unknown[192.0.2.1] \xff\x01 \"quoted\"")
	j.Entry("SYSLOG_IDENTIFIER", "sshd", "SYSLOG_FACILITY", "4", "MESSAGE", "not mail")
	postfix(j, "postfix-out/smtpd", 5)
	j.Close()

	pos := &memPositions{}
	c := newCollector()
	w := journalWatcher(t, dir, pos, true, c, nil)
	stop := runWatcher(t, w)
	waitFor(t, "six matches", func() bool { return c.count() == 6 })
	waitFor(t, "the cursor saved", func() bool { return pos.cursor() != "" && pos.cursor() == w.Stats().Journal.Cursor })
	stop()
	c.exactlyOnce(t, 6)
	st := w.Stats()
	if st.Journal == nil || st.Journal.Entries != 7 || st.Journal.Other != 1 || st.Lines != 7 || st.Journal.BadEntries != 0 {
		t.Fatalf("stats %+v, journal %+v", st, st.Journal)
	}
	out, err := exec.Command("journalctl", "--directory="+dir, "-n1", "-o", "json", "SYSLOG_FACILITY=2").Output()
	if err != nil {
		t.Fatal(err)
	}
	var e journalEntry
	if err := parseJournalEntry(bytes.TrimSpace(out), &e); err != nil || string(e.Cursor) != pos.cursor() {
		t.Fatalf("saved cursor %q, last entry's %q (%v)", pos.cursor(), e.Cursor, err)
	}
}

// TestJournalSourceResumes: reading stopped in the middle of a stream and
// started again loses and repeats no entry, by unique ids; the first start
// without a cursor reads from now unless FromStart.
func TestJournalSourceResumes(t *testing.T) {
	requireJournalTools(t)
	dir := t.TempDir()
	j := newJournalFile(t, filepath.Join(dir, "a.journal"))
	postfix(j, "postfix/smtpd", 1000) // before the first start: not read
	time.Sleep(300 * time.Millisecond)

	pos := &memPositions{}
	c := newCollector()
	const total = 3000
	next := 0
	for round := range 3 {
		w := journalWatcher(t, dir, pos, false, c, nil)
		stop := runWatcher(t, w)
		if round == 0 {
			waitFor(t, "journalctl running", func() bool { st := w.Stats().Journal; return st != nil && st.Running })
			time.Sleep(300 * time.Millisecond)
		}
		// Write while reading; stop in the middle.
		for ; next < (round+1)*total/3; next++ {
			postfix(j, "postfix/smtpd", next)
		}
		want := c.count() + 1
		waitFor(t, "some of the new entries", func() bool { return c.count() >= want })
		stop()
	}
	// What was written after the last stop is read by a fourth run.
	w := journalWatcher(t, dir, pos, false, c, nil)
	stop := runWatcher(t, w)
	waitFor(t, "every entry", func() bool { return c.count() >= total })
	time.Sleep(200 * time.Millisecond)
	stop()
	c.exactlyOnce(t, total)
	if c.seen[1000] != 1 {
		t.Fatal("an entry from before the first start was read")
	}
}

// TestJournalSourceCursorGone: a saved cursor whose journal file is gone
// (vacuumed) resumes at the oldest entry after it and says so once; a
// malformed cursor reads from now.
func TestJournalSourceCursorGone(t *testing.T) {
	requireJournalTools(t)
	dir := t.TempDir()
	a := newJournalFile(t, filepath.Join(dir, "a.journal"))
	for i := range 5 {
		postfix(a, "postfix/smtpd", i)
	}
	a.Close()
	b := newJournalFile(t, filepath.Join(dir, "b.journal"))
	b.Clock, b.Mono = a.Clock.Add(time.Second), a.Mono+1e6 // the same boot, later
	for i := 5; i < 10; i++ {
		postfix(b, "postfix/smtpd", i)
	}
	b.Close()
	out, err := exec.Command("journalctl", "--directory="+dir, "-o", "json", "SYSLOG_FACILITY=2").Output()
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	var e journalEntry
	if len(lines) != 10 || parseJournalEntry(lines[2], &e) != nil {
		t.Fatalf("journal: %s", out)
	}
	pos := &memPositions{}
	pos.SetLogPosition(JournalName, banner.LogPosition{Cursor: string(e.Cursor)})
	os.Remove(filepath.Join(dir, "a.journal")) // as --vacuum-files does

	var logs testenv.SyncBuffer
	c := newCollector()
	w := journalWatcher(t, dir, pos, false, c, slog.New(slog.NewTextHandler(&logs, nil)))
	stop := runWatcher(t, w)
	waitFor(t, "the second file", func() bool { return c.count() == 5 })
	stop()
	for i := 5; i < 10; i++ {
		if c.seen[i] != 1 {
			t.Fatalf("seen %v", c.seen)
		}
	}
	if n := strings.Count(logs.String(), "no longer in the journal"); n != 1 || w.Stats().Journal.CursorLost != 1 {
		t.Fatalf("said %d times: %s", n, logs.String())
	}

	// A malformed cursor: from now.
	pos.SetLogPosition(JournalName, banner.LogPosition{Cursor: "garbage"})
	c = newCollector()
	logs = testenv.SyncBuffer{}
	w = journalWatcher(t, dir, pos, false, c, slog.New(slog.NewTextHandler(&logs, nil)))
	stop = runWatcher(t, w)
	waitFor(t, "journalctl running", func() bool { st := w.Stats().Journal; return st != nil && st.Running })
	time.Sleep(300 * time.Millisecond)
	stop()
	if c.count() != 0 || !strings.Contains(logs.String(), "malformed") {
		t.Fatalf("read %d; logs %s", c.count(), logs.String())
	}
}

// TestJournalctlRestarted: a journalctl that exits is started again with
// back-off, its stderr logged, and reading resumes at the cursor.
func TestJournalctlRestarted(t *testing.T) {
	requireJournalTools(t)
	dir := t.TempDir()
	j := newJournalFile(t, filepath.Join(dir, "a.journal"))
	for i := range 3 {
		postfix(j, "postfix/smtpd", i)
	}
	// A journalctl that runs the real one, but exits after 0.3 s until the
	// marker file exists.
	marker := filepath.Join(dir, "steady")
	script := filepath.Join(dir, "journalctl")
	os.WriteFile(script, []byte(`#!/bin/sh
if [ -e `+marker+` ]; then exec journalctl "$@"; fi
echo "simulated failure" >&2
timeout 0.3 journalctl "$@"
exit 3
`), 0o755)
	pos := &memPositions{}
	var logs testenv.SyncBuffer
	c := newCollector()
	cfg := testConfig("")
	cfg.Files = nil
	cfg.Journal, cfg.JournalCommand, cfg.JournalArgs = true, script, []string{"--directory=" + dir}
	cfg.FromStart, cfg.Positions, cfg.SaveInterval = true, pos, 10*time.Millisecond
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	w, err := New(cfg, c.emit)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWatcher(t, w)
	waitFor(t, "two restarts", func() bool { return w.Stats().Journal.Restarts >= 2 })
	os.WriteFile(marker, nil, 0o644)
	for i := 3; i < 6; i++ {
		postfix(j, "postfix/smtpd", i)
	}
	deadline := time.Now().Add(20 * time.Second)
	for c.count() < 6 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stop()
	c.exactlyOnce(t, 6)
	if !strings.Contains(logs.String(), "simulated failure") || !strings.Contains(logs.String(), "starting it again") {
		t.Fatalf("logs: %s", logs.String())
	}
}
