package logwatch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/internal/testenv"
)

// TestWatcherMatchesAnalyze: following testdata/maillog/sample.log (top level) from the start
// gives the same matches and counters as Analyze, over two files at once.
func TestWatcherMatchesAnalyze(t *testing.T) {
	data, err := os.ReadFile(testenv.Fixture(t, "maillog/sample.log"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	cfg := testConfig(a)
	cfg.Files = []string{a, b}
	cfg.FromStart = true
	cfg.OwnRejectMarker = "blocked by banner"
	cfg.Now = func() time.Time { return now }
	var mu sync.Mutex
	var got []Match
	w, err := New(cfg, func(m Match) { mu.Lock(); got = append(got, m); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	stop := runWatcher(t, w)
	waitFor(t, "both files", func() bool { return w.Stats().Lines == 4000 })
	stop()
	rep, err := Analyze(bytes.NewReader(data), w.Matcher(), nil)
	if err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	if uint64(len(got)) != 2*rep.Matched || st.OwnRejects != 2*rep.OwnRejects || st.BadTimestamps != 0 {
		t.Fatalf("watcher %d matches %+v, analyze %+v", len(got), st, rep)
	}
	for _, p := range rep.Patterns {
		if st.Matched[p.Name] != 2*p.Matches {
			t.Errorf("%s: watcher %d, analyze %d (x2)", p.Name, st.Matched[p.Name], p.Matches)
		}
	}
	if st.Bytes != uint64(2*len(data)) {
		t.Errorf("bytes %d", st.Bytes)
	}
	if err := w.Run(context.Background()); err == nil {
		t.Error("second Run accepted")
	}
}

type failingStore struct{}

func (failingStore) LogPosition(string) (banner.LogPosition, bool, error) {
	return banner.LogPosition{}, false, errors.New("disk on fire")
}
func (failingStore) SetLogPosition(string, banner.LogPosition) error {
	return errors.New("disk on fire")
}

// TestPositionStoreErrors: a broken store is counted and logged, reading goes on.
func TestPositionStoreErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	appendFile(t, path, numLine(0))
	cfg := testConfig(path)
	cfg.FromStart = true
	cfg.Positions = failingStore{}
	c := newCollector()
	w := newWatcher(t, cfg, c)
	stop := runWatcher(t, w)
	waitFor(t, "line", func() bool { return c.count() == 1 })
	appendFile(t, path, numLine(1))
	waitFor(t, "line", func() bool { return c.count() == 2 })
	stop()
	if st := w.Stats(); st.PositionErrors < 2 || st.PositionSaves != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestMissingFileState: a file missing at start is warned about once with
// the Debian hint, shown as not open in Stats, and read from its start when
// it appears.
func TestMissingFileState(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	cfg := testConfig(path)
	var logs syncBuf
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	w, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fs := w.Stats().Files; len(fs) != 1 || fs[0].Path != path || fs[0].Open {
		t.Fatalf("before Run: %+v", fs)
	}
	stop := runWatcher(t, w)
	defer stop()
	waitFor(t, "the missing-file state", func() bool {
		f := w.Stats().Files[0]
		return !f.Open && strings.Contains(f.Error, "no such file")
	})
	if n := strings.Count(logs.String(), "log file does not exist"); n != 1 || !strings.Contains(logs.String(), "maillog_file") {
		t.Errorf("missing-file warning %d times:\n%s", n, logs.String())
	}
	if err := os.WriteFile(path, []byte("Nov 25 10:00:00 mx postfix/smtpd[1]: connect from x[192.0.2.1]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the line to be read", func() bool {
		f := w.Stats().Files[0]
		return f.Open && f.Lines == 1 && f.Offset == f.Size && f.Inode != 0 && !f.LastLine.IsZero()
	})
	if !strings.Contains(logs.String(), "log file appeared") {
		t.Errorf("no notice when the file appeared:\n%s", logs.String())
	}
}

// syncBuf is a bytes.Buffer safe for a logger and a test to share.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestWatcherIgnoredService: matches from the default ignore_services
// (submission, submissions, smtps) are counted in Stats.IgnoredService and
// not emitted; the same reject from postfix/smtpd is.
func TestWatcherIgnoredService(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	cfg := testConfig(path)
	cfg.FromStart = true
	reject := "NOQUEUE: reject: RCPT from dsl.example.net[192.0.2.11]: 550 5.1.1 <u%d@example.test>: Recipient address rejected: User unknown in local recipient table; from=<alice@example.test> to=<u%d@example.test> proto=ESMTP helo=<laptop>\n"
	var b strings.Builder
	for i, tag := range []string{"postfix/submission/smtpd", "postfix/submissions/smtpd", "postfix/smtps/smtpd", "postfix/smtpd", "postfix-in/submission/smtpd"} {
		fmt.Fprintf(&b, "Nov 24 10:00:00 mail %s[%d]: "+reject, tag, 100+i, i, i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	c := newCollector()
	w := newWatcher(t, cfg, c)
	stop := runWatcher(t, w)
	waitFor(t, "the lines", func() bool { return w.Stats().Lines == 5 })
	stop()
	st := w.Stats()
	if st.IgnoredService != 4 || st.Matched[PatternUnknownUser] != 1 || c.count() != 1 || c.seen[3] != 1 {
		t.Fatalf("ignored %d, matched %v, emitted %v; want 4 ignored, line 3 alone emitted", st.IgnoredService, st.Matched, c.seen)
	}
	js, err := json.Marshal(st)
	if err != nil || !strings.Contains(string(js), `"ignored_service":4`) {
		t.Errorf("JSON %s (%v)", js, err)
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"empty file", func(c *Config) { c.Files = []string{""} }, "files[0]: empty path"},
		{"dup file", func(c *Config) { c.Files = []string{"a", "a"} }, `files[1]: "a" listed twice`},
		{"dup file //", func(c *Config) { c.Files = []string{"/var/log/mail.log", "/var/log//mail.log"} },
			`files[1]: "/var/log//mail.log" listed twice: it is files[0] "/var/log/mail.log" written another way`},
		{"dup file ./", func(c *Config) { c.Files = []string{"/var/log/./mail.log", "/var/log/mail.log"} }, `files[1]: "/var/log/mail.log" listed twice`},
		{"poll", func(c *Config) { c.PollInterval = 0 }, "poll_interval: must be > 0"},
		{"grace", func(c *Config) { c.RotateGrace = -1 }, "rotate_grace: must be >= 0"},
		{"save", func(c *Config) { c.SaveInterval = -1 }, "save_interval: must be >= 0"},
		{"max_line", func(c *Config) { c.MaxLineLen = 10 }, "max_line: must be >= 256"},
		{"builtin", func(c *Config) { c.Builtin = []string{"x"} }, `builtin: unknown pattern "x"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mutate(&cfg)
			err := cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err %v, want %q", err, c.want)
			}
			if _, err := New(cfg, nil); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestWatcherFollowerStats: the watcher's counters are its file sources'
// (lines, bytes, rotations) next to its own (matches per pattern), over a
// rename rotation.
func TestWatcherFollowerStats(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	cfg := testConfig(path)
	cfg.FromStart = true
	var data strings.Builder
	for i := range 100 {
		data.WriteString(numLine(i))
	}
	appendFile(t, path, data.String())
	c := newCollector()
	w := newWatcher(t, cfg, c)
	stop := runWatcher(t, w)
	waitFor(t, "the first lines", func() bool { return c.count() == 100 })
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	var more strings.Builder
	for i := 100; i < 150; i++ {
		more.WriteString(numLine(i))
	}
	appendFile(t, path, more.String())
	waitFor(t, "the new file", func() bool { return c.count() == 150 })
	stop()
	c.exactlyOnce(t, 150)
	st := w.Stats()
	if st.Lines != 150 || st.Matched[PatternUnknownUser] != 150 || st.Rotations != 1 ||
		st.Bytes != uint64(data.Len()+more.Len()) || len(st.Files) != 1 || st.Files[0].Lines != 150 {
		t.Fatalf("stats %+v", st)
	}
}

// splitSource stands for a systemd-journal source: it delivers entries
// split into identifier, PID, time and message, with a cursor.
type splitSource struct {
	recs []Record
	n    atomic.Uint64
}

func (j *splitSource) Run(ctx context.Context, emit func(*Record)) error {
	for i := range j.recs {
		emit(&j.recs[i])
		j.n.Add(1)
	}
	<-ctx.Done()
	return nil
}

func (j *splitSource) Stats() SourceStats { return SourceStats{Lines: j.n.Load()} }

// TestWatcherSplitSource: a source of split entries (the journal's shape)
// runs next to the files; its entries are matched without a syslog line,
// counted in Stats, and not taken for lines without a syslog prefix.
func TestWatcherSplitSource(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	appendFile(t, path, numLine(0))
	cfg := testConfig(path)
	cfg.FromStart = true
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	msg := func(n int) []byte {
		l := numLine(n)
		return []byte(l[strings.Index(l, "NOQUEUE"):])
	}
	j := &splitSource{recs: []Record{
		{Identifier: []byte("postfix/smtpd"), PID: 7, Time: at, Message: msg(1), Cursor: "s=1"},
		{Identifier: []byte("postfix/submission/smtpd"), PID: 8, Time: at, Message: msg(2), Cursor: "s=2"},
		{Identifier: []byte("postfix/smtpd"), PID: 9, Message: msg(3), Cursor: "s=3"},
		{Identifier: []byte("postfix/smtpd"), PID: 9, Time: at, Message: []byte("connect from x[192.0.2.1]"), Cursor: "s=4"},
	}}
	cfg.Sources = []Source{j}
	c := newCollector()
	var mu sync.Mutex
	var got []Match
	w, err := New(cfg, func(m Match) {
		c.emit(m)
		mu.Lock()
		got = append(got, m)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runWatcher(t, w)
	waitFor(t, "both sources", func() bool { return w.Stats().Lines == 5 })
	stop()
	st := w.Stats()
	if c.count() != 3 || c.seen[0] != 1 || c.seen[1] != 1 || c.seen[3] != 1 || st.IgnoredService != 1 || st.NoSyslogPrefix != 0 {
		t.Fatalf("emitted %v, stats %+v", c.seen, st)
	}
	for _, m := range got {
		switch m.Key {
		case "u1@example.test":
			if m.Time != at || m.BadTime || !strings.HasPrefix(m.Line, "postfix/smtpd[7]: NOQUEUE: reject: ") {
				t.Errorf("split entry: %+v", m)
			}
		case "u3@example.test":
			if !m.BadTime {
				t.Errorf("entry without a time: %+v", m)
			}
		}
	}
}

// TestWatcherSameFileTwice: one log file listed twice, as the same file by
// a symlink, a hard link or a path with "//" or "/./" in it that the
// lexical check does not catch (a symlinked directory), is refused by New
// naming both entries; a symlink that appears only after the watcher
// started is refused by the follower of that path (the followers share
// their files' identities), so one line is counted once, not twice (which
// gave a ban at maxretry 2).
func TestWatcherSameFileTwice(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	appendFile(t, path, numLine(0))
	mustDo := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	mustDo(os.Symlink(path, filepath.Join(dir, "symlink.log")))
	mustDo(os.Link(path, filepath.Join(dir, "hardlink.log")))
	mustDo(os.Symlink(dir, filepath.Join(dir, "logdir")))
	for name, second := range map[string]string{
		"symlink":          filepath.Join(dir, "symlink.log"),
		"hard link":        filepath.Join(dir, "hardlink.log"),
		"symlinked dir //": filepath.Join(dir, "logdir") + "//mail.log",
	} {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig(path)
			cfg.Files = append(cfg.Files, second)
			_, err := New(cfg, nil)
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf(`files[1]: %q is the same file as files[0] %q`, second, path)) ||
				!strings.Contains(err.Error(), "counted twice") {
				t.Fatalf("New = %v, want the same-file error naming both", err)
			}
		})
	}

	t.Run("symlink appears later", func(t *testing.T) {
		late := filepath.Join(dir, "late.log")
		cfg := testConfig(path)
		cfg.FromStart = true
		cfg.Files = append(cfg.Files, late)
		var logs syncBuf
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		c := newCollector()
		w := newWatcher(t, cfg, c)
		stop := runWatcher(t, w)
		waitFor(t, "line 0", func() bool { return c.count() == 1 })
		mustDo(os.Symlink(path, late))
		waitFor(t, "the second follower to open or refuse it", func() bool {
			f := w.Stats().Files[1]
			return f.Open || f.Error != ""
		})
		for k := 1; k < 50; k++ {
			appendFile(t, path, numLine(k))
		}
		waitFor(t, "50 lines", func() bool { return c.count() >= 50 })
		time.Sleep(20 * cfg.PollInterval) // a second reading would show now
		stop()
		c.exactlyOnce(t, 50)
		st := w.Stats()
		if f := st.Files[1]; f.Open || f.Lines != 0 || !strings.Contains(f.Error, fmt.Sprintf("%q is the same file as %q", late, path)) {
			t.Errorf("second entry's state %+v", f)
		}
		if n := strings.Count(logs.String(), "is the same file as"); n != 1 {
			t.Errorf("refusal logged %d times, want once:\n%s", n, logs.String())
		}
	})
}

// TestWatcherLag: each source's lag is the time from an entry's own
// timestamp to when the Watcher had handled it: for a file, measured on
// matched lines (the only ones whose time is parsed); for a split source,
// on every entry with a time. A source with no timed entry yet has no
// measurement.
func TestWatcherLag(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	appendFile(t, path, numLine(0)) // logged Nov 24 10:00:00
	appendFile(t, path, "Nov 24 09:00:00 mx postfix/smtpd[1]: connect from x[192.0.2.1]\n")
	at := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	now := at.Add(7 * time.Second)
	cfg := testConfig(path)
	cfg.FromStart = true
	cfg.Now = func() time.Time { return now }
	j := &splitSource{recs: []Record{
		{Identifier: []byte("postfix/smtpd"), PID: 9, Time: at.Add(-3 * time.Second), Message: []byte("connect from x[192.0.2.1]"), Cursor: "s=1"},
	}}
	idle := &splitSource{}
	cfg.Sources = []Source{j, idle}
	w, err := New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWatcher(t, w)
	waitFor(t, "all entries", func() bool { return w.Stats().Lines == 3 })
	stop()
	got := w.Stats().Lags
	want := []Lag{
		{Source: path, Lag: 7 * time.Second, At: now},
		{Source: "*logwatch.splitSource", Lag: 10 * time.Second, At: now},
		{Source: "*logwatch.splitSource"},
	}
	if len(got) != len(want) {
		t.Fatalf("lags %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].Source != want[i].Source || got[i].Lag != want[i].Lag || !got[i].At.Equal(want[i].At) {
			t.Errorf("lag %d: %+v, want %+v", i, got[i], want[i])
		}
	}
}
