package follow

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/internal/testenv"
)

// memStore is an in-memory PositionStore (banner/store is the real one).
type memStore struct {
	mu sync.Mutex
	m  map[string]banner.LogPosition
}

func (s *memStore) LogPosition(path string) (banner.LogPosition, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.m[path]
	return p, ok, nil
}

func (s *memStore) SetLogPosition(path string, p banner.LogPosition) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[string]banner.LogPosition{}
	}
	s.m[path] = p
	return nil
}

// numLine is a real unknown-user reject carrying the number n in the
// recipient, so that every line read can be accounted for.
func numLine(n int) string {
	return fmt.Sprintf("Nov 24 10:00:00 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 550 5.1.1 <u%d@example.test>: Recipient address rejected: User unknown in local recipient table; from=<> to=<u%d@example.test> proto=ESMTP helo=<h>\n", n, n)
}

// numbered is numLine's line: the number is its submatch. It matches what
// logwatch's matcher reports as an unknown-user reject with that key.
var numbered = regexp.MustCompile(`^Nov 24 10:00:00 mx postfix/smtpd\[1\]: NOQUEUE: reject: RCPT from unknown\[192\.0\.2\.1\]: 550 5\.1\.1 <u([0-9]+)@example\.test>: Recipient address rejected: User unknown`)

// syslogPrefix starts every numLine: a line starting so that numbered does
// not match is a damaged line.
const syslogPrefix = "Nov 24 10:00:00 mx postfix/smtpd[1]: "

// collector counts how often each numbered line was handed to the sink.
// Lines that are not log lines ("x" garbage, the rest of a line a
// truncation cut) are not counted, as logwatch's matcher would not report
// them; damaged numbered lines go to other.
type collector struct {
	mu    sync.Mutex
	seen  map[int]int
	order []int // numbers in the order emitted
	total int
	other []string
}

func newCollector() *collector { return &collector{seen: map[int]int{}} }

func (c *collector) emit(line []byte, _ banner.LogPosition) {
	if !bytes.HasPrefix(line, []byte(syslogPrefix)) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total++
	sm := numbered.FindSubmatch(line)
	if sm == nil {
		c.other = append(c.other, string(line))
		return
	}
	n, err := strconv.Atoi(string(sm[1]))
	if err != nil {
		c.other = append(c.other, string(line))
		return
	}
	c.seen[n]++
	c.order = append(c.order, n)
}

// inOrder checks that the numbered lines were emitted in increasing order.
func (c *collector) inOrder(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 1; i < len(c.order); i++ {
		if c.order[i] <= c.order[i-1] {
			t.Fatalf("line %d emitted after line %d (position %d of %d)", c.order[i], c.order[i-1], i, len(c.order))
		}
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// exactlyOnce checks that lines 0..n-1 were each seen once.
func (c *collector) exactlyOnce(t *testing.T, n int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var missing, dup []int
	for i := 0; i < n; i++ {
		switch c.seen[i] {
		case 1:
		case 0:
			missing = append(missing, i)
		default:
			dup = append(dup, i)
		}
	}
	if len(missing) > 0 || len(dup) > 0 || len(c.other) > 0 || c.total != n {
		t.Fatalf("total %d want %d; %d missing (first %v), %d duplicated (first %v), other %q",
			c.total, n, len(missing), head(missing), len(dup), head(dup), c.other)
	}
}

func head(s []int) []int { return s[:min(len(s), 10)] }

func testConfig(path string) Config {
	return Config{
		Path:         path,
		PollInterval: 2 * time.Millisecond,
		RotateGrace:  10 * time.Second,
		MaxLineLen:   16 * 1024,
		Logger:       slog.New(slog.DiscardHandler),
	}
}

func newFollower(t *testing.T, cfg Config, c *collector) *Follower {
	t.Helper()
	fl, err := New(cfg, c.emit)
	if err != nil {
		t.Fatal(err)
	}
	return fl
}

func runFollower(t *testing.T, w *Follower) (stop func()) {
	t.Helper()
	return testenv.Background(t, w.Run)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, cond)
}

// writer appends numbered lines the way a syslog daemon does (O_APPEND),
// sometimes in two writes so that the watcher sees partial lines.
type writer struct {
	t    *testing.T
	path string
	f    *os.File
	n    int
}

func newWriter(t *testing.T, path string) *writer {
	t.Helper()
	w := &writer{t: t, path: path}
	w.reopen()
	t.Cleanup(func() { w.f.Close() })
	return w
}

func (w *writer) reopen() {
	w.t.Helper()
	if w.f != nil {
		w.f.Close()
	}
	f, err := os.OpenFile(w.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	w.f = f
}

func (w *writer) write(k int) {
	w.t.Helper()
	for i := 0; i < k; i++ {
		l := numLine(w.n)
		var err error
		if w.n%7 == 0 {
			cut := w.n % len(l)
			if _, err = io.WriteString(w.f, l[:cut]); err == nil {
				_, err = io.WriteString(w.f, l[cut:])
			}
		} else {
			_, err = io.WriteString(w.f, l)
		}
		if err != nil {
			w.t.Fatal(err)
		}
		w.n++
	}
}

// TestRotateRename: logrotate's default (rename + create) while lines are
// written, including lines written to the old file after the rename and
// after the new file exists (before the daemon reopens).
func TestRotateRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	const total, every = 100000, 12000
	wr := newWriter(t, path)
	c := newCollector()
	cfg := testConfig(path)
	cfg.FromStart = true
	w := newFollower(t, cfg, c)
	stop := runFollower(t, w)
	rot := 0
	for wr.n < total {
		wr.write(min(every, total-wr.n))
		if wr.n >= total {
			break
		}
		rot++
		if err := os.Rename(path, fmt.Sprintf("%s.%d", path, rot)); err != nil {
			t.Fatal(err)
		}
		wr.write(100)                                                          // the daemon still writes to the old file
		nf, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640) // logrotate "create"
		if err != nil {
			t.Fatal(err)
		}
		nf.Close()
		wr.write(100) // ... even after the new file exists
		time.Sleep(time.Duration(rot%3) * 3 * time.Millisecond)
		wr.write(100)
		wr.reopen() // postrotate: the daemon reopens
		// no waiting for the rotation to be noticed: two rotations between
		// two polls are found among the siblings (TestRotateUnseen)
	}
	waitFor(t, "all lines", func() bool { return c.count() >= total })
	time.Sleep(20 * time.Millisecond) // duplicates would show up now
	stop()
	c.exactlyOnce(t, total)
	st := w.Stats()
	if st.Rotations != uint64(rot) || st.Lines != total {
		t.Errorf("stats %+v, want %d rotations", st, rot)
	}
	t.Logf("%d lines, %d rotations: %+v", total, rot, st)
}

// TestRotateCopyTruncate: logrotate copytruncate. Lines written between
// logrotate's copy and its truncate are lost for any reader (logrotate(8)
// documents this window); the writer pauses there so the test can be exact.
// The watcher is not told about the truncation: the writer resumes at once,
// so the file often grows past the old read offset before the next poll.
func TestRotateCopyTruncate(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	const total, every = 100000, 9000
	wr := newWriter(t, path)
	c := newCollector()
	cfg := testConfig(path)
	cfg.FromStart = true
	w := newFollower(t, cfg, c)
	stop := runFollower(t, w)
	rot := 0
	for wr.n < total {
		wr.write(min(every, total-wr.n))
		if wr.n >= total {
			break
		}
		rot++
		// logrotate copies what is in the file: wait until the watcher has
		// read it, as lines not yet read when the file is truncated are
		// only in the copy.
		waitFor(t, "catch up", func() bool { return c.count() == wr.n })
		copyFile(t, path, fmt.Sprintf("%s.%d", path, rot))
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		if rot%2 == 0 {
			wr.write(every) // bigger than before at once: detected by content, not size
		}
	}
	end := wr.n
	waitFor(t, "all lines", func() bool { return c.count() >= end })
	time.Sleep(20 * time.Millisecond)
	stop()
	c.exactlyOnce(t, end)
	st := w.Stats()
	if st.Truncations != uint64(rot) {
		t.Errorf("truncations %d, want %d", st.Truncations, rot)
	}
	t.Logf("%d lines, %d copytruncates: %+v", end, rot, st)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o640); err != nil {
		t.Fatal(err)
	}
}

// TestRestart: banner stops mid-stream and starts again with the same
// position store; once with the file untouched while it was down, once
// with a rename rotation in between.
func TestRestart(t *testing.T) {
	for _, rotate := range []bool{false, true} {
		t.Run(fmt.Sprintf("rotate=%v", rotate), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "mail.log")
			const total = 100000
			wr := newWriter(t, path)
			wr.write(10) // before the first start: skipped (read from the end)
			c := newCollector()
			store := &memStore{}
			cfg := testConfig(path)
			cfg.Positions = store
			w1 := newFollower(t, cfg, c)
			stop1 := runFollower(t, w1)
			waitFor(t, "first position save", func() bool { return w1.Stats().PositionSaves > 0 })
			base := wr.n
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for wr.n < base+total {
					wr.write(1000)
				}
			}()
			waitFor(t, "some lines", func() bool { return c.count() > 30000 })
			stop1() // mid-stream, while the writer writes
			got1 := c.count()
			if rotate {
				wg.Wait()
				if err := os.Rename(path, path+".1"); err != nil {
					t.Fatal(err)
				}
				wr.write(50) // late lines into the old file
				wr.reopen()
				wr.write(1000)
			}
			w2 := newFollower(t, cfg, c)
			stop2 := runFollower(t, w2)
			wg.Wait()
			end := wr.n
			waitFor(t, "all lines", func() bool { return c.count() >= end-base })
			time.Sleep(20 * time.Millisecond)
			stop2()
			c.mu.Lock()
			for i := 0; i < base; i++ {
				if c.seen[i] != 0 {
					t.Errorf("line %d written before the first start was read", i)
				}
			}
			// renumber: lines base..end-1 must each be seen once
			shifted := map[int]int{}
			for k, v := range c.seen {
				shifted[k-base] = v
			}
			c.seen = shifted
			c.mu.Unlock()
			c.exactlyOnce(t, end-base)
			t.Logf("first run read %d, second %d; stats %+v", got1, c.count()-got1, w2.Stats())
			if rotate && w2.Stats().Rotations != 1 {
				t.Errorf("rotations %d, want 1", w2.Stats().Rotations)
			}
		})
	}
}

// stepFollower drives a follower by hand, for deterministic tests.
func stepFollower(t *testing.T, cfg Config) (*Follower, *collector) {
	t.Helper()
	c := newCollector()
	fl := newFollower(t, cfg, c)
	fl.start()
	return fl, c
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestPartialLineAndStartAtEnd(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	l0, l1, l2 := numLine(0), numLine(1), numLine(2)
	appendFile(t, path, l0+l1[:20]) // old line, then a line being written
	fl, c := stepFollower(t, testConfig(path))
	ctx := context.Background()
	fl.poll(ctx)
	if c.count() != 0 {
		t.Fatalf("read %d lines of the existing content", c.count())
	}
	appendFile(t, path, l1[20:40])
	fl.poll(ctx)
	if c.count() != 0 {
		t.Fatal("partial line emitted")
	}
	appendFile(t, path, l1[40:]+l2[:len(l2)-1])
	fl.poll(ctx)
	if c.count() != 1 || c.seen[1] != 1 {
		t.Fatalf("line 1 (started before we started) not read whole: %v %q", c.seen, c.other)
	}
	appendFile(t, path, "\n")
	fl.poll(ctx)
	if c.seen[2] != 1 || c.count() != 2 {
		t.Fatalf("seen %v", c.seen)
	}
}

func TestFromStartAndLongLines(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	cfg := testConfig(path)
	cfg.FromStart = true
	cfg.MaxLineLen = 1000
	appendFile(t, path, numLine(0)+strings.Repeat("x", 5000)+"\n"+numLine(1)+strings.Repeat("y", 900))
	fl, c := stepFollower(t, cfg)
	ctx := context.Background()
	fl.poll(ctx)
	appendFile(t, path, strings.Repeat("y", 900)+numLine(2)+numLine(3))
	fl.poll(ctx)
	if c.seen[0] != 1 || c.seen[1] != 1 || c.seen[2] != 0 || c.seen[3] != 1 || c.count() != 3 {
		t.Fatalf("seen %v other %q", c.seen, c.other)
	}
	if st := fl.Stats(); st.LongLines != 2 || st.Lines != 3 {
		t.Fatalf("stats %+v", st)
	}
}

// TestTruncateRegrow: copytruncate after which the file has grown past the
// old read offset before the next poll: detected by the bytes before the
// offset, not by the size.
func TestTruncateRegrow(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	cfg := testConfig(path)
	cfg.FromStart = true
	appendFile(t, path, numLine(0)+numLine(1))
	fl, c := stepFollower(t, cfg)
	ctx := context.Background()
	fl.poll(ctx)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, numLine(10)+numLine(11)+numLine(12))
	fl.poll(ctx)
	if c.count() != 5 || c.seen[10] != 1 || c.seen[12] != 1 {
		t.Fatalf("seen %v", c.seen)
	}
	if fl.Stats().Truncations != 1 {
		t.Fatalf("stats %+v", fl.Stats())
	}
}

// TestRotatedWhileStoppedNoSibling: the old file is gone (compressed or
// removed): the new file is read from its start, with a warning.
func TestRotatedWhileStoppedNoSibling(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	appendFile(t, path, numLine(0))
	store := &memStore{}
	cfg := testConfig(path)
	cfg.Positions = store
	fl, _ := stepFollower(t, cfg)
	fl.poll(context.Background())
	fl.save(true)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, numLine(1)+numLine(2))
	fl2, c := stepFollower(t, cfg)
	fl2.poll(context.Background())
	if c.count() != 2 || c.seen[1] != 1 || c.seen[2] != 1 {
		t.Fatalf("seen %v", c.seen)
	}
}

// TestFileAppearsLater: a file that does not exist at start is read from
// its start when it appears.
func TestFileAppearsLater(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	fl, c := stepFollower(t, testConfig(path))
	ctx := context.Background()
	fl.poll(ctx)
	appendFile(t, path, numLine(0))
	fl.poll(ctx)
	if c.seen[0] != 1 {
		t.Fatalf("seen %v", c.seen)
	}
}

// TestTruncatedWhileStopped: copytruncate while banner was down, the file
// grew again past the saved offset: the saved offset is no longer at a line
// start, so the file is read from its start.
func TestTruncatedWhileStopped(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	appendFile(t, path, numLine(0)+numLine(1))
	cfg := testConfig(path)
	cfg.Positions = &memStore{}
	cfg.FromStart = true
	fl, _ := stepFollower(t, cfg)
	fl.poll(context.Background())
	fl.save(true)
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, "x"+numLine(2)+numLine(3)+numLine(4))
	fl2, c := stepFollower(t, cfg)
	fl2.poll(context.Background())
	// "x..." is read (3 lines) but is no log line
	if st := fl2.Stats(); c.count() != 2 || c.seen[3] != 1 || c.seen[4] != 1 || st.Lines != 3 || st.Truncations != 1 {
		t.Fatalf("seen %v, stats %+v", c.seen, fl2.Stats())
	}
}

// rotScene drives a follower by hand (no timing) through rotations in a
// temporary directory: wr is the syslog daemon appending numbered lines to
// the file it has open, mv and create do what logrotate does.
type rotScene struct {
	t    *testing.T
	dir  string
	path string
	cfg  Config
	c    *collector
	wr   *writer // wr.f is nil until the first reopen
	fl   *Follower
}

// newRotScene: the daemon has mail.log open (created) if exists; the
// follower is not started.
func newRotScene(t *testing.T, exists bool) *rotScene {
	t.Helper()
	dir := t.TempDir()
	s := &rotScene{t: t, dir: dir, path: filepath.Join(dir, "mail.log"), c: newCollector()}
	s.cfg = testConfig(s.path)
	s.cfg.FromStart = true
	s.wr = &writer{t: t, path: s.path}
	t.Cleanup(func() {
		if s.wr.f != nil {
			s.wr.f.Close()
		}
	})
	if exists {
		s.wr.reopen()
	}
	return s
}

// start starts a follower (again, after stop: a restart) with s.cfg.
func (s *rotScene) start() {
	s.t.Helper()
	s.fl = newFollower(s.t, s.cfg, s.c)
	s.fl.start()
	fl := s.fl
	s.t.Cleanup(func() { closeFollower(fl) })
}

func closeFollower(fl *Follower) {
	for _, o := range fl.old {
		o.f.Close()
	}
	fl.old = nil
	if fl.cur != nil {
		fl.cur.f.Close()
		fl.cur = nil
	}
}

// stop saves the position and closes the files, as run does on cancel.
func (s *rotScene) stop() {
	s.fl.save(true)
	closeFollower(s.fl)
}

func (s *rotScene) poll() { s.fl.poll(context.Background()) }

func (s *rotScene) mv(from, to string) {
	s.t.Helper()
	if err := os.Rename(filepath.Join(s.dir, from), filepath.Join(s.dir, to)); err != nil {
		s.t.Fatal(err)
	}
}

// create is logrotate's "create": a new empty mail.log.
func (s *rotScene) create() {
	s.t.Helper()
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		s.t.Fatal(err)
	}
	f.Close()
}

// shift is a numbered rotation: mail.log.N -> mail.log.N+1 (from the
// highest), mail.log -> mail.log.1, create.
func (s *rotScene) shift() {
	s.t.Helper()
	for k := 9; k >= 1; k-- {
		if _, err := os.Stat(fmt.Sprintf("%s.%d", s.path, k)); err == nil {
			s.mv(fmt.Sprintf("mail.log.%d", k), fmt.Sprintf("mail.log.%d", k+1))
		}
	}
	s.mv("mail.log", "mail.log.1")
	s.create()
}

// rotate is a rename rotation to name (dateext), then create.
func (s *rotScene) rotate(name string) {
	s.t.Helper()
	s.mv("mail.log", name)
	s.create()
}

// late appends the next numbered line to the rotated file name, as the
// daemon would while still holding it open.
func (s *rotScene) late(name string) {
	s.t.Helper()
	appendFile(s.t, filepath.Join(s.dir, name), numLine(s.wr.n))
	s.wr.n++
}

// tick waits until the file system clock has moved on, so that files
// written before and after have different modification times however
// coarse the timestamps are (rotations are hours apart in real life).
func (s *rotScene) tick() {
	s.t.Helper()
	probe := filepath.Join(s.dir, "probe")
	mtime := func() time.Time {
		appendFile(s.t, probe, "x")
		fi, err := os.Stat(probe)
		if err != nil {
			s.t.Fatal(err)
		}
		return fi.ModTime()
	}
	m0 := mtime()
	waitFor(s.t, "the file system clock", func() bool { return mtime().After(m0) })
	if err := os.Remove(probe); err != nil {
		s.t.Fatal(err)
	}
}

// check: every line written was handled once, in order, and rotations
// rename rotations were counted (by the last follower started).
func (s *rotScene) check(rotations uint64) {
	s.t.Helper()
	s.c.exactlyOnce(s.t, s.wr.n)
	s.c.inOrder(s.t)
	if st := s.fl.Stats(); st.Rotations != rotations {
		s.t.Errorf("rotations %d, want %d (stats %+v)", st.Rotations, rotations, st)
	}
}

// TestRotateUnseen: two or three rename rotations between two polls, so
// that files are created, written and rotated away before any poll sees
// them at the path. They are found among the siblings and read once, in
// order, between the old file and the new one.
func TestRotateUnseen(t *testing.T) {
	cases := []struct {
		name      string
		exists    bool // mail.log exists at start
		rotations uint64
		run       func(s *rotScene)
	}{
		{"two numbered rotations", true, 2, func(s *rotScene) {
			s.wr.write(10)
			s.poll() // sees A
			s.wr.write(5)
			s.shift()      // A -> mail.log.1, B created
			s.wr.write(3)  // still into A
			s.wr.reopen()  // postrotate
			s.wr.write(10) // B
			s.shift()      // A -> mail.log.2, B -> mail.log.1, C created
			s.wr.write(3)  // still into B
			s.wr.reopen()
			s.wr.write(10) // C
			s.poll()
		}},
		{"three numbered rotations", true, 3, func(s *rotScene) {
			s.wr.write(10)
			s.poll()
			for range 3 {
				s.wr.write(4)
				s.shift()
				s.wr.write(2)
				s.wr.reopen()
			}
			s.wr.write(10)
			s.poll()
		}},
		{"three dateext rotations", true, 3, func(s *rotScene) {
			s.wr.write(10)
			s.poll()
			for _, d := range []string{"mail.log-20261124", "mail.log-20261125", "mail.log-20261126"} {
				s.wr.write(4)
				s.rotate(d)
				s.wr.write(2)
				s.wr.reopen()
			}
			s.wr.write(10)
			s.poll()
		}},
		{"path missing at a poll in between", true, 2, func(s *rotScene) {
			s.wr.write(10)
			s.poll()
			s.mv("mail.log", "mail.log.1") // no create yet
			s.wr.write(3)
			s.poll() // mail.log missing: goes on with A
			s.create()
			s.wr.reopen()
			s.wr.write(10) // B
			s.shift()
			s.wr.write(2)
			s.wr.reopen()
			s.wr.write(10) // C
			s.poll()
		}},
		{"path appears after a poll found it missing", false, 1, func(s *rotScene) {
			s.poll() // missing
			s.create()
			s.wr.reopen()
			s.wr.write(10) // B, never seen at the path
			s.shift()
			s.wr.write(2)
			s.wr.reopen()
			s.wr.write(10) // C
			s.poll()
		}},
		{"empty file rotated unseen", true, 2, func(s *rotScene) {
			s.wr.write(10)
			s.poll()
			s.shift() // B created, the daemon never reopens to it
			s.wr.write(3)
			s.shift()
			s.wr.write(3)
			s.wr.reopen()
			s.wr.write(10)
			s.poll()
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newRotScene(t, tc.exists)
			s.start()
			tc.run(s)
			s.poll()
			s.check(tc.rotations)
		})
	}
}

// TestRotateSkipsUnrelatedSiblings: files next to mail.log that are not
// rotated copies of it, or were modified before the last poll, are not
// read when rotations are noticed; the file rotated unseen still is.
func TestRotateSkipsUnrelatedSiblings(t *testing.T) {
	cases := []struct {
		name string
		old  bool // modified an hour ago
		link bool // a symlink to a file elsewhere
	}{
		{name: "mail.err"},
		{name: "mail.log.2.gz"},
		{name: "mail.log.1.bz2"},
		{name: "mail.log-20261123.xz"},
		{name: "mail.log.4.zst"},
		{name: "mail.log.5.lz4"},
		{name: "mail.log.6.Z"},
		{name: "mail.log.bak"},
		{name: "mail.logger"},
		{name: "mail.log.3", old: true},
		{name: "mail.log.7", link: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newRotScene(t, true)
			s.start()
			s.wr.write(10)
			s.poll()
			p := filepath.Join(s.dir, tc.name)
			const unrelated = 1000
			content := numLine(unrelated) + numLine(unrelated+1)
			if tc.link {
				other := filepath.Join(t.TempDir(), "other.log")
				appendFile(t, other, content)
				if err := os.Symlink(other, p); err != nil {
					t.Fatal(err)
				}
			} else {
				appendFile(t, p, content)
			}
			if tc.old {
				hour := time.Now().Add(-time.Hour)
				if err := os.Chtimes(p, hour, hour); err != nil {
					t.Fatal(err)
				}
			}
			s.wr.write(5)
			s.shift()
			s.wr.reopen()
			s.wr.write(10) // B
			s.shift()
			s.wr.reopen()
			s.wr.write(10) // C
			s.poll()
			s.poll()
			s.check(2)
		})
	}
}

// TestRotateDrainedFileNotReread: a rotated file that was drained and
// closed (RotateGrace over) and then got one more line is not read again
// from its start when later rotations are noticed: only its new line is.
func TestRotateDrainedFileNotReread(t *testing.T) {
	s := newRotScene(t, true)
	s.cfg.RotateGrace = 0
	s.start()
	s.wr.write(10)
	s.poll()
	s.rotate("mail.log-20261124")
	s.wr.reopen()
	s.wr.write(10) // B
	s.poll()       // rotation noticed
	s.poll()       // A drained and closed
	if len(s.fl.old) != 0 || len(s.fl.done) != 1 {
		t.Fatalf("old %d, done %d", len(s.fl.old), len(s.fl.done))
	}
	s.late("mail.log-20261124") // A gets a line after it was closed
	s.rotate("mail.log-20261125")
	s.wr.reopen()
	s.wr.write(10) // B2
	s.rotate("mail.log-20261126")
	s.wr.reopen()
	s.wr.write(10) // C
	s.poll()
	s.poll()
	s.check(3)
}

// TestResumeOffset: how a sibling that has the identity of a remembered
// drained file is read: on from where reading stopped if it is the same
// file, from its start if the inode was reused by another file.
func TestResumeOffset(t *testing.T) {
	read := numLine(0) + numLine(1)
	cases := []struct {
		name    string
		content string // of the sibling
		sig     string // remembered bytes before the offset
		off     int64  // remembered offset
		want    int64
		known   bool
	}{
		{"same file, grown", read + numLine(2), read[len(read)-sigLen:], int64(len(read)), int64(len(read)), true},
		{"same file, not grown", read, read[len(read)-sigLen:], int64(len(read)), -1, true},
		{"same file, no signature", read + numLine(2), "", int64(len(read)), int64(len(read)), true},
		{"inode reused", numLine(7) + numLine(8) + numLine(9), read[len(read)-sigLen:], int64(len(read)), 0, false},
		{"inode reused, shorter", numLine(7), read[len(read)-sigLen:], int64(len(read)), 0, false},
		{"inode reused, no signature", strings.Repeat("x", len(read)+10), "", int64(len(read)), 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "mail.log.1")
			appendFile(t, p, tc.content)
			f, err := openFile(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.f.Close()
			fl := &Follower{done: []doneFile{{dev: 1, ino: 1}, {dev: f.dev, ino: f.ino, off: tc.off, sig: []byte(tc.sig)}}}
			off, known := fl.resumeOffset(f)
			if off != tc.want || known != tc.known {
				t.Fatalf("resumeOffset = %d, %v; want %d, %v", off, known, tc.want, tc.known)
			}
			if kept := len(fl.done) == 2; kept != (off < 0) {
				t.Fatalf("done %v after resumeOffset %d", fl.done, off)
			}
		})
	}
}

// TestRotatedSiblingNames: which names next to mail.log are taken for
// rotated copies of it.
func TestRotatedSiblingNames(t *testing.T) {
	names := map[string]bool{
		"mail.log.1":                   true,
		"mail.log.0":                   true,
		"mail.log.12":                  true,
		"mail.log-20261124":            true,
		"mail.log.2026-11-24":          true,
		"mail.log-20261124-1732000000": true,
		"mail.log.20261124-101010":     true,
		"mail.log.2026_11_24":          true,
		"mail.log.1.gz":                false,
		"mail.log-20261124.xz":         false,
		"mail.log.2.bz2":               false,
		"mail.log.3.zst":               false,
		"mail.log.4.lz4":               false,
		"mail.log.5.Z":                 false,
		"mail.log.bak":                 false,
		"mail.log.":                    false,
		"mail.log-":                    false,
		"mail.log.-":                   false,
		"mail.log_1":                   false,
		"mail.log1":                    false,
		"mail.logger":                  false,
		"mail.err":                     false,
		"mail.log.swp":                 false,
	}
	dir := t.TempDir()
	for n := range names {
		appendFile(t, filepath.Join(dir, n), "x\n")
	}
	appendFile(t, filepath.Join(dir, "mail.log"), "x\n")
	if err := os.Mkdir(filepath.Join(dir, "mail.log.9"), 0o755); err != nil {
		t.Fatal(err)
	}
	fl := &Follower{path: filepath.Join(dir, "mail.log")}
	got := map[string]bool{}
	for _, s := range fl.siblings() {
		got[filepath.Base(s.name)] = s.rotated
	}
	for n, want := range names {
		if g, ok := got[n]; got[n] != want || (want && !ok) {
			t.Errorf("%s: rotated %v, want %v", n, g, want)
		}
	}
	if _, ok := got["mail.log.9"]; ok {
		t.Error("directory listed")
	}
	if _, ok := got["mail.log"]; ok {
		t.Error("the path itself listed")
	}
}

// TestRotateTwiceWithinPollInterval: a running watcher with a long poll
// interval; two rotations happen right after a poll, so both fall before
// the next one (if the machine stalls for the whole interval, a poll sees
// them one by one instead: the result must be the same).
func TestRotateTwiceWithinPollInterval(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	wr := newWriter(t, path)
	wr.write(1000)
	c := newCollector()
	cfg := testConfig(path)
	cfg.FromStart = true
	cfg.PollInterval = 500 * time.Millisecond
	var logs testenv.SyncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	w := newFollower(t, cfg, c)
	stop := runFollower(t, w)
	waitFor(t, "the first poll", func() bool { return c.count() == 1000 })
	rotate := func() {
		for _, m := range [][2]string{{path + ".1", path + ".2"}, {path, path + ".1"}} {
			if err := os.Rename(m[0], m[1]); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
		}
		nf, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
		if err != nil {
			t.Fatal(err)
		}
		nf.Close()
	}
	wr.write(500)
	rotate()
	wr.write(100) // late, into the old file
	wr.reopen()
	wr.write(1000)
	rotate()
	wr.write(100)
	wr.reopen()
	wr.write(1000)
	waitFor(t, "all lines", func() bool { return c.count() >= wr.n })
	// one more line, to be sure that another poll ran: duplicates would be
	// there by now
	wr.write(1)
	waitFor(t, "one more poll", func() bool { return c.count() >= wr.n })
	stop()
	c.exactlyOnce(t, wr.n)
	c.inOrder(t)
	if st := w.Stats(); st.Rotations != 2 {
		t.Errorf("rotations %d, want 2", st.Rotations)
	}
	t.Logf("file rotated unseen read: %v", strings.Contains(logs.String(), "rotated away before"))
}

// TestRestartRotatedTwiceWhileStopped: banner follows A (P, the file
// before it, was read too), stops; two rotations happen while it is
// stopped. On restart A is read on from the saved offset, then B (rotated
// unseen) from its start, then C; P is not read again.
func TestRestartRotatedTwiceWhileStopped(t *testing.T) {
	cases := []struct {
		name      string
		emptyA    bool // A has no lines when banner stops
		rotations uint64
		stopped   func(s *rotScene)
	}{
		{"old file found", false, 2, func(s *rotScene) {
			s.wr.write(5) // A, while stopped
			s.shift()     // A -> .1, B
			s.wr.write(2)
			s.wr.reopen()
			s.tick()
			s.wr.write(10) // B
			s.shift()      // A -> .2, B -> .1, C
			s.wr.reopen()
			s.wr.write(10) // C
		}},
		{"old file compressed", false, 2, func(s *rotScene) {
			s.shift() // A -> .1, B
			s.wr.reopen()
			s.tick()
			s.wr.write(10) // B
			s.shift()      // A -> .2, B -> .1, C
			s.wr.reopen()
			s.wr.write(10) // C
			// compress A: a new file mail.log.2.gz, A removed
			appendFile(s.t, filepath.Join(s.dir, "mail.log.2.gz"), "\x1f\x8b...\n")
			if err := os.Remove(filepath.Join(s.dir, "mail.log.2")); err != nil {
				s.t.Fatal(err)
			}
		}},
		{"old file empty", true, 1, func(s *rotScene) {
			s.shift() // A (empty) -> .1, P -> .2, C
			s.wr.reopen()
			s.wr.write(10) // C
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newRotScene(t, true)
			s.cfg.Positions = &memStore{}
			s.start()
			s.wr.write(10) // P
			s.poll()
			s.shift() // P -> .1, A
			s.wr.write(3)
			s.poll() // rotation noticed, P drained
			s.wr.write(2)
			s.wr.reopen()
			s.poll()
			if !tc.emptyA {
				s.tick()
				s.wr.write(10) // A
				s.poll()
			}
			s.stop()
			tc.stopped(s)
			// P's mtime is after A's when A is empty: make it so even with
			// coarse timestamps
			if tc.emptyA {
				later := time.Now().Add(time.Second)
				if err := os.Chtimes(filepath.Join(s.dir, "mail.log.2"), later, later); err != nil {
					t.Fatal(err)
				}
			}
			s.start()
			s.poll()
			s.poll()
			s.check(tc.rotations)
		})
	}
}

// TestFindRotatedOnlyRotatedNames: on restart, the file the saved position
// names is looked for among the rotated siblings only (base name, '.' or
// '-', rotatedSuffix). A hard link to it under another name (a backup,
// a compressed-looking name, a longer base name) is not taken for it.
func TestFindRotatedOnlyRotatedNames(t *testing.T) {
	for name, found := range map[string]bool{
		"mail.log.1":        true,
		"mail.log-20261124": true,
		"mail.log.bak":      false,
		"mail.log.1.gz":     false,
		"mail.logger":       false,
		"mail.log_1":        false,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "mail.log")
			cfg := testConfig(path)
			cfg.FromStart = true
			cfg.Positions = &memStore{}
			appendFile(t, path, numLine(0)+numLine(1))
			fl, _ := stepFollower(t, cfg)
			fl.poll(context.Background())
			fl.save(true)
			closeFollower(fl)
			appendFile(t, path, numLine(2)) // after the saved position
			if err := os.Link(path, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			appendFile(t, path, numLine(10))
			fl2, c := stepFollower(t, cfg)
			defer closeFollower(fl2)
			fl2.poll(context.Background())
			want := map[int]int{10: 1}
			if found {
				want[2] = 1
			}
			if !maps.Equal(c.seen, want) || len(c.other) != 0 {
				t.Fatalf("seen %v, want %v (other %q)", c.seen, want, c.other)
			}
		})
	}
}

// TestRestartRotatedMidLine: the saved position in the rotated file is not
// just after a newline: the file was truncated and grew again before it was
// rotated (copytruncate, then a rename rotation, while banner was stopped),
// so every line in it is new and it is read from its start, as the current
// file is in that case; never from the tail of a line.
func TestRestartRotatedMidLine(t *testing.T) {
	l0, l1 := numLine(0), numLine(1)
	cases := []struct {
		name string
		off  int64
		want []int
	}{
		{"at a line start", int64(len(l0)), []int{1, 2, 10}},
		{"mid-line", int64(len(l0) + 10), []int{0, 1, 2, 10}},
		{"on the newline", int64(len(l0) - 1), []int{0, 1, 2, 10}},
		{"last byte before a newline", int64(len(l0) + len(l1) - 1), []int{0, 1, 2, 10}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "mail.log")
			appendFile(t, path, l0+l1+numLine(2))
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			dev, ino := identity(fi)
			store := &memStore{}
			if err := store.SetLogPosition(path, banner.LogPosition{Device: dev, Inode: ino, Offset: tc.off, Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path, path+".1"); err != nil {
				t.Fatal(err)
			}
			appendFile(t, path, numLine(10))
			cfg := testConfig(path)
			cfg.Positions = store
			fl, c := stepFollower(t, cfg)
			defer closeFollower(fl)
			fl.poll(context.Background())
			if !slices.Equal(c.order, tc.want) || len(c.other) != 0 {
				t.Fatalf("read %v, want %v (other %q)", c.order, tc.want, c.other)
			}
			if st := fl.Stats(); st.Lines != uint64(len(tc.want)) {
				t.Fatalf("%d lines handled, want %d: a line fragment was read", st.Lines, len(tc.want))
			}
		})
	}
}

// TestOpenErrorState: while the path cannot be opened (not for want of
// existing), FileState says why, the error is logged once, and both clear
// when an open succeeds: at start, and when the path was rotated to a new
// file that cannot be opened (the old one is read meanwhile).
func TestOpenErrorState(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	cfg := testConfig(path)
	cfg.FromStart = true
	var logs testenv.SyncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	appendFile(t, path, numLine(0))
	c := newCollector()
	fl, denied := deniedFollower(newFollower(t, cfg, c))
	defer closeFollower(fl)
	step := func() { fl.poll(context.Background()); fl.publish() }
	state := func() FileState { return fl.Stats().File }

	fl.start()
	for range 3 {
		step()
	}
	if st := state(); st.Open || !strings.Contains(st.Error, "permission denied") || st.Path != path {
		t.Fatalf("unopenable file: %+v", st)
	}
	if n := strings.Count(logs.String(), "cannot open log file"); n != 1 {
		t.Errorf("open error logged %d times, want once:\n%s", n, logs.String())
	}
	*denied = false
	step()
	if st := state(); !st.Open || st.Error != "" || st.Lines != 1 {
		t.Fatalf("after the open succeeded: %+v", st)
	}
	inode := state().Inode

	// rotated to a file that cannot be opened
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, numLine(10))
	*denied = true
	step()
	appendFile(t, path+".1", numLine(1)) // late line into the old file
	step()
	if st := state(); st.Open || !strings.Contains(st.Error, "permission denied") || st.Inode != inode || st.Lines != 2 {
		t.Fatalf("new file unopenable, old one still read: %+v", st)
	}
	if n := strings.Count(logs.String(), "cannot open log file"); n != 2 {
		t.Errorf("open error logged %d times, want twice (once per episode):\n%s", n, logs.String())
	}
	*denied = false
	step()
	if st := state(); !st.Open || st.Error != "" || st.Inode == inode || st.Lines != 3 {
		t.Fatalf("after the rotation completed: %+v", st)
	}
	if !slices.Equal(c.order, []int{0, 1, 10}) {
		t.Fatalf("read %v", c.order)
	}
}

// TestRestartOpenDenied: the file exists at start but cannot be opened for
// a while (permissions being fixed, an I/O error). Where reading starts is
// decided once it can be opened, as at a normal start: at the saved
// position of that same file, or at its end without one. Taking it for
// rotated away, or for a new file, would read it all again.
func TestRestartOpenDenied(t *testing.T) {
	for _, saved := range []bool{true, false} {
		t.Run(fmt.Sprintf("saved position %v", saved), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mail.log")
			l0, l1 := numLine(0), numLine(1)
			appendFile(t, path, l0+l1)
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			dev, ino := identity(fi)
			cfg := testConfig(path)
			if saved {
				store := &memStore{}
				if err := store.SetLogPosition(path, banner.LogPosition{Device: dev, Inode: ino, Offset: int64(len(l0 + l1)), Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
					t.Fatal(err)
				}
				cfg.Positions = store
			}
			c := newCollector()
			fl, denied := deniedFollower(newFollower(t, cfg, c))
			defer closeFollower(fl)
			fl.start()
			appendFile(t, path, numLine(2)) // written while banner cannot read
			fl.poll(context.Background())
			fl.poll(context.Background())
			*denied = false
			fl.poll(context.Background())
			appendFile(t, path, numLine(3))
			fl.poll(context.Background())
			want := []int{2, 3}
			if !saved {
				want = []int{3} // no position: from the end, as at any start
			}
			if !slices.Equal(c.order, want) {
				t.Fatalf("read %v, want %v", c.order, want)
			}
			if st := fl.Stats(); st.Rotations != 0 || st.Truncations != 0 {
				t.Errorf("a denied open counted as %d rotations, %d truncations", st.Rotations, st.Truncations)
			}
		})
	}
}

// deniedFollower makes fl's opens fail with EACCES while *denied is true
// (it starts true): a file that exists but cannot be opened, which root
// cannot produce with chmod.
func deniedFollower(fl *Follower) (*Follower, *bool) {
	denied := true
	fl.open = func(name string) (*tfile, error) {
		if denied {
			return nil, &fs.PathError{Op: "open", Path: name, Err: syscall.EACCES}
		}
		return openFile(name)
	}
	return fl, &denied
}
