package logwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Position is where the watcher stopped reading a file, with the file's
// identity (device and inode) so that a rotated file is recognised. Its
// fields are those of banner/store.Position, so one converts to the other.
type Position struct {
	Device  uint64
	Inode   uint64
	Offset  int64 // bytes consumed: always just after a newline
	Size    int64 // file size when saved (informational)
	ModTime time.Time
}

// PositionStore persists read positions across restarts. banner/store
// implements it (with its own Position type; convert).
type PositionStore interface {
	LogPosition(path string) (Position, bool, error)
	SetLogPosition(path string, p Position) error
}

// Config configures a Watcher.
type Config struct {
	// Files are the log files to follow.
	Files []string
	// FromStart reads a file with no saved position from its start instead
	// of from its end.
	FromStart bool
	// Builtin, BuiltinWeights, Patterns, OwnRejectMarker and
	// IgnoreServices: see MatcherConfig.
	Builtin         []string
	BuiltinWeights  map[string]float64
	Patterns        []Pattern
	OwnRejectMarker string
	IgnoreServices  []string
	// Positions persists read positions; nil = none (start per FromStart).
	Positions PositionStore
	// PollInterval is how often files are checked for new data and rotation.
	PollInterval time.Duration
	// RotateGrace is how long a rename-rotated file is still read after the
	// new file appeared, for lines the syslog daemon writes to it before it
	// reopens its output.
	RotateGrace time.Duration
	// SaveInterval is the minimum time between two position saves of a file
	// while reading; the position is always saved when Run returns.
	SaveInterval time.Duration
	// MaxLineLen: longer lines are skipped (and counted).
	MaxLineLen int
	// Location for classic syslog timestamps; nil = time.Local.
	Location *time.Location
	// Now is the clock; nil = time.Now.
	Now    func() time.Time
	Logger *slog.Logger
}

// DefaultConfig returns the defaults: /var/log/mail.log, the default
// built-in patterns, submission and smtps ignored, 250ms polling.
func DefaultConfig() Config {
	return Config{
		Files:          []string{"/var/log/mail.log"},
		Builtin:        DefaultBuiltins(),
		IgnoreServices: slices.Clone(DefaultIgnoreServices),
		PollInterval:   250 * time.Millisecond,
		RotateGrace:    time.Minute,
		SaveInterval:   time.Second,
		MaxLineLen:     16 * 1024,
	}
}

// MatcherConfig returns the matcher part of c.
func (c Config) MatcherConfig() MatcherConfig {
	return MatcherConfig{Builtin: c.Builtin, BuiltinWeights: c.BuiltinWeights, Patterns: c.Patterns,
		OwnRejectMarker: c.OwnRejectMarker, IgnoreServices: c.IgnoreServices, Location: c.Location, Now: c.Now}
}

// Validate checks c; errors name the field.
func (c Config) Validate() error {
	seen := map[string]bool{}
	for i, f := range c.Files {
		if f == "" {
			return fmt.Errorf("files[%d]: empty path", i)
		}
		if seen[f] {
			return fmt.Errorf("files[%d]: %q listed twice", i, f)
		}
		seen[f] = true
	}
	if c.PollInterval <= 0 {
		return fmt.Errorf("poll_interval: must be > 0, got %v", c.PollInterval)
	}
	if c.RotateGrace < 0 {
		return fmt.Errorf("rotate_grace: must be >= 0, got %v", c.RotateGrace)
	}
	if c.SaveInterval < 0 {
		return fmt.Errorf("save_interval: must be >= 0, got %v", c.SaveInterval)
	}
	if c.MaxLineLen < 256 {
		return fmt.Errorf("max_line: must be >= 256, got %d", c.MaxLineLen)
	}
	return c.MatcherConfig().Validate()
}

// Stats are the watcher's counters.
type Stats struct {
	Lines          uint64            `json:"lines"`            // complete lines read
	Bytes          uint64            `json:"bytes"`            // bytes read
	Matched        map[string]uint64 `json:"matched"`          // matches per pattern name
	OwnRejects     uint64            `json:"own_rejects"`      // banner's own policy rejects seen
	RBLErrors      uint64            `json:"rbl_errors"`       // RBL rejects caused by a list's error answer (not counted)
	IgnoredService uint64            `json:"ignored_service"`  // matches from an ignore_services service (not counted)
	BadTimestamps  uint64            `json:"bad_timestamps"`   // matched lines whose time could not be parsed
	NoSyslogPrefix uint64            `json:"no_syslog_prefix"` // lines without a syslog prefix (built-in patterns cannot match)
	Rotations      uint64            `json:"rotations"`        // rename rotations followed
	Truncations    uint64            `json:"truncations"`      // truncations (copytruncate) followed
	LongLines      uint64            `json:"long_lines"`       // lines longer than max_line, skipped
	PositionSaves  uint64            `json:"position_saves"`
	PositionErrors uint64            `json:"position_errors"` // failed loads and saves
	ReadErrors     uint64            `json:"read_errors"`
	Files          []FileState       `json:"files"` // one per configured file, in config order
}

// FileState is where the watcher stands in one configured file.
type FileState struct {
	Path string `json:"path"`
	// Open: the path names a file the watcher reads. False while the file
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
	lines, bytes, own, badTime, rotations, truncations, longLines atomic.Uint64
	saves, saveErrors, readErrors, rblErrors, ignored, noPrefix   atomic.Uint64
	matched                                                       map[string]*atomic.Uint64
}

// Watcher follows log files and reports the lines its Matcher matches.
type Watcher struct {
	cfg     Config
	m       *Matcher
	emit    func(Match)
	emitMu  sync.Mutex
	log     *slog.Logger
	now     func() time.Time
	c       counters
	running atomic.Bool
	files   []*atomic.Pointer[FileState] // per cfg.Files, published by the followers
}

// New checks cfg and returns a Watcher that calls emit for every match.
// emit is never called concurrently; it should not block for long.
func New(cfg Config, emit func(Match)) (*Watcher, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("logwatch: %w", err)
	}
	m, err := NewMatcher(cfg.MatcherConfig())
	if err != nil {
		return nil, fmt.Errorf("logwatch: %w", err)
	}
	if emit == nil {
		emit = func(Match) {}
	}
	w := &Watcher{cfg: cfg, m: m, emit: emit, log: cfg.Logger, now: cfg.Now}
	if w.log == nil {
		w.log = slog.Default()
	}
	w.log = w.log.With("component", "logwatch")
	if w.now == nil {
		w.now = time.Now
	}
	for _, p := range cfg.Files {
		st := new(atomic.Pointer[FileState])
		st.Store(&FileState{Path: p})
		w.files = append(w.files, st)
	}
	w.c.matched = map[string]*atomic.Uint64{}
	for _, n := range m.Names() {
		w.c.matched[n] = new(atomic.Uint64)
	}
	return w, nil
}

// Matcher returns the watcher's matcher.
func (w *Watcher) Matcher() *Matcher { return w.m }

// Run follows every configured file until ctx is done, then saves the
// positions and returns nil. It can be called once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("logwatch: Run called twice")
	}
	var wg sync.WaitGroup
	for i, p := range w.cfg.Files {
		fl := newFollower(w, p)
		fl.state = w.files[i]
		wg.Go(func() { fl.run(ctx) })
	}
	wg.Wait()
	return nil
}

// Stats returns a snapshot of the counters.
func (w *Watcher) Stats() Stats {
	s := Stats{
		Lines: w.c.lines.Load(), Bytes: w.c.bytes.Load(), OwnRejects: w.c.own.Load(),
		BadTimestamps: w.c.badTime.Load(), Rotations: w.c.rotations.Load(), Truncations: w.c.truncations.Load(),
		LongLines: w.c.longLines.Load(), PositionSaves: w.c.saves.Load(), PositionErrors: w.c.saveErrors.Load(),
		ReadErrors: w.c.readErrors.Load(), RBLErrors: w.c.rblErrors.Load(), IgnoredService: w.c.ignored.Load(), NoSyslogPrefix: w.c.noPrefix.Load(),
		Matched: map[string]uint64{},
	}
	for n, c := range w.c.matched {
		s.Matched[n] = c.Load()
	}
	for _, f := range w.files {
		s.Files = append(s.Files, *f.Load())
	}
	return s
}

// line handles one complete line.
func (w *Watcher) line(b []byte) {
	w.c.lines.Add(1)
	r, out, prefixed := w.m.matchLine(b)
	if out == NoMatch && !prefixed {
		if w.c.noPrefix.Add(1) == 1 {
			w.log.Warn("log line without a syslog prefix: built-in patterns cannot match such lines; is this the log rsyslog writes (or journalctl -o short-iso)?", "line", string(trimEOL(b)))
		}
	}
	switch out {
	case OwnReject:
		w.c.own.Add(1)
	case IgnoredService:
		w.c.ignored.Add(1)
	case RBLError:
		if w.c.rblErrors.Add(1) == 1 {
			w.log.Warn("RBL reject with an error answer from the list: Postfix rejects clients because the DNSBL refuses its queries (public resolver or over quota?); not counted", "line", r.Line)
		}
	case Matched:
		if c := w.c.matched[r.Pattern]; c != nil {
			c.Add(1)
		}
		if r.BadTime {
			w.c.badTime.Add(1)
		}
		w.emitMu.Lock()
		w.emit(r)
		w.emitMu.Unlock()
	}
}
