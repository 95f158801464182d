package logwatch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/banner-mta/banner/banner"
)

// JournalName is the name under which the journal source's cursor is
// saved with the log positions.
const JournalName = "journal"

// JournalFilter are the journalctl match arguments the journal source and
// `banner test-log --journal` read: the mail facility (Postfix's default
// syslog_facility), so that journalctl skips the rest of the journal by its
// index; the entries are then narrowed to Postfix's identifiers
// (isPostfixIdentifier), which journalctl cannot match by prefix.
var JournalFilter = []string{"SYSLOG_FACILITY=2"}

// journalFields are the fields journalctl writes (--output-fields); it
// always adds __CURSOR and __REALTIME_TIMESTAMP.
const journalFields = "SYSLOG_IDENTIFIER,MESSAGE,_PID,SYSLOG_PID"

// JournalConfig configures a journal source.
type JournalConfig struct {
	// Command is the journalctl program; "" = "journalctl".
	Command string
	// Args go before banner's own arguments: which journal to read
	// (tests: "--directory=DIR"); none = the local system journal.
	Args []string
	// FromStart reads the whole journal when no cursor is saved, instead of
	// from now.
	FromStart bool
	// Positions holds the cursor (under JournalName); nil = none.
	Positions PositionStore
	// SaveInterval is the least time between two cursor saves while
	// reading; the cursor is saved when reading pauses and when Run ends.
	SaveInterval time.Duration
	// MaxLineLen: longer entries are skipped (and counted).
	MaxLineLen int
	// RestartMin and RestartMax bound the back-off before journalctl is
	// started again after it exited; 0 = 1s and 30s.
	RestartMin, RestartMax time.Duration
	Logger                 *slog.Logger
}

// JournalState is where the journal source stands (banner status).
type JournalState struct {
	Cursor       string    `json:"cursor"`           // of the last entry read (saved once the engine handled the entries before it)
	Entries      uint64    `json:"entries"`          // Postfix entries read
	Other        uint64    `json:"other"`            // mail-facility entries of other programs, skipped
	LastEntry    time.Time `json:"last_entry"`       // time of the last entry read
	Restarts     uint64    `json:"restarts"`         // journalctl restarts after it exited
	CursorLost   uint64    `json:"cursor_lost"`      // saved cursors no longer in the journal (vacuumed)
	BadEntries   uint64    `json:"bad_entries"`      // output lines that were no journal entry
	Running      bool      `json:"running"`          // journalctl is running
	LastError    string    `json:"last_error"`       // why journalctl last exited, or its last stderr line
	CursorSaves  uint64    `json:"cursor_saves"`     // cursors handed to the engine
	CursorErrors uint64    `json:"cursor_errors"`    // failed cursor loads and saves
	Command      []string  `json:"command,omitzero"` // the journalctl command line last started
}

// journalSource reads the systemd journal through `journalctl --follow
// --output=json`.
type journalSource struct {
	cfg JournalConfig
	log *slog.Logger

	mu        sync.Mutex // held while an entry is emitted and while the cursor is saved
	cursor    string     // of the last entry emitted
	saved     string     // last cursor handed to Positions
	lastSave  time.Time
	st        JournalState // under stMu
	stMu      sync.Mutex
	lines     atomic.Uint64
	bytes     atomic.Uint64
	longLines atomic.Uint64
}

// newJournalSource returns a Source reading the journal per cfg.
func newJournalSource(cfg JournalConfig) *journalSource {
	if cfg.Command == "" {
		cfg.Command = "journalctl"
	}
	if cfg.RestartMin <= 0 {
		cfg.RestartMin = time.Second
	}
	if cfg.RestartMax <= 0 {
		cfg.RestartMax = 30 * time.Second
	}
	if cfg.MaxLineLen <= 0 {
		cfg.MaxLineLen = 16 * 1024
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &journalSource{cfg: cfg, log: log.With("source", "journal")}
}

// journalArgs returns journalctl's arguments: follow from after cursor
// (inclusive: the entry at the cursor is dropped by the reader, which so
// learns whether the cursor still exists), or since since, or from the
// start, or from now.
func (s *journalSource) journalArgs(cursor string, since time.Time, fromStart bool) []string {
	args := append([]string(nil), s.cfg.Args...)
	args = append(args, "--follow", "--output=json", "--all", "--output-fields="+journalFields, "--quiet")
	switch {
	case cursor != "":
		args = append(args, "--no-tail", "--cursor="+cursor)
	case !since.IsZero():
		args = append(args, "--no-tail", "--since=@"+strconv.FormatInt(since.Unix(), 10))
	case fromStart:
		args = append(args, "--no-tail")
	default:
		args = append(args, "--lines=0")
	}
	return append(args, JournalFilter...)
}

func (s *journalSource) Run(ctx context.Context, emit func(*Record)) error {
	cursor := ""
	if s.cfg.Positions != nil {
		pos, ok, err := s.cfg.Positions.LogPosition(JournalName)
		switch {
		case err != nil:
			s.stat(func(st *JournalState) { st.CursorErrors++ })
			s.log.Error("cannot load the saved journal cursor; reading from now", "err", err)
		case ok && pos.Cursor != "":
			if _, _, valid := parseCursor(pos.Cursor); valid {
				cursor = pos.Cursor
			} else {
				s.log.Error("saved journal cursor is malformed; reading from now", "cursor", pos.Cursor)
			}
		}
	}
	s.mu.Lock()
	s.cursor, s.saved = cursor, cursor
	s.mu.Unlock()
	fromStart := s.cfg.FromStart && cursor == ""
	if cursor == "" && !fromStart {
		// From now: after the newest entry there is. (journalctl --follow
		// --lines=0 was seen to skip entries written right after it.)
		tail, err := s.tailCursor(ctx)
		switch {
		case err != nil:
			s.log.Warn("cannot find the journal's newest entry; reading what comes from now on", "err", err)
		case tail == "":
			fromStart = true // an empty journal: all of it is new
		default:
			s.mu.Lock()
			s.cursor = tail // saved by the saver: a restart goes on from here
			s.mu.Unlock()
		}
	}

	// Save the cursor when reading pauses.
	saveCtx, stopSaver := context.WithCancel(context.Background())
	var saverDone sync.WaitGroup
	if s.cfg.Positions != nil {
		saverDone.Add(1)
		go func() { defer saverDone.Done(); s.saver(saveCtx) }()
	}
	defer func() {
		stopSaver()
		saverDone.Wait()
		s.save(true)
	}()

	started := time.Now()
	backoff := s.cfg.RestartMin
	for first := true; ; first = false {
		s.mu.Lock()
		cur := s.cursor
		s.mu.Unlock()
		var since time.Time
		if cur == "" && !first && !fromStart {
			since = started // nothing read yet: what came since we started
		}
		t0 := time.Now()
		n, err := s.runOnce(ctx, emit, cur, since, fromStart)
		if ctx.Err() != nil {
			return nil
		}
		if n > 0 || time.Since(t0) > 4*s.cfg.RestartMax {
			backoff = s.cfg.RestartMin
		}
		if cur != "" && n == 0 && err != nil && strings.Contains(err.Error(), "cursor") {
			// journalctl refuses the cursor itself: start over from now.
			s.log.Error("journalctl refused the saved cursor; reading from now on", "cursor", cur, "err", err)
			s.mu.Lock()
			s.cursor = ""
			s.mu.Unlock()
			started, fromStart = time.Now(), false
		}
		s.stat(func(st *JournalState) {
			st.Restarts++
			if err != nil {
				st.LastError = err.Error()
			}
		})
		s.log.Warn("journalctl exited; starting it again", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, s.cfg.RestartMax)
	}
}

// tailCursor returns the cursor of the newest entry journalctl's filter
// selects, "" if there is none.
func (s *journalSource) tailCursor(ctx context.Context) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	args := append(append([]string(nil), s.cfg.Args...), "--quiet", "--no-pager", "--output=json", "--output-fields=MESSAGE", "--lines=1")
	out, err := exec.CommandContext(ctx, s.cfg.Command, append(args, JournalFilter...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return "", err
	}
	var e journalEntry
	for line := range bytes.SplitSeq(bytes.TrimSpace(out), []byte("\n")) {
		if parseJournalEntry(line, &e) == nil && len(e.Cursor) > 0 {
			return string(e.Cursor), nil
		}
	}
	return "", nil
}

// runOnce runs one journalctl until it exits or ctx ends and returns how
// many entries it delivered and why it ended.
func (s *journalSource) runOnce(ctx context.Context, emit func(*Record), cursor string, since time.Time, fromStart bool) (uint64, error) {
	args := s.journalArgs(cursor, since, fromStart)
	cmd := exec.CommandContext(ctx, s.cfg.Command, args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 2 * time.Second
	// journalctl ends with banner, even after a kill -9.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", s.cfg.Command, err)
	}
	s.stat(func(st *JournalState) { st.Running, st.Command = true, append([]string{s.cfg.Command}, args...) })
	var lastStderr atomic.Value
	var errWG sync.WaitGroup
	errWG.Add(1)
	go func() {
		defer errWG.Done()
		sc := bufio.NewScanner(stderr)
		logged := 0
		for sc.Scan() {
			line := sc.Text()
			lastStderr.Store(line)
			if logged < 20 {
				s.log.Warn("journalctl", "stderr", line)
				logged++
			}
		}
	}()

	n := s.read(stdout, emit, cursor)
	io.Copy(io.Discard, stdout)
	errWG.Wait()
	err = cmd.Wait()
	s.stat(func(st *JournalState) { st.Running = false })
	if ctx.Err() != nil {
		return n, ctx.Err()
	}
	if l, _ := lastStderr.Load().(string); l != "" {
		if err == nil {
			err = errors.New(l)
		} else {
			err = fmt.Errorf("%w: %s", err, l)
		}
	}
	if err == nil {
		err = errors.New("journalctl exited")
	}
	return n, err
}

// read delivers the entries of one journalctl's output. The first entry
// is the one at cursor if the cursor still exists (already read: dropped);
// otherwise the cursor was vacuumed away and reading resumes at the oldest
// entry after it, which is said once.
func (s *journalSource) read(r io.Reader, emit func(*Record), cursor string) uint64 {
	br := bufio.NewReaderSize(r, 256<<10)
	var (
		e         journalEntry
		rec       Record
		n         uint64
		checkSeen = cursor != ""
		cs, ci, _ = parseCursor(cursor)
		long      bool
	)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = true
			continue
		}
		if len(line) == 0 && err != nil {
			return n
		}
		s.bytes.Add(uint64(len(line)))
		if long || len(line) > s.cfg.MaxLineLen+4096 {
			long = false
			s.longLines.Add(1)
			continue
		}
		if perr := parseJournalEntry(bytes.TrimRight(line, "\n"), &e); perr != nil || len(e.Cursor) == 0 {
			s.stat(func(st *JournalState) { st.BadEntries++ })
			continue
		}
		if checkSeen {
			checkSeen = false
			if string(e.Cursor) == cursor {
				continue // the entry at the saved cursor: read before
			}
			if es, ei, ok := parseCursor(string(e.Cursor)); ok && es == cs && ei <= ci {
				continue
			}
			s.stat(func(st *JournalState) { st.CursorLost++ })
			s.log.Warn("the saved journal cursor is no longer in the journal (vacuumed or rotated away): resuming at the oldest entry after it; entries in between were not read",
				"cursor", cursor, "resumed_at", string(e.Cursor), "entry_time", e.Time)
		}
		s.mu.Lock()
		if isPostfixIdentifier(e.Identifier) && e.HasMessage {
			if len(e.Message) > s.cfg.MaxLineLen {
				s.longLines.Add(1)
			} else {
				rec = Record{Identifier: e.Identifier, PID: e.PID, Time: e.Time, Message: e.Message, Cursor: string(e.Cursor)}
				emit(&rec)
				s.lines.Add(1)
				n++
				s.stat(func(st *JournalState) { st.Entries++; st.LastEntry = e.Time })
			}
		} else {
			s.stat(func(st *JournalState) { st.Other++ })
		}
		s.cursor = string(e.Cursor)
		s.stat(func(st *JournalState) { st.Cursor = s.cursor })
		s.mu.Unlock()
		if br.Buffered() == 0 || time.Since(s.lastSaveTime()) >= s.cfg.SaveInterval {
			s.save(false)
		}
	}
}

func (s *journalSource) lastSaveTime() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastSave
}

// saver saves the cursor every SaveInterval while it changes.
func (s *journalSource) saver(ctx context.Context) {
	iv := max(s.cfg.SaveInterval, 100*time.Millisecond)
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.save(false)
		}
	}
}

// save hands the cursor of the last entry emitted to Positions if it
// changed (and, unless final, SaveInterval passed). It holds mu, so the
// cursor goes after the events of the entries before it.
func (s *journalSource) save(final bool) {
	if s.cfg.Positions == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cursor == s.saved || !final && time.Since(s.lastSave) < s.cfg.SaveInterval {
		return
	}
	s.lastSave = time.Now()
	if err := s.cfg.Positions.SetLogPosition(JournalName, banner.LogPosition{Cursor: s.cursor}); err != nil {
		s.stat(func(st *JournalState) { st.CursorErrors++ })
		s.log.Error("saving the journal cursor", "err", err)
		return
	}
	s.saved = s.cursor
	s.stat(func(st *JournalState) { st.CursorSaves++ })
}

func (s *journalSource) stat(f func(*JournalState)) {
	s.stMu.Lock()
	f(&s.st)
	s.stMu.Unlock()
}

func (s *journalSource) Stats() SourceStats {
	s.stMu.Lock()
	st := s.st
	s.stMu.Unlock()
	return SourceStats{Lines: s.lines.Load(), Bytes: s.bytes.Load(), LongLines: s.longLines.Load(),
		PositionSaves: st.CursorSaves, PositionErrors: st.CursorErrors, Journal: &st}
}

// parseCursor returns a journal cursor's sequence number ID (s=) and
// sequence number (i=, hexadecimal), and whether it looks like a cursor.
func parseCursor(c string) (seqID string, seq uint64, ok bool) {
	if c == "" {
		return "", 0, false
	}
	var haveS, haveI bool
	for part := range strings.SplitSeq(c, ";") {
		k, v, found := strings.Cut(part, "=")
		if !found {
			return "", 0, false
		}
		switch k {
		case "s":
			seqID, haveS = v, v != ""
		case "i":
			n, err := strconv.ParseUint(v, 16, 64)
			if err != nil {
				return "", 0, false
			}
			seq, haveI = n, true
		}
	}
	return seqID, seq, haveS && haveI
}

// JournalPostfixEntries runs journalctl (command, "" = journalctl, with
// args before its own: which journal) over the last entries of the mail
// facility and returns how many of the last 200 are Postfix's and the
// newest one's time. For `banner run -check`.
func JournalPostfixEntries(ctx context.Context, command string, args ...string) (n int, last time.Time, err error) {
	if command == "" {
		command = "journalctl"
	}
	a := append(append([]string(nil), args...), "--quiet", "--no-pager", "--output=json", "--output-fields="+journalFields, "--lines=200")
	out, err := exec.CommandContext(ctx, command, append(a, JournalFilter...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			err = fmt.Errorf("%w: %s", err, bytes.TrimSpace(ee.Stderr))
		}
		return 0, time.Time{}, fmt.Errorf("%s: %w", command, err)
	}
	var e journalEntry
	for line := range bytes.SplitSeq(out, []byte("\n")) {
		if parseJournalEntry(line, &e) == nil && isPostfixIdentifier(e.Identifier) {
			n++
			last = e.Time
		}
	}
	return n, last, nil
}

// JournalReader is the output of a journalctl reading the local journal's
// Postfix entries once, for `banner test-log --journal`.
type JournalReader struct {
	io.Reader
	cmd    *exec.Cmd
	stderr bytes.Buffer
}

// OpenJournal starts journalctl (command, "" = journalctl; args before
// its own: which journal) writing the mail facility's entries as JSON,
// from since (journalctl's --since syntax: "2026-12-01", "-1h", "today";
// "" = all).
func OpenJournal(ctx context.Context, command string, args []string, since string) (*JournalReader, error) {
	if command == "" {
		command = "journalctl"
	}
	a := append(append([]string(nil), args...), "--quiet", "--no-pager", "--output=json", "--all", "--output-fields="+journalFields)
	if since != "" {
		a = append(a, "--since="+since)
	}
	r := &JournalReader{cmd: exec.CommandContext(ctx, command, append(a, JournalFilter...)...)}
	r.cmd.Stderr = &r.stderr
	out, err := r.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := r.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", command, err)
	}
	r.Reader = out
	return r, nil
}

// Close waits for journalctl and returns its failure with its stderr.
func (r *JournalReader) Close() error {
	if err := r.cmd.Wait(); err != nil {
		return fmt.Errorf("journalctl: %w: %s", err, bytes.TrimSpace(r.stderr.Bytes()))
	}
	return nil
}
