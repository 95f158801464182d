package logwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/banner-mta/banner/banner/follow"
)

// PositionStore persists read positions across restarts; banner/store
// implements it.
type PositionStore = follow.PositionStore

// Config configures a Watcher.
type Config struct {
	// Files are the log files to follow.
	Files []string
	// Journal reads Postfix's entries in the systemd journal besides Files
	// (through journalctl; see JournalConfig). FromStart, Positions,
	// SaveInterval and MaxLineLen apply to it as to files.
	Journal bool
	// JournalCommand and JournalArgs: see JournalConfig.Command and Args
	// (for tests: a journal directory).
	JournalCommand string
	JournalArgs    []string
	// Sources are further sources of log entries, read besides Files.
	Sources []Source
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
	seen := map[string]int{}
	for i, f := range c.Files {
		if f == "" {
			return fmt.Errorf("files[%d]: empty path", i)
		}
		clean := filepath.Clean(f)
		if strings.Contains(f, "..") {
			clean = f // x/.. is not the directory itself if x is a symlink; SameFiles compares the files
		}
		if j, ok := seen[clean]; ok {
			if c.Files[j] == f {
				return fmt.Errorf("files[%d]: %q listed twice", i, f)
			}
			return fmt.Errorf("files[%d]: %q listed twice: it is files[%d] %q written another way", i, f, j, c.Files[j])
		}
		seen[clean] = i
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
	MatchPanics    uint64            `json:"match_panics"`     // lines whose matching panicked, skipped (a bug: please report the logged line)
	PositionSaves  uint64            `json:"position_saves"`   // positions handed to the engine, which saves each after the events before it
	PositionErrors uint64            `json:"position_errors"`  // failed loads and saves
	ReadErrors     uint64            `json:"read_errors"`
	Files          []FileState       `json:"files"`             // one per configured file, in config order
	Journal        *JournalState     `json:"journal,omitempty"` // the journal source, if configured
	Lags           []Lag             `json:"lags"`              // one per source, in the order of Files then the journal
}

type counters struct {
	own, badTime, rblErrors, ignored, noPrefix, panics atomic.Uint64
	matched                                            map[string]*atomic.Uint64
	lastPanicLog                                       atomic.Int64 // UnixNano of the last logged panic
}

// Watcher reads its sources (the log files, and Config.Sources) and
// reports the entries its Matcher matches.
type Watcher struct {
	m       *Matcher
	emit    func(Match)
	emitMu  sync.Mutex
	log     *slog.Logger
	c       counters
	running atomic.Bool
	sources []Source    // the files in config order, then Config.Sources
	lags    []sourceLag // one per source, same order
	deliv   *Deliveries
	now     func() time.Time
}

// sourceLag is how far behind one source's newest timed entry was when the
// Watcher had handled it (after the engine took its event).
type sourceLag struct {
	name  string
	nanos atomic.Int64 // the lag; 0 if negative (a clock ahead of the log's)
	at    atomic.Int64 // UnixNano of the measurement; 0: none yet
}

// Lag is one source's lag: how long after it was logged the newest entry
// with a known time (a matched file line, or any journal entry) had been
// handled, including the wait for the engine. It grows when banner falls
// behind the log, and stays put while the log is quiet.
type Lag struct {
	Source string        `json:"source"` // the file's path, "journal", or the source's type
	Lag    time.Duration `json:"lag"`
	At     time.Time     `json:"at,omitzero"` // when it was measured; zero: no timed entry yet
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
	w := &Watcher{m: m, emit: emit, log: cfg.Logger, deliv: NewDeliveries(0), now: cfg.Now}
	if w.now == nil {
		w.now = time.Now
	}
	if w.log == nil {
		w.log = slog.Default()
	}
	w.log = w.log.With("component", "logwatch")
	// two entries naming one file (a symlink, a hard link, "//"): refused
	// now if they exist; the followers' shared claims cover files that
	// appear (or become the same) later
	if err := follow.SameFiles(cfg.Files); err != nil {
		return nil, fmt.Errorf("logwatch: %w", err)
	}
	claims := new(follow.Claims)
	for _, p := range cfg.Files {
		s, err := newFileSource(follow.Config{Path: p, FromStart: cfg.FromStart, Positions: cfg.Positions,
			PollInterval: cfg.PollInterval, RotateGrace: cfg.RotateGrace, SaveInterval: cfg.SaveInterval,
			MaxLineLen: cfg.MaxLineLen, Claims: claims, Now: cfg.Now, Logger: w.log})
		if err != nil {
			return nil, fmt.Errorf("logwatch: %w", err)
		}
		w.sources = append(w.sources, s)
	}
	if cfg.Journal {
		w.sources = append(w.sources, newJournalSource(JournalConfig{Command: cfg.JournalCommand, Args: cfg.JournalArgs,
			FromStart: cfg.FromStart, Positions: cfg.Positions, SaveInterval: cfg.SaveInterval,
			MaxLineLen: cfg.MaxLineLen, Logger: w.log}))
	}
	w.sources = append(w.sources, cfg.Sources...)
	w.lags = make([]sourceLag, len(w.sources))
	for i, s := range w.sources {
		w.lags[i].name = sourceName(s)
	}
	w.c.matched = map[string]*atomic.Uint64{}
	for _, n := range m.Names() {
		w.c.matched[n] = new(atomic.Uint64)
	}
	return w, nil
}

// Matcher returns the watcher's matcher.
func (w *Watcher) Matcher() *Matcher { return w.m }

// Run reads every source until ctx is done (file sources then save their
// positions) and returns what the sources returned. It can be called once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("logwatch: Run called twice")
	}
	var wg sync.WaitGroup
	errs := make([]error, len(w.sources))
	for i, s := range w.sources {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = s.Run(ctx, func(rec *Record) { w.record(s, rec, &w.lags[i]) }) }()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Stats returns a snapshot of the counters.
func (w *Watcher) Stats() Stats {
	s := Stats{
		OwnRejects: w.c.own.Load(), BadTimestamps: w.c.badTime.Load(),
		RBLErrors: w.c.rblErrors.Load(), IgnoredService: w.c.ignored.Load(), NoSyslogPrefix: w.c.noPrefix.Load(),
		MatchPanics: w.c.panics.Load(),
		Matched:     map[string]uint64{},
	}
	for n, c := range w.c.matched {
		s.Matched[n] = c.Load()
	}
	for _, src := range w.sources {
		st := src.Stats()
		s.Lines += st.Lines
		s.Bytes += st.Bytes
		s.Rotations += st.Rotations
		s.Truncations += st.Truncations
		s.LongLines += st.LongLines
		s.PositionSaves += st.PositionSaves
		s.PositionErrors += st.PositionErrors
		s.ReadErrors += st.ReadErrors
		s.Files = append(s.Files, st.Files...)
		if st.Journal != nil {
			s.Journal = st.Journal
		}
	}
	for i := range w.lags {
		l := &w.lags[i]
		lag := Lag{Source: l.name, Lag: time.Duration(l.nanos.Load())}
		if at := l.at.Load(); at != 0 {
			lag.At = time.Unix(0, at)
		}
		s.Lags = append(s.Lags, lag)
	}
	return s
}

// sourceName names a source in Lag: the path of a file, "journal", or the
// type of another source.
func sourceName(s Source) string {
	switch s := s.(type) {
	case *fileSource:
		return s.path
	case *journalSource:
		return "journal"
	default:
		return fmt.Sprintf("%T", s)
	}
}

// measureLag records how long after t an entry of src was handled.
func (w *Watcher) measureLag(l *sourceLag, t time.Time) {
	if t.IsZero() {
		return
	}
	now := w.now()
	l.nanos.Store(int64(max(now.Sub(t), 0)))
	l.at.Store(now.UnixNano())
}

// panicLogEvery is the least time between two log lines about a panic
// while matching.
const panicLogEvery = time.Minute

// record handles one entry from a source.
func (w *Watcher) record(src Source, rec *Record, lag *sourceLag) {
	r, out, prefixed, ok := w.match(src, rec)
	if !ok {
		return
	}
	if rec.Line == nil && out != Matched {
		defer w.measureLag(lag, rec.Time) // a split entry's time is known without matching
	}
	if out == NoMatch && !prefixed {
		if w.c.noPrefix.Add(1) == 1 {
			w.log.Warn("log line without a syslog prefix: built-in patterns cannot match such lines; is this the log rsyslog writes (or journalctl -o short-iso)?", "line", string(trimEOL(rec.Line)))
		}
	}
	if out == NoMatch {
		if r, ok = w.deliv.Record(w.m, rec); ok {
			out = Matched
		}
	}
	if out == Matched {
		r.Origin = origin(src, rec)
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
		if !r.BadTime {
			w.measureLag(lag, r.Time)
		}
	}
}

// match matches rec; a panic while matching is recovered, counted and
// logged (at most once per panicLogEvery), and ok is then false: the entry
// is skipped, so no single line can stop the watcher.
func (w *Watcher) match(src Source, rec *Record) (r Match, out Outcome, prefixed, ok bool) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		ok = false
		w.c.panics.Add(1)
		now := time.Now().UnixNano()
		last := w.c.lastPanicLog.Load()
		if now-last < int64(panicLogEvery) && last != 0 || !w.c.lastPanicLog.CompareAndSwap(last, now) {
			return
		}
		attrs := []any{"panic", fmt.Sprint(v), "skipped_so_far", w.c.panics.Load()}
		if rec.Line != nil {
			if fs, isFile := src.(*fileSource); isFile {
				attrs = append(attrs, "file", fs.path)
			}
			attrs = append(attrs, "inode", rec.Position.Inode, "offset", rec.Position.Offset-int64(len(rec.Line))-1,
				"line", string(rec.Line))
		} else {
			attrs = append(attrs, "cursor", rec.Cursor, "identifier", string(rec.Identifier), "message", string(rec.Message))
		}
		w.log.Error("matching a log entry panicked; entry skipped (a bug in banner: please report this line)", attrs...)
	}()
	r, out, prefixed = w.m.matchRecord(rec)
	return r, out, prefixed, true
}
