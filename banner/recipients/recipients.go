// Package recipients knows which recipient addresses of the protected
// domains exist, from files in Postfix's text formats, so that RCPTs to
// unknown addresses can be counted against the client.
//
// Each non-blank, non-comment line contributes its first field: a full
// address ("alice@example.test"), a catch-all ("@example.test": every
// address in that domain is valid), or a bare local part ("alice", as in
// aliases(5) or local_recipient_maps: valid in every protected domain).
// virtual(5) maps, aliases(5) files ("name: value", the colon is dropped)
// and plain lists all work. Lines starting with whitespace continue the
// previous entry (aliases(5)) and are skipped. Matching ignores case and
// an address extension after the recipient delimiter (alice+tag is alice).
package recipients

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// maxLine bounds one line of a table file.
const maxLine = 64 * 1024

// Verdict is what Check says about a recipient.
type Verdict int

// Verdicts.
const (
	// NotProtected: the domain is not protected, or the address is not a
	// plain user@domain; nothing is counted.
	NotProtected Verdict = iota
	// Known: the recipient exists.
	Known
	// Unknown: the domain is protected and the recipient does not exist.
	Unknown
)

func (v Verdict) String() string {
	switch v {
	case Known:
		return "known"
	case Unknown:
		return "unknown"
	default:
		return "not protected"
	}
}

// Config configures a Table. Field comments name the TOML key.
type Config struct {
	// Domains are the protected domains (domains).
	Domains []string
	// Files hold the valid recipients (files).
	Files []string
	// RecipientDelimiter separates an address extension, as Postfix's
	// recipient_delimiter; "" disables (recipient_delimiter).
	RecipientDelimiter string
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Validate checks the configuration; errors name the key.
func (c Config) Validate() error {
	var errs []error
	for i, d := range c.Domains {
		if _, ok := normDomain(d); !ok {
			errs = append(errs, fmt.Errorf("domains[%d]: invalid domain %q", i, d))
		}
	}
	if len(c.RecipientDelimiter) > 8 {
		errs = append(errs, fmt.Errorf("recipient_delimiter: %q is too long", c.RecipientDelimiter))
	}
	return errors.Join(errs...)
}

// snapshot is one immutable state of the tables.
type snapshot struct {
	domains   map[string]bool // protected domains
	catchAll  map[string]bool // domains with an @domain entry
	addresses map[string]bool // user@domain
	locals    map[string]bool // bare local parts
	entries   int
	loaded    time.Time
	files     map[string]fileStamp
}

type fileStamp struct {
	size    int64
	modTime time.Time
}

// Table answers Check from the last successful load. It is safe for
// concurrent use; reloads swap the whole table atomically.
type Table struct {
	cfg          Config
	delims       string
	log          *slog.Logger
	cur          atomic.Pointer[snapshot]
	reloadErrors atomic.Uint64
	reloads      atomic.Uint64
}

// Load reads the files. Errors name the file and line.
func Load(cfg Config) (*Table, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Table{cfg: cfg, delims: cfg.RecipientDelimiter, log: cfg.Logger}
	if t.log == nil {
		t.log = slog.Default()
	}
	s, err := t.read()
	if err != nil {
		return nil, err
	}
	t.cur.Store(s)
	return t, nil
}

// Reload re-reads the files; on error the old table stays in force.
func (t *Table) Reload() error {
	s, err := t.read()
	if err != nil {
		t.reloadErrors.Add(1)
		return err
	}
	t.cur.Store(s)
	t.reloads.Add(1)
	return nil
}

// WatchChanges re-reads the files whenever one of them changes size or
// modification time, checking every interval, until ctx ends.
func (t *Table) WatchChanges(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if !t.changed() {
			continue
		}
		if err := t.Reload(); err != nil {
			t.log.Error("reloading recipient tables; keeping the old ones", "err", err)
			continue
		}
		t.log.Info("recipient tables reloaded", "entries", t.cur.Load().entries)
	}
}

func (t *Table) changed() bool {
	s := t.cur.Load()
	for _, f := range t.cfg.Files {
		fi, err := os.Stat(f)
		if err != nil {
			return true
		}
		old, ok := s.files[f]
		if !ok || old.size != fi.Size() || !old.modTime.Equal(fi.ModTime()) {
			return true
		}
	}
	return false
}

func (t *Table) read() (*snapshot, error) {
	s := &snapshot{
		domains:   map[string]bool{},
		catchAll:  map[string]bool{},
		addresses: map[string]bool{},
		locals:    map[string]bool{},
		loaded:    time.Now(),
		files:     map[string]fileStamp{},
	}
	for _, d := range t.cfg.Domains {
		nd, _ := normDomain(d)
		s.domains[nd] = true
	}
	for _, path := range t.cfg.Files {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("recipient table: %w", err)
		}
		if fi, err := os.Stat(path); err == nil {
			s.files[path] = fileStamp{size: fi.Size(), modTime: fi.ModTime()}
		}
		if err := parseTable(data, func(key string) {
			s.entries++
			t.add(s, key)
		}); err != nil {
			return nil, fmt.Errorf("recipient table %s:%w", path, err)
		}
	}
	return s, nil
}

func (t *Table) add(s *snapshot, key string) {
	key = strings.ToLower(key)
	at := strings.LastIndexByte(key, '@')
	switch {
	case at == 0:
		if d, ok := normDomain(key[1:]); ok {
			s.catchAll[d] = true
		}
	case at > 0:
		if d, ok := normDomain(key[at+1:]); ok {
			s.addresses[key[:at]+"@"+d] = true
		}
	default:
		s.locals[key] = true
	}
}

// ParseLine returns the key of one table line: its first field, with an
// aliases(5) colon removed. ok is false for blank, comment and continuation
// lines. An error describes a line that cannot be a table entry.
func ParseLine(line string) (key string, ok bool, err error) {
	if strings.IndexByte(line, 0) >= 0 {
		return "", false, errors.New("NUL byte in line")
	}
	if line == "" || line[0] == ' ' || line[0] == '\t' {
		return "", false, nil
	}
	line = strings.TrimRight(line, "\r")
	if strings.HasPrefix(strings.TrimSpace(line), "#") || strings.TrimSpace(line) == "" {
		return "", false, nil
	}
	fields := strings.Fields(line)
	key = fields[0]
	if i := strings.IndexByte(key, ':'); i >= 0 {
		// aliases(5): "name: value" or "name:value".
		key = key[:i]
	}
	key = strings.Trim(key, "<>")
	if key == "" {
		return "", false, fmt.Errorf("empty key in %q", clip(line))
	}
	if strings.Count(key, "@") > 1 || strings.ContainsAny(key, "\"\\,;()[]") {
		return "", false, fmt.Errorf("unsupported key %q (quoted or odd addresses are not supported)", clip(key))
	}
	return key, true, nil
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// parseTable calls add for the key of every entry line.
func parseTable(data []byte, add func(string)) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	for n := 1; sc.Scan(); n++ {
		key, ok, err := ParseLine(sc.Text())
		if err != nil {
			return fmt.Errorf("%d: %w", n, err)
		}
		if ok {
			add(key)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf(" %w (lines are limited to %d bytes)", err, maxLine)
	}
	return nil
}

// normDomain lower-cases a domain and drops one trailing dot.
func normDomain(d string) (string, bool) {
	d = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(d)), ".")
	if d == "" || len(d) > 253 || strings.ContainsAny(d, " \t@\"\\<>[]") {
		return "", false
	}
	return d, true
}

// Check says whether rcpt (as in the policy request's recipient attribute)
// exists.
func (t *Table) Check(rcpt string) Verdict {
	s := t.cur.Load()
	rcpt = strings.Trim(rcpt, "<>")
	at := strings.LastIndexByte(rcpt, '@')
	if at <= 0 || at == len(rcpt)-1 || strings.ContainsAny(rcpt, "\"\\ ") {
		return NotProtected
	}
	domain, ok := normDomain(rcpt[at+1:])
	if !ok || !s.domains[domain] {
		return NotProtected
	}
	if s.catchAll[domain] {
		return Known
	}
	local := strings.ToLower(rcpt[:at])
	if s.addresses[local+"@"+domain] || s.locals[local] {
		return Known
	}
	if t.delims != "" {
		if i := strings.IndexAny(local, t.delims); i > 0 {
			base := local[:i]
			if s.addresses[base+"@"+domain] || s.locals[base] {
				return Known
			}
		}
	}
	return Unknown
}

// Stats describes the loaded tables.
type Stats struct {
	Domains      int       `json:"domains"`
	Entries      int       `json:"entries"`
	CatchAlls    int       `json:"catch_alls"`
	LastLoad     time.Time `json:"last_load"`
	Reloads      uint64    `json:"reloads"`
	ReloadErrors uint64    `json:"reload_errors"`
}

// Stats returns a snapshot.
func (t *Table) Stats() Stats {
	s := t.cur.Load()
	return Stats{Domains: len(s.domains), Entries: s.entries, CatchAlls: len(s.catchAll), LastLoad: s.loaded,
		Reloads: t.reloads.Load(), ReloadErrors: t.reloadErrors.Load()}
}
