package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/control"
	"github.com/banner-mta/banner/internal/journaltest"
	"github.com/banner-mta/banner/internal/testenv"
)

// journalDirEnv points a child daemon's journal source at a directory.
const journalDirEnv = "BANNER_TEST_JOURNAL_DIR"

func init() {
	if d := os.Getenv(journalDirEnv); d != "" {
		journalctlArgs = []string{"--directory=" + d}
	}
}

// writeJournalBacklog writes a journal file in dir with perClient "too
// many errors" entries for each client, interleaved.
func writeJournalBacklog(t *testing.T, dir string, clients, perClient int) {
	t.Helper()
	w := journaltest.NewWriter(t, filepath.Join(dir, "backlog.journal"))
	w.Clock = time.Now().Add(-time.Minute)
	for range perClient {
		for c := range clients {
			w.Postfix("postfix/smtpd", fmt.Sprintf("too many errors after RCPT from unknown[10.%d.%d.%d]", c>>16&255, c>>8&255, c&255))
		}
	}
	w.Close()
}

// TestJournalStopMidStreamNothingLostNothingTwice: the daemon reads a
// journal (journal = true, a real journal file); a stop in the middle and
// a start handle every entry's event exactly once over the two runs: the
// cursor saved is the one of the last entry the engine handled.
func TestJournalStopMidStreamNothingLostNothingTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 50,000 entries")
	}
	journaltest.Require(t)
	dir := t.TempDir()
	jdir := journaltest.Dir(t)
	const clients, per = 10000, 5
	writeJournalBacklog(t, jdir, clients, per)
	journalctlArgs = []string{"--directory=" + jdir}
	defer func() { journalctlArgs = nil }()
	start := func() (*Daemon, func()) {
		cfg := testConfig(t, dir)
		cfg.LogWatch.Files = nil
		cfg.LogWatch.Journal = true
		cfg.LogWatch.FromStart = true
		cfg.Ban.FindTime = config.Duration(time.Hour)
		d, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		return d, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		}
	}
	d, stop := start()
	for d.engine.Stats().Events["too_many_errors"] < 1000 {
		time.Sleep(time.Millisecond)
	}
	stop()
	first := d.engine.Stats().Events["too_many_errors"]
	t.Logf("first run stopped after %d of %d events", first, clients*per)
	d, stop = start()
	want := uint64(clients*per) - first
	deadline := time.Now().Add(2 * time.Minute)
	for d.engine.Stats().Events["too_many_errors"] < want && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	s := d.Status()
	stop()
	if got := first + s.Engine.Events["too_many_errors"]; got != clients*per {
		t.Errorf("%d events over both runs, want %d (one per entry)", got, clients*per)
	}
	if j := s.LogWatch.Journal; j == nil || j.Cursor == "" || j.CursorLost != 0 {
		t.Errorf("journal state %+v", j)
	}
}

// TestJournalKill9ResumesAtCursor: after kill -9 of a daemon reading the
// journal, the next one resumes at the saved cursor: it reads neither the
// whole journal again nor loses the rest (repeats after the cursor are
// possible, as with files, and ban nobody twice).
func TestJournalKill9ResumesAtCursor(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon twice")
	}
	testenv.Require(t, os.Geteuid() == 0, "the control socket answers root only: run as root")
	journaltest.Require(t)
	dir := t.TempDir()
	jdir := journaltest.Dir(t)
	const clients, per = 20000, 4
	writeJournalBacklog(t, jdir, clients, per)
	cfg := testConfig(t, dir)
	text := "[ban]\nfindtime = \"1h\"\nallow_mynetworks = false\n[firewall]\nbackend = \"none\"\n" +
		"[logwatch]\nfiles = []\njournal = true\nfrom_start = true\n" +
		"[store]\npath = \"" + cfg.Store.Path + "\"\n[control]\nsocket = \"" + cfg.Control.Socket + "\"\n[metrics]\nlisten = \"\"\n" +
		"[policy]\nlisten = [\"inet:" + testenv.FreeAddr(t) + "\"]\n[dnsbl]\nresolvers = [\"127.0.0.1:53\"]\n"
	path := filepath.Join(dir, "banner.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	var childOut testenv.SyncBuffer
	startChild := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestChildDaemon$", "-test.count", "1")
		cmd.Env = append(os.Environ(), childDaemonEnv+"="+path, journalDirEnv+"="+jdir)
		cmd.Stdout, cmd.Stderr = &childOut, &childOut
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	status := func() (Status, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := control.Do(ctx, cfg.Control.Socket, control.Request{Cmd: control.CmdStatus})
		if err != nil {
			return Status{}, false
		}
		var s Status
		return s, json.Unmarshal(resp.Status, &s) == nil
	}
	child := startChild()
	var before uint64
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		if s, ok := status(); ok && s.Engine.Events["too_many_errors"] > 5000 && s.LogWatch != nil && s.LogWatch.Journal != nil && s.LogWatch.Journal.CursorSaves >= 3 {
			before = s.Engine.Events["too_many_errors"]
			break
		}
		time.Sleep(time.Millisecond)
	}
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	if before == 0 {
		t.Fatalf("the first daemon handled too little before the kill; it said:\n%s", childOut.String())
	}
	// journalctl died with it (Pdeathsig).
	time.Sleep(100 * time.Millisecond)
	if out, _ := exec.Command("pgrep", "-f", "journalctl --directory="+jdir).Output(); len(out) > 0 {
		t.Errorf("journalctl outlived the killed daemon: pids %s", out)
	}

	child = startChild()
	defer func() { child.Process.Signal(syscall.SIGKILL); child.Wait() }()
	var s Status
	deadline = time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var ok bool
		if s, ok = status(); ok && s.LogWatch != nil && s.LogWatch.Journal != nil && s.LogWatch.Journal.Entries > 0 && s.Engine.Events["too_many_errors"]+before >= clients*per {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	s, _ = status()
	second := s.Engine.Events["too_many_errors"]
	t.Logf("first run: at least %d events before kill -9; second run: %d", before, second)
	if before+second < clients*per {
		t.Errorf("%d + %d events < %d entries: entries lost", before, second, clients*per)
	}
	if second >= clients*per {
		t.Errorf("the second run read all %d entries again: the cursor was not used", second)
	}
	if s.Engine.Bans != 0 {
		t.Errorf("%d bans: entries read twice counted twice", s.Engine.Bans)
	}
}

// TestPreflightSuggestsJournal: files that do not exist while the journal
// holds Postfix entries give the warning that suggests journal = true.
func TestPreflightSuggestsJournal(t *testing.T) {
	journaltest.Require(t)
	jdir := journaltest.Dir(t)
	w := journaltest.NewWriter(t, filepath.Join(jdir, "a.journal"))
	w.Postfix("postfix/smtpd", "connect from unknown[192.0.2.1]")
	w.Close()
	journalctlArgs = []string{"--directory=" + jdir}
	defer func() { journalctlArgs = nil }()
	cfg := testConfig(t, t.TempDir())
	cfg.LogWatch.Files = []string{filepath.Join(t.TempDir(), "mail.log")}
	var all []string
	for _, w := range Preflight(cfg) {
		all = append(all, w.String())
	}
	if !strings.Contains(strings.Join(all, "\n"), "journal = true") {
		t.Fatalf("warnings: %q", all)
	}
	cfg.LogWatch.Files, cfg.LogWatch.Journal = nil, true
	for _, w := range Preflight(cfg) {
		if strings.Contains(w.String(), "journal") {
			t.Errorf("journal = true over a journal with Postfix entries: %s", w)
		}
	}
}
