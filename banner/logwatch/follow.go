package logwatch

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// This file is the follower: one goroutine per configured path. It does not
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
//     again between two polls): start again at offset 0;
//   - rename rotation: the path names another file (device, inode). The old
//     descriptor is read to EOF, then kept and read for RotateGrace more (the
//     syslog daemon writes to it until it reopens), while the new file is
//     read from offset 0;
//   - restart: the saved Position (device, inode, offset) says where to go
//     on; if the path is now another file, the old one is looked up among its
//     siblings in the same directory (mail.log.1, mail.log-20261124, ...) by
//     device and inode and read from the saved offset first.

const sigLen = 64

type tfile struct {
	name       string
	f          *os.File
	dev, ino   uint64
	off        int64 // consumed: just after the last complete line handled
	rd         int64 // read: off + len(partial)
	size       int64
	mod        time.Time
	partial    []byte
	sig        []byte // the bytes just before off, to detect truncate+regrow
	skipping   bool   // discarding the rest of an overlong line
	drainUntil time.Time
}

type follower struct {
	w      *Watcher
	path   string
	cur    *tfile
	old    []*tfile
	buf    []byte
	saved  Position
	hasSav bool
	last   time.Time // last save
	warned map[string]bool
}

func newFollower(w *Watcher, path string) *follower {
	return &follower{w: w, path: path, buf: make([]byte, 64*1024), warned: map[string]bool{}}
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
}

// warnOnce logs an error once per distinct key until it clears.
func (fl *follower) warnOnce(key, msg string, args ...any) {
	if fl.warned[key] {
		return
	}
	fl.warned[key] = true
	fl.w.log.Warn(msg, append([]any{"path", fl.path}, args...)...)
}

func (fl *follower) run(ctx context.Context) {
	fl.start()
	t := time.NewTicker(fl.w.cfg.PollInterval)
	defer t.Stop()
	for {
		fl.poll(ctx)
		select {
		case <-ctx.Done():
			fl.save(true)
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

// start opens the file at startup, at the saved position if there is one.
func (fl *follower) start() {
	w := fl.w
	var pos Position
	var ok bool
	if w.cfg.Positions != nil {
		var err error
		pos, ok, err = w.cfg.Positions.LogPosition(fl.path)
		if err != nil {
			w.c.saveErrors.Add(1)
			w.log.Warn("loading saved log position; starting without it", "path", fl.path, "err", err)
			ok = false
		}
	}
	fl.saved, fl.hasSav = pos, ok
	cur, err := openFile(fl.path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		fl.warnOnce("open", "cannot open log file; will retry", "err", err)
	}
	fl.cur = cur
	if ok && (cur == nil || cur.dev != pos.Device || cur.ino != pos.Inode) {
		// rotated while banner was not running: finish the old file first
		if o := fl.findRotated(pos); o != nil {
			if o.size >= pos.Offset {
				o.seek(pos.Offset)
			} else {
				o.seek(0)
				w.c.truncations.Add(1)
			}
			o.drainUntil = w.now().Add(w.cfg.RotateGrace)
			fl.old = append(fl.old, o)
			w.log.Info("log file rotated while stopped; reading the old file first", "path", fl.path, "old", o.name, "offset", o.off)
		} else {
			w.log.Warn("log file rotated while stopped and the old file was not found; lines may have been missed", "path", fl.path)
		}
		if cur != nil {
			w.c.rotations.Add(1)
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
		w.c.truncations.Add(1)
		w.log.Info("log file truncated while stopped; reading from its start", "path", fl.path)
		cur.seek(0)
	case w.cfg.FromStart:
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

// findRotated looks for the file identified by pos among path's siblings.
func (fl *follower) findRotated(pos Position) *tfile {
	dir, base := filepath.Split(fl.path)
	if dir == "" {
		dir = "."
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range ents {
		n := e.Name()
		if n == base || !strings.HasPrefix(n, base) || !e.Type().IsRegular() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if d, i := identity(fi); d == pos.Device && i == pos.Inode {
			t, err := openFile(filepath.Join(dir, n))
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

func (fl *follower) poll(ctx context.Context) {
	w := fl.w
	now := w.now()
	// rotated files first: their lines are older
	keep := fl.old[:0]
	for _, o := range fl.old {
		fl.read(ctx, o)
		if now.After(o.drainUntil) && ctx.Err() == nil {
			o.f.Close()
			continue
		}
		keep = append(keep, o)
	}
	fl.old = keep
	if ctx.Err() != nil {
		return
	}

	if fl.cur == nil {
		cur, err := openFile(fl.path)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				fl.warnOnce("open", "cannot open log file; will retry", "err", err)
			}
			return
		}
		delete(fl.warned, "open")
		cur.seek(0) // appeared after we started: all of it is new
		fl.cur = cur
	}
	cur := fl.cur
	fl.checkTruncated(cur)
	fl.read(ctx, cur)

	fi, err := os.Stat(fl.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// renamed or deleted, not (yet) recreated: keep reading what we have
	case err != nil:
		fl.warnOnce("stat", "cannot stat log file", "err", err)
	default:
		delete(fl.warned, "stat")
		if d, i := identity(fi); d != cur.dev || i != cur.ino {
			nf, err := openFile(fl.path)
			if err != nil {
				break // try again next poll
			}
			fl.read(ctx, cur) // drain what was written before the switch
			cur.drainUntil = now.Add(w.cfg.RotateGrace)
			fl.old = append(fl.old, cur)
			w.c.rotations.Add(1)
			w.log.Info("log file rotated; following the new file", "path", fl.path)
			nf.seek(0)
			fl.cur = nf
			fl.read(ctx, nf)
		}
	}
	fl.save(false)
}

// checkTruncated detects copytruncate: the file shrank below what was read,
// or it was truncated and has grown again past the read offset (the bytes
// just before the offset are not those read there).
func (fl *follower) checkTruncated(t *tfile) {
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
		fl.w.c.truncations.Add(1)
		fl.w.log.Info("log file truncated; reading from its start", "path", fl.path)
		t.seek(0)
	}
}

// read reads t from its read offset to EOF and handles the complete lines.
func (fl *follower) read(ctx context.Context, t *tfile) {
	w := fl.w
	for ctx.Err() == nil {
		n, err := t.f.ReadAt(fl.buf, t.rd)
		if n > 0 {
			w.c.bytes.Add(uint64(n))
			fl.lines(t, fl.buf[:n])
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				w.c.readErrors.Add(1)
				fl.warnOnce("read", "reading log file", "err", err)
			}
			return
		}
		delete(fl.warned, "read")
	}
}

// lines splits data (which continues t at t.rd) into lines.
func (fl *follower) lines(t *tfile, data []byte) {
	w := fl.w
	max := w.cfg.MaxLineLen
	start := t.off
	rest := data
	for len(rest) > 0 {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			if !t.skipping {
				t.partial = append(t.partial, rest...)
				if len(t.partial) > max {
					t.partial, t.skipping = t.partial[:0], true
					w.c.longLines.Add(1)
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
			w.c.longLines.Add(1)
		default:
			w.line(line)
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
func (fl *follower) save(force bool) {
	w := fl.w
	if w.cfg.Positions == nil || fl.cur == nil {
		return
	}
	now := w.now()
	p := Position{Device: fl.cur.dev, Inode: fl.cur.ino, Offset: fl.cur.off, Size: fl.cur.size, ModTime: fl.cur.mod}
	if fl.hasSav && p.Device == fl.saved.Device && p.Inode == fl.saved.Inode && p.Offset == fl.saved.Offset {
		return
	}
	if !force && now.Sub(fl.last) < w.cfg.SaveInterval {
		return
	}
	fl.last = now
	if err := w.cfg.Positions.SetLogPosition(fl.path, p); err != nil {
		w.c.saveErrors.Add(1)
		fl.warnOnce("save", "saving log position", "err", err)
		return
	}
	delete(fl.warned, "save")
	w.c.saves.Add(1)
	fl.saved, fl.hasSav = p, true
}
