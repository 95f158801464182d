package follow

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/banner-mta/banner/banner"
)

// The Follower reads one path in one goroutine. It does not
// use github.com/nxadm/tail v1.4.11: that
// library reopens the path as soon as it sees a rename and never reads the
// old file descriptor again, so lines written to the old file after the
// rename are lost (TestNxadmTailLosesLinesAfterRename shows it), and it calls
// os.Exit when a stat fails with anything but ENOENT
// (watch/inotify.go:121, watch/polling.go:81, util.Fatal).
//
// The follower reads with pread at its own offsets and polls:
//   - new data: read to EOF; complete lines are handled, a partial last line
//     is held until its newline arrives;
//   - truncation (copytruncate): the file is smaller than what was read, or
//     the bytes just before the read offset changed (truncated and grown
//     again between two polls). The lines written after the last poll and
//     before logrotate's copy are only in the copy: it is found among the
//     rotated siblings (mail.log.1, mail.log-20261124; the uncompressed .1
//     of delaycompress) by the bytes before the old offset and read on
//     from there to its end (readCopy), and copies made after it
//     (truncated more than once between two polls: readLaterCopies) from
//     their start; then the file is read from offset 0. Each read also
//     checks the bytes before its offset again, for a truncation between
//     the size check and the read. Lines written between logrotate's copy
//     and its truncate are in neither file and lost for any reader
//     (logrotate(8) says so; TestLogrotate measures that window);
//   - rename rotation: the path names another file (device, inode). The old
//     descriptor is read to EOF, then kept and read for RotateGrace more (the
//     syslog daemon writes to it until it reopens), while the new file is
//     read from offset 0;
//   - files rotated away unseen: when two rotations fall between two polls
//     (the path named A; A became mail.log.2, B was created, written and
//     became mail.log.1, C was created), no poll ever saw B at the path. So
//     when the path names a new file (a rename rotation, or the path
//     appearing after a poll found it missing), the rotated siblings are
//     looked at (see rotatedSuffix: base name, '.' or '-', then digits and
//     separators only, so never mail.err, mail.log.bak or mail.log.2.gz).
//     Those modified since the last poll that saw the path as we knew it
//     (less rotateSlack) and not tracked (current file, old files still
//     drained, files drained recently: done) are read from offset 0, oldest
//     modification first, after the old file and before the new one, and
//     are then drained like the old file. A remembered file that got lines
//     after it was closed is read on from where it stopped, not again; one
//     whose inode number was reused by a new file is told apart by the bytes
//     before that offset;
//   - restart: the saved Position (device, inode, offset) says where to go
//     on; if the path is now another file, the old one is looked up among its
//     rotated siblings in the same directory (mail.log.1, mail.log-20261124,
//     ...; see rotatedSuffix) by device and inode and read from the saved
//     offset first (from the next line start if the offset is not just
//     after a newline). Rotated
//     siblings modified strictly after the old file (the later of its
//     current and its saved modification time) are read next, from offset
//     0: with one writer, a file rotated before the old one was last
//     written before the old one's first line, so it is not read again.
//     This needs the old file to have had lines when saved (Offset > 0); if
//     it had none, no sibling is read. A file written only within the
//     timestamp tick of the old file's last line is not read either.
//
// Lines of the old and of the unseen files are handled before the new
// file's when they were written before the poll that noticed the rotation;
// lines written to them afterwards come with later polls, after some of the
// new file's. A rotated file's lines not read when banner stops (or written
// to it afterwards) are lost: only the current file's position is saved.
// Rotated files in another directory (logrotate olddir) are not looked for.

const (
	sigLen = 64
	// headLen bounds tfile.head.
	headLen = 4096
	// rotateSlack: a sibling modified up to this long before the last poll
	// that saw the path as we knew it still counts as rotated away since:
	// file system timestamps come from a coarser clock than time.Now (or
	// from a file server's clock).
	rotateSlack = time.Second
	// maxDone bounds the drained files remembered in follower.done.
	maxDone = 32
)

type tfile struct {
	name     string
	f        *os.File
	dev, ino uint64
	off      int64 // consumed: just after the last complete line handled
	rd       int64 // read: off + len(partial)
	size     int64
	mod      time.Time
	partial  []byte
	sig      []byte // the bytes just before off, to detect truncate+regrow
	// head is the file's first bytes (up to headLen, at most off), as
	// read: they tell logrotate's copy when it is shorter than off
	// (readCopy)
	head       []byte
	skipping   bool // discarding the rest of an overlong line
	drainUntil time.Time
	claimed    bool // its identity is held in the Config.Claims (closeFile releases it)
}

// doneFile is a rotated file that was drained and closed: its identity,
// where reading stopped and the bytes just before that offset, which tell
// the same file (appended to since) from a new file reusing the inode.
type doneFile struct {
	dev, ino uint64
	off      int64
	sig      []byte
}

// Follower follows one log file: see the package documentation for how.
type Follower struct {
	cfg  Config
	sink Sink
	log  *slog.Logger
	now  func() time.Time
	c    counters
	// state is published for Stats after every poll.
	state   atomic.Pointer[FileState]
	running atomic.Bool

	path   string
	cur    *tfile
	old    []*tfile
	done   []doneFile // drained and closed, oldest first, at most maxDone
	buf    []byte
	saved  banner.LogPosition
	hasSav bool
	// startPending: the file existed at start but could not be opened;
	// start runs again at each poll until it can.
	startPending bool
	last         time.Time // last save
	// seenAt is the wall-clock time (file timestamps use the wall clock,
	// not cfg.Now) of the last check that found the path as we knew it:
	// naming cur, or missing while cur is nil. Zero: no check yet.
	seenAt  time.Time
	warned  map[string]bool
	missing bool // the path did not exist at start and has not appeared
	// openErr is why the path could not be opened at the last attempt
	// ("" if it was, or if it does not exist); published as FileState.Error.
	openErr string
	// open opens the path; nil means openFile (tests replace it).
	open func(name string) (*tfile, error)
}

func identity(fi fs.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), st.Ino //nolint:unconvert // Dev is not uint64 on every GOARCH
	}
	return 0, 0
}

func openFile(name string) (*tfile, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	t := &tfile{name: name, f: f, size: fi.Size(), mod: fi.ModTime()}
	t.dev, t.ino = identity(fi)
	return t, nil
}

func (t *tfile) seek(off int64) {
	t.off, t.rd, t.partial, t.sig, t.skipping = off, off, t.partial[:0], nil, false
	t.head = nil
}

// fillHead reads t's first bytes into t.head, up to headLen and not past
// t.off, once off has grown past what head holds. A file truncated in
// between gives another head: the copy is then not told by it (readCopy),
// as it is not by sig either.
func (t *tfile) fillHead() {
	want := min(t.off, headLen)
	if int64(len(t.head)) >= want {
		return
	}
	b := make([]byte, want)
	if n, _ := t.f.ReadAt(b, 0); int64(n) == want {
		t.head = b
	}
}

// warnOnce logs an error once per distinct key until it clears.
func (fl *Follower) warnOnce(key, msg string, args ...any) {
	if fl.warned[key] {
		return
	}
	fl.warned[key] = true
	fl.log.Warn(msg, append([]any{"path", fl.path}, args...)...)
}

func (fl *Follower) run(ctx context.Context) {
	fl.start()
	t := time.NewTicker(fl.cfg.PollInterval)
	defer t.Stop()
	for {
		fl.poll(ctx)
		fl.publish()
		select {
		case <-ctx.Done():
			fl.save(true)
			// Closed keeping their claims (Config.Claims): another
			// Follower still in its last poll must not take this one's
			// file for its own and read it a second time.
			for _, o := range fl.old {
				o.f.Close()
			}
			if fl.cur != nil {
				fl.cur.f.Close()
			}
			return
		case <-t.C:
		}
	}
}

// publish makes the follower's state visible to Stats.
func (fl *Follower) publish() {
	lines := fl.c.lines.Load()
	st := &FileState{Path: fl.path, Draining: len(fl.old), Lines: lines}
	if old := fl.state.Load(); old != nil {
		st.LastLine = old.LastLine
		if lines != old.Lines {
			st.LastLine = time.Now()
		}
	}
	if c := fl.cur; c != nil {
		st.Open, st.Device, st.Inode, st.Offset, st.Size = true, c.dev, c.ino, c.off, c.size
	}
	switch {
	case fl.openErr != "":
		// the path (or, after a rotation, the new file at the path) cannot
		// be opened; a previous file may still be read (Device..Size)
		st.Open, st.Error = false, fl.openErr
	case fl.cur == nil:
		if _, err := os.Stat(fl.path); err != nil {
			st.Error = err.Error()
		}
	}
	fl.state.Store(st)
}

// start opens the file at startup, at the saved position if there is one.
func (fl *Follower) start() {
	var pos banner.LogPosition
	var ok bool
	if fl.cfg.Positions != nil {
		var err error
		pos, ok, err = fl.cfg.Positions.LogPosition(fl.path)
		if err != nil {
			fl.c.saveErrors.Add(1)
			fl.log.Warn("loading saved log position; starting without it", "path", fl.path, "err", err)
			ok = false
		}
	}
	fl.saved, fl.hasSav = pos, ok
	wall := time.Now()
	cur, err := fl.openPath()
	switch {
	case err == nil:
		fl.seenAt = wall
	case errors.Is(err, fs.ErrNotExist):
		fl.seenAt = wall
		fl.missing = true
		fl.log.Warn("log file does not exist (yet); it is read from its start when it appears. "+
			"Without a syslog daemon (Debian 12 and later install none) Postfix logs only to the journal: "+
			"install rsyslog or set maillog_file in main.cf", "path", fl.path)
	default:
		// It exists but cannot be opened now (permissions, I/O error;
		// openPath warned): where to start is decided once it can be, as
		// if banner started then. Taking the saved file for rotated away,
		// or the file for new, would read it all again.
		fl.startPending = true
		return
	}
	fl.cur = cur
	if ok && (cur == nil || cur.dev != pos.Device || cur.ino != pos.Inode) {
		// rotated while banner was not running: finish the old file first
		o := fl.findRotated(pos)
		if o != nil {
			if o.size >= pos.Offset {
				o.seek(pos.Offset)
				if !afterNewline(o.f, pos.Offset) {
					// not where a line starts: the file was truncated and
					// grew again before it was rotated, so all of it is
					// new, as for the current file below
					o.seek(0)
					fl.c.truncations.Add(1)
					fl.log.Info("rotated log file was truncated while stopped; reading it from its start",
						"path", fl.path, "old", o.name)
				}
			} else {
				o.seek(0)
				fl.c.truncations.Add(1)
			}
			o.drainUntil = fl.now().Add(fl.cfg.RotateGrace)
			fl.old = append(fl.old, o)
			fl.log.Info("log file rotated while stopped; reading the old file first", "path", fl.path, "old", o.name, "offset", o.off)
		} else {
			fl.log.Warn("log file rotated while stopped and the old file was not found; lines may have been missed", "path", fl.path)
		}
		if cur != nil {
			fl.c.rotations.Add(1)
		}
		// then the files rotated after it (two rotations while stopped),
		// if it had lines: see the comment at the top
		since := pos.ModTime
		if o != nil && o.mod.After(since) {
			since = o.mod
		}
		if pos.Offset > 0 && !since.IsZero() {
			fl.addUnseen(since, fl.now())
		}
		return // the new file (if any) is read from its start
	}
	if cur == nil {
		return // when it appears, it is read from its start
	}
	switch {
	case ok && cur.size >= pos.Offset && afterNewline(cur.f, pos.Offset):
		cur.seek(pos.Offset)
	case ok:
		// shrunk, or truncated and grown again (the saved offset is not at a
		// line start any more): copytruncate while banner was stopped
		fl.c.truncations.Add(1)
		fl.log.Info("log file truncated while stopped; reading from its start", "path", fl.path)
		cur.seek(0)
	case fl.cfg.FromStart:
		cur.seek(0)
	default:
		cur.seek(lineStartBefore(cur.f, cur.size))
	}
}

// afterNewline reports whether off is 0 or just after a newline in f.
func afterNewline(f *os.File, off int64) bool {
	if off == 0 {
		return true
	}
	var b [1]byte
	n, _ := f.ReadAt(b[:], off-1)
	return n == 1 && b[0] == '\n'
}

// lineStartBefore returns the offset just after the last newline before
// size (looking back at most 64 KiB), so that reading "from the end" starts
// at a line boundary and a line being written is read whole.
func lineStartBefore(f *os.File, size int64) int64 {
	n := min(size, 64*1024)
	if n == 0 {
		return size
	}
	b := make([]byte, n)
	if _, err := f.ReadAt(b, size-n); err != nil && !errors.Is(err, io.EOF) {
		return size
	}
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return size - n + int64(i) + 1
	}
	return size
}

// sibling is a regular file in the path's directory whose name is the
// path's base name followed by something.
type sibling struct {
	name   string // full path
	fi     fs.FileInfo
	suffix string // after the base name and the separator, if rotated
	// rotated: the name is the base name, '.' or '-', then a rotation
	// suffix (rotatedSuffix)
	rotated bool
}

// siblings lists the path's siblings (os.ReadDir order: by name).
func (fl *Follower) siblings() []sibling {
	dir, base := filepath.Split(fl.path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []sibling
	for _, e := range ents {
		n := e.Name()
		if n == base || !strings.HasPrefix(n, base) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		s := sibling{name: filepath.Join(dir, n), fi: fi}
		if rest := n[len(base):]; (rest[0] == '.' || rest[0] == '-') && rotatedSuffix(rest[1:]) {
			s.suffix, s.rotated = rest[1:], true
		}
		out = append(out, s)
	}
	return out
}

// rotatedSuffix reports whether s (what follows "mail.log." or "mail.log-")
// looks like a rotation suffix: ASCII digits and the separators '.', '-',
// '_' only, with at least one digit. That covers logrotate's numbered
// (mail.log.1) and dateext names (mail.log-20261124, mail.log.2026-11-24,
// mail.log-20261124-1732000000), savelog and newsyslog (mail.log.0) and
// postfix logrotate (mail.log.20261124-101010), and keeps out compressed
// files (.gz .bz2 .xz .zst .lz4 .Z and any other), backups and editor
// files (mail.log.bak, mail.log.swp), and other logs that share the base
// name when following /var/log/mail (mail.err, mail.info, mail.warn).
func rotatedSuffix(s string) bool {
	digit := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digit = true
		case c == '.' || c == '-' || c == '_':
		default:
			return false
		}
	}
	return digit
}

// olderFirst orders rotated siblings by modification time; for equal times
// (coarse timestamps), counts (suffixes of up to 5 digits) are older the
// larger they are (mail.log.2 before mail.log.1), other suffixes (dates,
// times) the smaller (mail.log-20261124 before mail.log-20261125).
func olderFirst(a, b sibling) int {
	if c := a.fi.ModTime().Compare(b.fi.ModTime()); c != 0 {
		return c
	}
	na, okA := rotationCount(a.suffix)
	nb, okB := rotationCount(b.suffix)
	if okA && okB {
		return cmp.Compare(nb, na)
	}
	return strings.Compare(a.suffix, b.suffix)
}

// rotationCount parses a numbered rotation suffix ("1" in mail.log.1).
func rotationCount(s string) (uint64, bool) {
	if len(s) > 5 {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	return n, err == nil
}

// findRotated looks for the file identified by pos among path's rotated
// siblings (base name, '.' or '-', rotatedSuffix), never among other names
// that start with the base name: a hard link such as mail.log.bak is not
// the rotated file, even with its identity.
func (fl *Follower) findRotated(pos banner.LogPosition) *tfile {
	for _, s := range fl.siblings() {
		if !s.rotated {
			continue
		}
		if d, i := identity(s.fi); d == pos.Device && i == pos.Inode {
			t, err := openFile(s.name)
			if err != nil {
				return nil
			}
			if t.dev != pos.Device || t.ino != pos.Inode { // replaced in between
				t.f.Close()
				return nil
			}
			return t
		}
	}
	return nil
}

// tracked reports whether dev, ino is the current file or an old file
// still being drained.
func (fl *Follower) tracked(dev, ino uint64) bool {
	if fl.cur != nil && fl.cur.dev == dev && fl.cur.ino == ino {
		return true
	}
	for _, o := range fl.old {
		if o.dev == dev && o.ino == ino {
			return true
		}
	}
	return false
}

// addUnseen appends to fl.old, oldest first, the rotated siblings modified
// after since that are not tracked: files rotated away before any check saw
// them at the path. They are read from offset 0, or for a file drained
// before (fl.done) from where reading stopped, and drained until now plus
// RotateGrace. It returns them, for the caller to read at once.
func (fl *Follower) addUnseen(since, now time.Time) []*tfile {
	var cand []sibling
	for _, s := range fl.siblings() {
		if s.rotated && s.fi.ModTime().After(since) && !fl.tracked(identity(s.fi)) {
			cand = append(cand, s)
		}
	}
	slices.SortStableFunc(cand, olderFirst)
	var added []*tfile
	for _, s := range cand {
		t, err := openFile(s.name)
		if err != nil {
			continue
		}
		if fl.tracked(t.dev, t.ino) { // renamed over in between
			t.f.Close()
			continue
		}
		off, known := fl.resumeOffset(t)
		if off < 0 {
			t.f.Close()
			continue
		}
		t.seek(off)
		t.drainUntil = now.Add(fl.cfg.RotateGrace)
		fl.old = append(fl.old, t)
		added = append(added, t)
		if !known {
			fl.c.rotations.Add(1)
		}
		fl.log.Info("reading a file rotated away before the path was seen naming it", "path", fl.path, "file", t.name, "offset", off)
	}
	return added
}

// resumeOffset returns where to read t, a sibling that is not tracked: 0
// if it was never read, or if it reuses the inode of a file drained before;
// that file's offset (known) if it is one drained before and grew since;
// -1 if it is one drained before that did not grow.
func (fl *Follower) resumeOffset(t *tfile) (off int64, known bool) {
	k := slices.IndexFunc(fl.done, func(d doneFile) bool { return d.dev == t.dev && d.ino == t.ino })
	if k < 0 {
		return 0, false
	}
	d := fl.done[k]
	same := t.size >= d.off
	if same && len(d.sig) > 0 {
		b := make([]byte, len(d.sig))
		n, _ := t.f.ReadAt(b, d.off-int64(len(b)))
		same = n == len(b) && bytes.Equal(b, d.sig)
	} else if same {
		same = afterNewline(t.f, d.off)
	}
	switch {
	case !same:
		fl.done = slices.Delete(fl.done, k, k+1)
		return 0, false
	case t.size == d.off:
		return -1, true
	default:
		fl.done = slices.Delete(fl.done, k, k+1) // remembered again when closed
		return d.off, true
	}
}

// remember records a drained old file before it is closed.
func (fl *Follower) remember(o *tfile) {
	fl.done = slices.DeleteFunc(fl.done, func(d doneFile) bool { return d.dev == o.dev && d.ino == o.ino })
	if len(fl.done) >= maxDone {
		fl.done = slices.Delete(fl.done, 0, len(fl.done)-maxDone+1)
	}
	fl.done = append(fl.done, doneFile{dev: o.dev, ino: o.ino, off: o.off, sig: o.sig})
}

func (fl *Follower) poll(ctx context.Context) {
	now := fl.now()
	// rotated files first: their lines are older
	keep := fl.old[:0]
	for _, o := range fl.old {
		fl.read(ctx, o)
		if now.After(o.drainUntil) && ctx.Err() == nil {
			fl.remember(o)
			fl.closeFile(o)
			continue
		}
		keep = append(keep, o)
	}
	fl.old = keep
	if ctx.Err() != nil {
		return
	}

	if fl.startPending {
		fl.startPending = false
		fl.start()
		if fl.startPending {
			return // still cannot be opened
		}
	}
	if fl.cur == nil {
		wall := time.Now()
		cur, err := fl.openPath()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				fl.seenAt = wall
			}
			return
		}
		if fl.missing {
			fl.missing = false
			fl.log.Info("log file appeared; reading it from its start", "path", fl.path)
		}
		cur.seek(0) // appeared after we started: all of it is new
		fl.cur = cur
		fl.readUnseen(ctx, now)
		fl.seenAt = wall
	}
	cur := fl.cur
	fl.checkTruncated(ctx, cur)
	fl.read(ctx, cur)

	wall := time.Now()
	fi, err := os.Stat(fl.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// renamed or deleted, not (yet) recreated: keep reading what we have
	case err != nil:
		fl.warnOnce("stat", "cannot stat log file", "err", err)
	default:
		delete(fl.warned, "stat")
		if d, i := identity(fi); d == cur.dev && i == cur.ino {
			fl.seenAt = wall
			break
		}
		nf, err := fl.openPath()
		if err != nil {
			break // try again next poll; cur is read meanwhile
		}
		fl.read(ctx, cur) // drain what was written before the switch
		cur.drainUntil = now.Add(fl.cfg.RotateGrace)
		fl.old = append(fl.old, cur)
		fl.c.rotations.Add(1)
		fl.log.Info("log file rotated; following the new file", "path", fl.path)
		nf.seek(0)
		fl.cur = nf
		fl.readUnseen(ctx, now)
		fl.seenAt = wall
		fl.read(ctx, nf)
	}
	fl.save(false)
}

// openPath opens the followed path and keeps the outcome for Stats
// (FileState.Error) and the log: an error other than "does not exist" is
// warned about once until an open succeeds.
func (fl *Follower) openPath() (*tfile, error) {
	open := fl.open
	if open == nil {
		open = openFile
	}
	t, err := open(fl.path)
	if err == nil && fl.cfg.Claims != nil {
		if owner, ok := fl.cfg.Claims.claim(t.dev, t.ino, fl.path); ok {
			t.claimed = true
		} else {
			t.f.Close()
			t, err = nil, &SameFileError{Path: fl.path, Other: owner, Device: t.dev, Inode: t.ino}
		}
	}
	switch {
	case err == nil, errors.Is(err, fs.ErrNotExist):
		fl.openErr = ""
		delete(fl.warned, "open")
	default:
		fl.c.openErrors.Add(1)
		fl.openErr = err.Error()
		fl.warnOnce("open", "cannot open log file; will retry", "err", err)
	}
	return t, err
}

// closeFile closes t and releases its claim (Config.Claims), if it holds one.
func (fl *Follower) closeFile(t *tfile) {
	if t.claimed {
		fl.cfg.Claims.release(t.dev, t.ino, fl.path)
		t.claimed = false
	}
	t.f.Close()
}

// readUnseen reads the files rotated away since the last check that saw
// the path as we knew it, now that it names a new file (fl.cur, not read
// yet): see addUnseen.
func (fl *Follower) readUnseen(ctx context.Context, now time.Time) {
	if fl.seenAt.IsZero() {
		return
	}
	for _, t := range fl.addUnseen(fl.seenAt.Add(-rotateSlack), now) {
		fl.read(ctx, t)
	}
}

// checkTruncated detects copytruncate: the file shrank below what was read,
// or it was truncated and has grown again past the read offset (the bytes
// just before the offset are not those read there). The rest of the copy
// logrotate made before truncating is read first (readCopy), then t from 0.
func (fl *Follower) checkTruncated(ctx context.Context, t *tfile) {
	fi, err := t.f.Stat()
	if err != nil {
		return
	}
	size := fi.Size()
	truncated := size < t.rd
	if !truncated && size > t.rd && len(t.sig) > 0 {
		b := make([]byte, len(t.sig))
		n, _ := t.f.ReadAt(b, t.off-int64(len(t.sig)))
		truncated = n != len(b) || !bytes.Equal(b, t.sig)
	}
	t.size, t.mod = size, fi.ModTime()
	if truncated {
		fl.truncated(ctx, t)
	}
}

// truncated handles a truncation of t found by checkTruncated or read: the
// rest of the copy (readCopy), later copies (readLaterCopies), then t from
// offset 0.
//
// It counts one truncation per copy read, and at least one: when no copy
// was found to read on, the newest copy readLaterCopies reads is the one
// this truncation made, not another.
func (fl *Follower) truncated(ctx context.Context, t *tfile) {
	copied, ok := fl.readCopy(ctx, t)
	if !ok {
		fl.log.Info("log file truncated; reading from its start", "path", fl.path)
	}
	// truncated more than once since the last poll: the copies made
	// after the one read on hold the lines of the truncations between
	since, after := copied, false
	if !ok {
		since, after = fl.seenAt, true
	}
	later := 0
	if !since.IsZero() {
		later = fl.readLaterCopies(ctx, t, since, after)
	}
	n := max(later, 1)
	if ok {
		n = 1 + later
	}
	fl.c.truncations.Add(uint64(n))
	t.seek(0)
}

// sameStart reports whether a and b begin with the same bytes (up to 4
// KiB, at least one byte): b is (so far) what a was copied from.
func sameStart(a, b *os.File) bool {
	x, y := make([]byte, 4096), make([]byte, 4096)
	n, _ := a.ReadAt(x, 0)
	m, _ := b.ReadAt(y, 0)
	k := min(n, m)
	return k > 0 && bytes.Equal(x[:k], y[:k])
}

// readLaterCopies reads, oldest first and each from its start, the rotated
// siblings modified at or (after) strictly after since that are neither
// tracked nor drained before (fl.done): copies copytruncate made after the
// one readCopy read on, when the file was truncated more than once between
// two polls, or, when no copy was found to read on, copies made since the
// last poll. It returns how many copies it read (a file drained before is
// read on from where it stopped, and not counted); each is remembered as drained. A
// copy that starts as t (the truncated file) does now is a copy of t's
// current lines, which t has not been truncated after yet (logrotate may
// be writing it): it is left for readCopy when that truncation is seen.
func (fl *Follower) readLaterCopies(ctx context.Context, t *tfile, since time.Time, after bool) int {
	read := 0
	var cand []sibling
	for _, s := range fl.siblings() {
		m := s.fi.ModTime()
		if s.rotated && (m.After(since) || !after && m.Equal(since)) && !fl.tracked(identity(s.fi)) {
			cand = append(cand, s)
		}
	}
	slices.SortStableFunc(cand, olderFirst)
	for _, s := range cand {
		c, err := openFile(s.name)
		if err != nil {
			continue
		}
		if sameStart(c.f, t.f) {
			c.f.Close()
			continue
		}
		off, known := fl.resumeOffset(c)
		if off < 0 || fl.tracked(c.dev, c.ino) {
			c.f.Close()
			continue
		}
		c.seek(off)
		if known {
			// drained before, with bytes past where reading stopped: the
			// cut last line of a copy read on (its rest was written to
			// the file, then truncated), or lines written since. Not
			// another truncation's copy.
			fl.log.Debug("reading on a rotated file drained before", "path", fl.path, "file", c.name, "offset", off)
		} else {
			read++
			fl.log.Info("log file truncated more than once since the last poll; reading a later copy", "path", fl.path, "copy", c.name, "offset", off)
		}
		fl.read(ctx, c)
		fl.remember(c)
		c.f.Close()
	}
	return read
}

// readCopy finds the copy copytruncate made of t (truncated since the last
// poll) among the path's rotated siblings and reads it on from t's offset
// to its end: the lines written after the last poll and before logrotate's
// copy are only there. The copy is the newest rotated sibling (mail.log.1,
// mail.log-20261124; with delaycompress the uncompressed .1) that is not
// tracked, holds at least t's offset bytes, and has before that offset the
// bytes t had (t.sig). A copy compressed at once (compress without
// delaycompress) is not read.
//
// The copy can also be shorter than t's offset: lines written while
// logrotate fsyncs the copy, before its truncate, are in t only, and the
// follower may have read them (they are then in no file, logrotate's
// window). Such a copy holds nothing that was not read: it is the newest
// such sibling, not drained before (fl.done), that begins with the bytes
// t began with (t.head). Taking it for a later copy and reading it from
// its start would read all of it twice (TestCopyTruncateReadPastCopy).
//
// It reports whether the copy was found, and the copy's modification
// time; the copy is then remembered as drained (fl.done), so that
// neither readLaterCopies nor a rename rotation later reads it again.
func (fl *Follower) readCopy(ctx context.Context, t *tfile) (time.Time, bool) {
	if t.off == 0 || len(t.sig) == 0 {
		return time.Time{}, false // nothing read yet: nothing to go on from
	}
	var cand []sibling
	for _, s := range fl.siblings() {
		if s.rotated && s.fi.Size() > 0 && !fl.tracked(identity(s.fi)) {
			cand = append(cand, s)
		}
	}
	slices.SortStableFunc(cand, func(a, b sibling) int { return olderFirst(b, a) }) // newest first
	for _, s := range cand {
		c, err := openFile(s.name)
		if err != nil {
			continue
		}
		if c.size < t.off {
			if fl.tracked(c.dev, c.ino) || !fl.readPrefix(t, c) {
				c.f.Close()
				continue
			}
			fl.log.Info("log file truncated (copytruncate); its copy ends before the offset read, so all of it was read; reading the file from its start",
				"path", fl.path, "copy", c.name, "copy_size", c.size, "offset", t.off)
			fl.remember(c)
			c.f.Close()
			return c.mod, true
		}
		b := make([]byte, len(t.sig))
		n, _ := c.f.ReadAt(b, t.off-int64(len(b)))
		if fl.tracked(c.dev, c.ino) || n != len(b) || !bytes.Equal(b, t.sig) {
			c.f.Close()
			continue
		}
		c.seek(t.off)
		c.sig = t.sig
		fl.log.Info("log file truncated (copytruncate); reading the rest of its copy, then the file from its start",
			"path", fl.path, "copy", c.name, "offset", t.off)
		fl.read(ctx, c)
		fl.remember(c)
		c.f.Close()
		return c.mod, true
	}
	return time.Time{}, false
}

// readPrefix reports whether c, a rotated sibling shorter than t's
// offset and not drained before, begins with t's first bytes (t.head; all
// of c when it is shorter than that): a copy of t made before t was read
// to where it is, so all of it was read. If so c is moved to its end, with
// the bytes before it as its sig, for remember.
func (fl *Follower) readPrefix(t, c *tfile) bool {
	if len(t.head) == 0 || slices.ContainsFunc(fl.done, func(d doneFile) bool { return d.dev == c.dev && d.ino == c.ino }) {
		return false
	}
	k := min(int64(len(t.head)), c.size)
	b := make([]byte, k)
	if n, _ := c.f.ReadAt(b, 0); int64(n) != k || !bytes.Equal(b, t.head[:k]) {
		return false
	}
	n := min(c.size, sigLen)
	sig := make([]byte, n)
	if m, _ := c.f.ReadAt(sig, c.size-n); int64(m) != n {
		return false
	}
	c.seek(c.size)
	c.sig = sig
	return true
}

// read reads t from its read offset to EOF and handles the complete lines.
// Each read also reads again the bytes just before t.rd (up to sigLen,
// when known: sig and partial) and checks they are those read before: a
// file truncated and grown again past t.rd since checkTruncated looked
// (between its stat and this read, or between two reads) is noticed here,
// before its new bytes are taken for the continuation of the old ones.
func (fl *Follower) read(ctx context.Context, t *tfile) {
	for ctx.Err() == nil {
		want := t.before()
		n, err := t.f.ReadAt(fl.buf, t.rd-int64(len(want)))
		if (err == nil || errors.Is(err, io.EOF)) && (n < len(want) || !bytes.Equal(fl.buf[:len(want)], want)) {
			fl.log.Info("log file truncated while being read", "path", fl.path, "file", t.name)
			fl.truncated(ctx, t)
			continue
		}
		if n -= len(want); n > 0 {
			fl.c.bytes.Add(uint64(n))
			fl.lines(t, fl.buf[len(want):len(want)+n])
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				fl.c.readErrors.Add(1)
				fl.warnOnce("read", "reading log file", "err", err)
			}
			return
		}
		delete(fl.warned, "read")
	}
}

// before returns the last (up to sigLen) bytes of t before t.rd, as read
// (the end of sig, then partial), or nil when they are not known (nothing
// read yet, or an overlong line being skipped).
func (t *tfile) before() []byte {
	if t.skipping || t.rd == 0 || len(t.sig) == 0 && len(t.partial) == 0 {
		return nil
	}
	if len(t.partial) >= sigLen {
		return t.partial[len(t.partial)-sigLen:]
	}
	if len(t.partial) == 0 {
		return t.sig
	}
	k := min(len(t.sig), sigLen-len(t.partial))
	return append(slices.Clip(t.sig[len(t.sig)-k:]), t.partial...)
}

// lines splits data (which continues t at t.rd) into lines.
func (fl *Follower) lines(t *tfile, data []byte) {
	max := fl.cfg.MaxLineLen
	start := t.off
	rest := data
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if !t.skipping {
				t.partial = append(t.partial, rest...)
				if len(t.partial) > max {
					t.partial, t.skipping = t.partial[:0], true
					fl.c.longLines.Add(1)
				}
			}
			t.rd += int64(len(rest))
			break
		}
		line := rest[:i]
		if len(t.partial) > 0 {
			t.partial = append(t.partial, line...)
			line = t.partial
		}
		switch {
		case t.skipping:
			t.skipping = false
		case len(line) > max:
			fl.c.longLines.Add(1)
		default:
			fl.c.lines.Add(1)
			fl.sink(line, banner.LogPosition{Device: t.dev, Inode: t.ino, Offset: t.rd + int64(i) + 1, Size: t.size, ModTime: t.mod})
		}
		t.partial = t.partial[:0]
		t.rd += int64(i + 1)
		t.off = t.rd
		rest = rest[i+1:]
	}
	if t.off == start {
		return
	}
	// remember the bytes just before off
	defer t.fillHead()
	end := len(data) - len(rest) // data[:end] ends at off
	if end >= sigLen {
		t.sig = append(t.sig[:0], data[end-sigLen:end]...)
		return
	}
	n := min(t.off, sigLen)
	b := make([]byte, n)
	if m, _ := t.f.ReadAt(b, t.off-n); int64(m) == n {
		t.sig = b
	} else {
		t.sig = nil
	}
}

// save persists the current file's position if it changed, at most every
// SaveInterval unless force.
func (fl *Follower) save(force bool) {
	if fl.cfg.Positions == nil || fl.cur == nil {
		return
	}
	now := fl.now()
	p := banner.LogPosition{Device: fl.cur.dev, Inode: fl.cur.ino, Offset: fl.cur.off, Size: fl.cur.size, ModTime: fl.cur.mod}
	if fl.hasSav && p.Device == fl.saved.Device && p.Inode == fl.saved.Inode && p.Offset == fl.saved.Offset {
		return
	}
	if !force && now.Sub(fl.last) < fl.cfg.SaveInterval {
		return
	}
	fl.last = now
	if err := fl.cfg.Positions.SetLogPosition(fl.path, p); err != nil {
		fl.c.saveErrors.Add(1)
		fl.warnOnce("save", "saving log position", "err", err)
		return
	}
	delete(fl.warned, "save")
	fl.c.saves.Add(1)
	fl.saved, fl.hasSav = p, true
}
