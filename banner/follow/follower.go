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
	// Now is the clock; nil = time.Now.
	Now    func() time.Time
	Logger *slog.Logger
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
