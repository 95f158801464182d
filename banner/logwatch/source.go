package logwatch

import (
	"context"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/follow"
)

// Record is one log entry a Source delivers: either a raw syslog line
// (Line, as a file holds it), or an entry already split into its parts (as
// the systemd journal delivers it: SYSLOG_IDENTIFIER, _PID, the time and
// MESSAGE). A Record and its slices are only valid during the call that
// hands it over.
type Record struct {
	// Line is a raw log line ("TIMESTAMP HOST TAG[PID]: MESSAGE") without
	// its newline; nil for a split entry.
	Line []byte

	// Identifier is the syslog tag without "[PID]" ("postfix/smtpd"), PID
	// the process ID (0: unknown), Time when the entry was logged (zero:
	// unknown) and Message the text after "TAG[PID]: ". Used when Line is
	// nil.
	Identifier []byte
	PID        int
	Time       time.Time
	Message    []byte

	// Where the source would resume after this entry, opaque to the
	// Watcher: the file position for a file source (Position), the journal
	// cursor for a journal source (Cursor).
	Position banner.LogPosition
	Cursor   string
}

// Source delivers log entries to the Watcher.
type Source interface {
	// Run calls emit for every entry until ctx is done, then returns
	// (nil unless the source failed for good). One source calls emit from
	// one goroutine at a time.
	Run(ctx context.Context, emit func(*Record)) error
	// Stats returns the source's counters; safe to call while Run runs.
	Stats() SourceStats
}

// SourceStats are a Source's counters. A source counts what applies to it
// and leaves the rest zero.
type SourceStats struct {
	Lines          uint64 // entries delivered
	Bytes          uint64 // bytes read
	Rotations      uint64
	Truncations    uint64
	LongLines      uint64 // entries skipped for their length
	PositionSaves  uint64
	PositionErrors uint64
	ReadErrors     uint64
	// Files describes the files a file source reads.
	Files []FileState
	// Journal describes where a journal source stands.
	Journal *JournalState
}

// FileState is where the watcher stands in one configured file.
type FileState = follow.FileState

// fileSource follows one file.
type fileSource struct {
	path string
	fl   *follow.Follower
	emit func(*Record) // set by Run before the follower starts
	rec  Record
}

// newFileSource returns a Source that follows cfg's file.
func newFileSource(cfg follow.Config) (*fileSource, error) {
	s := &fileSource{path: cfg.Path}
	fl, err := follow.New(cfg, s.line)
	if err != nil {
		return nil, err
	}
	s.fl = fl
	return s, nil
}

func (s *fileSource) Run(ctx context.Context, emit func(*Record)) error {
	s.emit = emit
	return s.fl.Run(ctx)
}

func (s *fileSource) line(line []byte, pos banner.LogPosition) {
	if line == nil {
		line = []byte{} // nil would make a split entry
	}
	s.rec.Line, s.rec.Position = line, pos
	s.emit(&s.rec)
}

func (s *fileSource) Stats() SourceStats {
	st := s.fl.Stats()
	return SourceStats{Lines: st.Lines, Bytes: st.Bytes, Rotations: st.Rotations, Truncations: st.Truncations,
		LongLines: st.LongLines, PositionSaves: st.PositionSaves, PositionErrors: st.PositionErrors,
		ReadErrors: st.ReadErrors, Files: []FileState{st.File}}
}
