// Package recipients knows which recipient addresses of the protected
// domains exist, so that banner can count RCPTs to unknown users.
//
// Valid recipients are read from files in Postfix text table format:
// virtual(5) ("address  value"), aliases(5) ("name: value") or plain lists
// of addresses, one per line. Only the first field of each line is used:
//
//   - blank lines, lines whose first character is '#' and continuation
//     lines (starting with white space) are skipped;
//   - "local@domain" makes that address valid;
//   - "@domain" is a catch-all: every address in domain is valid;
//   - a bare local part ("alice", an aliases(5) name or a local user) is
//     valid in every protected domain, much like local_recipient_maps for
//     the domains in mydestination;
//   - a bare key equal to a protected domain (a virtual(5) alias-domain
//     declaration such as "example.com  anything") declares nothing;
//   - entries for domains that are not protected are ignored.
//
// Keys and recipients are compared case-insensitively, after removing
// angle brackets, one trailing dot of the domain and the quoting of a quoted
// local part ("a b"@d is a b@d, as in Postfix's internal form). With a
// recipient delimiter (Postfix recipient_delimiter, default "+"; every
// character is a delimiter), "alice+tag@d" is valid if "alice+tag@d",
// "alice@d", "alice+tag", "alice" or "@d" is listed (the lookup order of
// virtual(5)).
//
// Loading is strict: an unreadable file, a NUL byte, an overlong line, a
// malformed key, regexp/pcre syntax, or a protected domain for which no
// recipient at all is listed makes Load and Reload fail (naming file and
// line). A half-read table would call real users unknown and get
// legitimate senders banned; Reload therefore keeps the previous table on
// any error.
package recipients

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Verdict is the result of Check.
type Verdict int

const (
	// NotProtected: the domain is not protected, or the address is empty or
	// malformed; banner must not count it.
	NotProtected Verdict = iota
	// Known: the recipient exists.
	Known
	// Unknown: the domain is protected and the recipient is not listed.
	Unknown
)

// String returns "not_protected", "known" or "unknown".
func (v Verdict) String() string {
	switch v {
	case NotProtected:
		return "not_protected"
	case Known:
		return "known"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Verdict(%d)", int(v))
}

// Config configures a Table.
type Config struct {
	// Domains are the protected domains (e.g. virtual_mailbox_domains).
	Domains []string
	// Files are the tables of valid recipients.
	Files []string
	// RecipientDelimiter is Postfix's recipient_delimiter: each character
	// separates a local part from its extension. "" disables extensions.
	RecipientDelimiter string
	// MinFileAge: WatchChanges reloads a changed file only once its
	// modification time is at least this old, so a file being written is
	// not read half-way (Postfix waits 1 s the same way). 0 = reload at once.
	MinFileAge time.Duration
	// Logger receives reload messages; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns a Config with Postfix's default delimiter.
func DefaultConfig() Config {
	return Config{RecipientDelimiter: "+", MinFileAge: time.Second}
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if len(c.Domains) == 0 {
		return errors.New("domains: must not be empty")
	}
	for i, d := range c.Domains {
		if _, err := normalizeDomain(strings.TrimSpace(d)); err != nil || strings.Contains(d, "@") {
			return fmt.Errorf("domains[%d]: invalid domain %q", i, d)
		}
	}
	if len(c.Files) == 0 {
		return errors.New("files: must not be empty (with no table every recipient would be unknown)")
	}
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
	if strings.ContainsAny(c.RecipientDelimiter, "@\" \t\r\n\x00") {
		return fmt.Errorf("recipient_delimiter: invalid character in %q", c.RecipientDelimiter)
	}
	if c.MinFileAge < 0 {
		return fmt.Errorf("min_file_age: must be >= 0, got %v", c.MinFileAge)
	}
	return nil
}

// Stats are counters for metrics.
type Stats struct {
	// Entries is the number of listed addresses and bare local parts.
	Entries int `json:"entries"`
	// Domains is the number of protected domains.
	Domains int `json:"domains"`
	// CatchAlls is the number of protected domains with an @domain entry.
	CatchAlls int `json:"catch_alls"`
	// Ignored is the number of entries for domains that are not protected.
	Ignored int `json:"ignored"`
	// LastReload is when the current table was loaded.
	LastReload time.Time `json:"last_reload,omitzero"`
	// Reloads counts successful loads, ReloadErrors failed ones.
	Reloads      uint64 `json:"reloads"`
	ReloadErrors uint64 `json:"reload_errors"`
	// Known, Unknown and NotProtected count Check verdicts.
	Known        uint64 `json:"known"`
	Unknown      uint64 `json:"unknown"`
	NotProtected uint64 `json:"not_protected"`
}

// fileState identifies a file version for change detection.
type fileState struct {
	path  string
	info  os.FileInfo // nil if the file could not be stat'ed
	size  int64
	mtime time.Time
}

func statFile(path string) fileState {
	fi, err := os.Stat(path)
	if err != nil {
		return fileState{path: path}
	}
	return fileState{path: path, info: fi, size: fi.Size(), mtime: fi.ModTime()}
}

func (a fileState) same(b fileState) bool {
	if a.info == nil || b.info == nil {
		return a.info == nil && b.info == nil
	}
	return a.size == b.size && a.mtime.Equal(b.mtime) && os.SameFile(a.info, b.info)
}

// snapshot is an immutable loaded table.
type snapshot struct {
	domains  map[string]struct{}
	catchAll map[string]struct{}
	exact    map[string]struct{} // local@domain
	bare     map[string]struct{} // local
	ignored  int
	files    []fileState
	loaded   time.Time
}

// Table answers Check from the current snapshot; it is safe for concurrent
// use.
type Table struct {
	cfg    Config
	log    *slog.Logger
	cur    atomic.Pointer[snapshot]
	reload sync.Mutex // serialises Reload

	reloads, reloadErrors        atomic.Uint64
	known, unknown, notProtected atomic.Uint64
}

// Load validates cfg and reads the files.
func Load(cfg Config) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Table{cfg: cfg, log: cfg.Logger}
	if t.log == nil {
		t.log = slog.Default()
	}
	s, err := t.load()
	if err != nil {
		t.reloadErrors.Add(1)
		return nil, err
	}
	t.cur.Store(s)
	t.reloads.Add(1)
	return t, nil
}

// Reload re-reads the files. On error the previous table stays in use and
// the error is returned.
func (t *Table) Reload() error {
	t.reload.Lock()
	defer t.reload.Unlock()
	s, err := t.load()
	if err != nil {
		t.reloadErrors.Add(1)
		return err
	}
	t.cur.Store(s)
	t.reloads.Add(1)
	t.log.Info("recipient tables reloaded", "entries", len(s.exact)+len(s.bare), "catch_alls", len(s.catchAll), "ignored", s.ignored)
	return nil
}

func (t *Table) load() (*snapshot, error) {
	s := &snapshot{
		domains:  map[string]struct{}{},
		catchAll: map[string]struct{}{},
		exact:    map[string]struct{}{},
		bare:     map[string]struct{}{},
		loaded:   time.Now(),
	}
	for _, d := range t.cfg.Domains {
		nd, err := normalizeDomain(strings.TrimSpace(d))
		if err != nil {
			return nil, fmt.Errorf("domains: %w", err)
		}
		s.domains[nd] = struct{}{}
	}
	perDomain := map[string]int{}
	for _, path := range t.cfg.Files {
		st := statFile(path)
		if err := s.readFile(path, perDomain); err != nil {
			return nil, err
		}
		s.files = append(s.files, st)
	}
	if len(s.bare) == 0 {
		for d := range s.domains {
			if perDomain[d] == 0 {
				return nil, fmt.Errorf("protected domain %s: no recipient listed in %s (every recipient would be unknown)", d, strings.Join(t.cfg.Files, ", "))
			}
		}
	}
	return s, nil
}

// readFile adds the entries of one file.
func (s *snapshot) readFile(path string, perDomain map[string]int) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("recipient table: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 64<<10)
	for n := 1; ; n++ {
		line, err := readLine(r)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		e, err := parseLine(line)
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, n, err)
		}
		switch e.kind {
		case keyAddress:
			if _, ok := s.domains[e.domain]; !ok {
				s.ignored++
				continue
			}
			s.exact[e.local+"@"+e.domain] = struct{}{}
			perDomain[e.domain]++
		case keyCatchAll:
			if _, ok := s.domains[e.domain]; !ok {
				s.ignored++
				continue
			}
			s.catchAll[e.domain] = struct{}{}
			perDomain[e.domain]++
		case keyBare:
			if _, ok := s.domains[e.local]; ok {
				continue // virtual(5) domain declaration
			}
			s.bare[e.local] = struct{}{}
		}
	}
}

// readLine reads one line without its "\n"; lines longer than
// MaxLineLength are an error. io.EOF only when nothing is left.
func readLine(r *bufio.Reader) (string, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		if len(buf)+len(chunk) > MaxLineLength+1 {
			return "", fmt.Errorf("line longer than %d bytes", MaxLineLength)
		}
		buf = append(buf, chunk...)
		switch {
		case err == nil:
			return string(buf[:len(buf)-1]), nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(buf) > 0:
			return string(buf), nil
		default:
			return "", err
		}
	}
}

// Check says whether rcpt (as in a policy request's recipient= or a log
// line's to=<...>) is a known recipient of a protected domain.
func (t *Table) Check(rcpt string) Verdict {
	v := t.cur.Load().check(rcpt, t.cfg.RecipientDelimiter)
	switch v {
	case Known:
		t.known.Add(1)
	case Unknown:
		t.unknown.Add(1)
	default:
		t.notProtected.Add(1)
	}
	return v
}

func (s *snapshot) check(rcpt, delims string) Verdict {
	local, domain, plain := plainRecipient(rcpt)
	if !plain {
		var ok bool
		if local, domain, ok = parseRecipient(rcpt); !ok {
			return NotProtected
		}
	}
	if _, ok := s.domains[domain]; !ok {
		return NotProtected
	}
	if plain {
		// rcpt is local@domain already: no key to build.
		if _, ok := s.exact[rcpt]; ok {
			return Known
		}
		if _, ok := s.bare[local]; ok {
			return Known
		}
	} else if s.has(local, domain) {
		return Known
	}
	if delims != "" {
		// Do not split at a delimiter that starts the local part.
		if i := strings.IndexAny(local[min(1, len(local)):], delims); i >= 0 {
			if s.has(local[:i+1], domain) {
				return Known
			}
		}
	}
	if _, ok := s.catchAll[domain]; ok {
		return Known
	}
	return Unknown
}

func (s *snapshot) has(local, domain string) bool {
	if _, ok := s.exact[local+"@"+domain]; ok {
		return true
	}
	_, ok := s.bare[local]
	return ok
}

// Stats returns counters and the shape of the current table.
func (t *Table) Stats() Stats {
	s := t.cur.Load()
	return Stats{
		Entries:      len(s.exact) + len(s.bare),
		Domains:      len(s.domains),
		CatchAlls:    len(s.catchAll),
		Ignored:      s.ignored,
		LastReload:   s.loaded,
		Reloads:      t.reloads.Load(),
		ReloadErrors: t.reloadErrors.Load(),
		Known:        t.known.Load(),
		Unknown:      t.unknown.Load(),
		NotProtected: t.notProtected.Load(),
	}
}

// changed reports whether any file differs from the loaded version and
// every changed file is at least minAge old.
func (t *Table) changed(now time.Time) bool {
	s := t.cur.Load()
	changed := false
	for _, old := range s.files {
		cur := statFile(old.path)
		if cur.same(old) {
			continue
		}
		if cur.info != nil && now.Sub(cur.mtime) < t.cfg.MinFileAge {
			return false // still being written: look again next time
		}
		changed = true
	}
	return changed
}

// WatchChanges polls the files' size, modification time and identity every
// interval and reloads when one changed (and is MinFileAge old). Errors are
// logged and the old table is kept; a file that is still broken is not
// re-read until it changes again. It returns when ctx is done.
func (t *Table) WatchChanges(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var failed []fileState // file states of the last failed reload
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if !t.changed(now) {
				continue
			}
			cur := make([]fileState, 0, len(t.cfg.Files))
			for _, p := range t.cfg.Files {
				cur = append(cur, statFile(p))
			}
			if sameStates(cur, failed) {
				continue
			}
			if err := t.Reload(); err != nil {
				t.log.Error("recipient tables not reloaded; keeping the previous table", "err", err)
				failed = cur
				continue
			}
			failed = nil
		}
	}
}

func sameStates(a, b []fileState) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !a[i].same(b[i]) {
			return false
		}
	}
	return true
}
