// Package follow follows log files as a syslog daemon writes them: it
// survives rename rotation, copytruncate, inode reuse and restarts (with
// saved positions), and hands every complete line, with the position just
// after it, to a Sink. It knows nothing of what the lines mean.
package follow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/banner-mta/banner/banner"
)

// Sink receives each complete line (without its newline) and the position
// just after it. line is only valid during the call. A Follower calls its
// sink from one goroutine.
type Sink func(line []byte, pos banner.LogPosition)

// PositionStore persists read positions across restarts; banner/store
// implements it.
type PositionStore interface {
	LogPosition(path string) (banner.LogPosition, bool, error)
	SetLogPosition(path string, p banner.LogPosition) error
}

// Config configures a Follower.
type Config struct {
	// Path is the log file to follow.
	Path string
	// FromStart reads a file with no saved position from its start instead
	// of from its end.
	FromStart bool
	// Positions persists the read position; nil = none (start per FromStart).
	Positions PositionStore
	// PollInterval is how often the file is checked for new data and
	// rotation; it must be > 0.
	PollInterval time.Duration
	// RotateGrace is how long a rename-rotated file is still read after the
	// new file appeared, for lines the syslog daemon writes to it before it
	// reopens its output.
	RotateGrace time.Duration
	// SaveInterval is the minimum time between two position saves while
	// reading; the position is always saved when Run returns.
	SaveInterval time.Duration
	// MaxLineLen: longer lines are skipped (and counted); it must be > 0.
	MaxLineLen int
	// Claims, when set, is shared by the Followers of one watcher: a
	// Follower does not read a file (device and inode) that another one
	// reads already, as when two configured paths name one file (a
	// symlink, a hard link, "//" in a path). It treats the path as one it
	// cannot open (FileState.Error, a warning, tried again at each poll).
	Claims *Claims
	// Now is the clock; nil = time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// Claims is the set of files (device and inode) the Followers sharing it
// read as their current file, each with the path that reads it. The zero
// value is empty and ready to use; it is safe for concurrent use.
type Claims struct {
	mu sync.Mutex
	m  map[[2]uint64]string
}

// claim records dev, ino as read by path and reports true, unless another
// path holds it: then it returns that path and false.
func (c *Claims) claim(dev, ino uint64, path string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := [2]uint64{dev, ino}
	if owner, ok := c.m[k]; ok && owner != path {
		return owner, false
	}
	if c.m == nil {
		c.m = map[[2]uint64]string{}
	}
	c.m[k] = path
	return path, true
}

// release drops path's claim on dev, ino.
func (c *Claims) release(dev, ino uint64, path string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := [2]uint64{dev, ino}
	if c.m[k] == path {
		delete(c.m, k)
	}
}

// SameFileError: a path names a file another path is followed as already
// (a Follower's open error with Config.Claims), or is listed twice
// (SameFiles).
type SameFileError struct {
	Path, Other   string
	Device, Inode uint64
}

func (e *SameFileError) Error() string {
	return fmt.Sprintf("%q is the same file as %q (device %d, inode %d: a symlink, a hard link or the same path written another way): "+
		"its lines would be counted twice, so it is read once, as %q", e.Path, e.Other, e.Device, e.Inode, e.Other)
}

// SameFiles reports the paths that name the same existing file (device and
// inode, following symlinks) as an earlier one: for each, an error
// "files[I]: ..." naming both entries, joined. Paths that cannot be
// stat'ed are skipped (they may appear later: Claims covers that).
func SameFiles(paths []string) error {
	type seen struct {
		i    int
		path string
	}
	first := map[[2]uint64]seen{}
	var errs []error
	for i, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			continue
		}
		dev, ino := identity(fi)
		k := [2]uint64{dev, ino}
		if s, ok := first[k]; ok {
			errs = append(errs, fmt.Errorf("files[%d]: %q is the same file as files[%d] %q (device %d, inode %d: a symlink, a hard link or the same path written another way): "+
				"every line would be counted twice; list it once", i, p, s.i, s.path, dev, ino))
			continue
		}
		first[k] = seen{i, p}
	}
	return errors.Join(errs...)
}

// Stats are a Follower's counters and where it stands in its file.
type Stats struct {
	Lines          uint64 // complete lines handed to the sink
	Bytes          uint64 // bytes read
	Rotations      uint64 // rename rotations followed
	Truncations    uint64 // truncations (copytruncate) followed
	LongLines      uint64 // lines longer than MaxLineLen, skipped
	PositionSaves  uint64
	PositionErrors uint64 // failed loads and saves
	ReadErrors     uint64
	OpenErrors     uint64 // failed opens (other than "does not exist")
	File           FileState
}

// FileState is where a Follower stands in its file.
type FileState struct {
	Path string `json:"path"`
	// Open: the path names a file the follower reads. False while the file
	// does not exist (yet) or cannot be opened (Error says why: the last
	// open or stat error). When the path was rotated to a new file that
	// cannot be opened, Open is false and Error set while the previous
	// file, which Device to Size describe, is still read.
	Open   bool   `json:"open"`
	Error  string `json:"error,omitempty"`
	Device uint64 `json:"device,omitempty"`
	Inode  uint64 `json:"inode,omitempty"`
	// Offset is how far the current file has been read; Size its size at
	// the last poll.
	Offset int64 `json:"offset"`
	Size   int64 `json:"size"`
	// Draining counts rotated files still read for late lines.
	Draining int `json:"draining,omitempty"`
	// Lines read from this path (all its files) since start, and when the
	// last one was read.
	Lines    uint64    `json:"lines"`
	LastLine time.Time `json:"last_line,omitzero"`
}

type counters struct {
	lines, bytes, rotations, truncations, longLines atomic.Uint64
	saves, saveErrors, readErrors, openErrors       atomic.Uint64
}

// New returns a Follower of cfg.Path that calls sink for every line.
func New(cfg Config, sink Sink) (*Follower, error) {
	switch {
	case cfg.Path == "":
		return nil, errors.New("follow: empty path")
	case cfg.PollInterval <= 0:
		return nil, fmt.Errorf("follow: poll interval must be > 0, got %v", cfg.PollInterval)
	case cfg.MaxLineLen <= 0:
		return nil, fmt.Errorf("follow: max line length must be > 0, got %d", cfg.MaxLineLen)
	}
	if sink == nil {
		sink = func([]byte, banner.LogPosition) {}
	}
	fl := &Follower{cfg: cfg, sink: sink, log: cfg.Logger, now: cfg.Now, path: cfg.Path,
		buf: make([]byte, 64*1024), warned: map[string]bool{}}
	if fl.log == nil {
		fl.log = slog.Default()
	}
	if fl.now == nil {
		fl.now = time.Now
	}
	fl.state.Store(&FileState{Path: cfg.Path})
	return fl, nil
}

// Run follows the file until ctx is done, then saves the position and
// returns nil. It can be called once.
func (fl *Follower) Run(ctx context.Context) error {
	if !fl.running.CompareAndSwap(false, true) {
		return errors.New("follow: Run called twice")
	}
	fl.run(ctx)
	return nil
}

// Stats returns a snapshot of the counters and of the file state published
// after the last poll. It is safe to call while Run runs.
func (fl *Follower) Stats() Stats {
	return Stats{
		Lines: fl.c.lines.Load(), Bytes: fl.c.bytes.Load(), Rotations: fl.c.rotations.Load(),
		Truncations: fl.c.truncations.Load(), LongLines: fl.c.longLines.Load(), PositionSaves: fl.c.saves.Load(),
		PositionErrors: fl.c.saveErrors.Load(), ReadErrors: fl.c.readErrors.Load(), OpenErrors: fl.c.openErrors.Load(),
		File: *fl.state.Load(),
	}
}
