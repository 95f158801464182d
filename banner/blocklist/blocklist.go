// Package blocklist reads lists of addresses and prefixes to ban in bulk:
// the files of `banner ban -file` and of [[feeds]], in the plain format
// (one address or CIDR per line, # comments) and in the text format of
// Spamhaus DROP and EDROP ("1.10.16.0/20 ; SBL256894", ; comments).
package blocklist

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"

	"github.com/banner-mta/banner/banner"
)

// MaxEntries bounds a list: more lines than this are an error, not a
// memory exhaustion.
const MaxEntries = 2_000_000

// maxLine bounds one line; longer ones are an error.
const maxLine = 4096

// LineError is a line that is no address or prefix.
type LineError struct {
	Line int
	Err  error
}

func (e LineError) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }

// List is what Parse read.
type List struct {
	// Prefixes in file order, without duplicates.
	Prefixes []netip.Prefix
	// Bad are the lines that did not parse (each at most once per line).
	Bad []LineError
}

// ErrTooLong is returned for a list of more than MaxEntries entries or a
// line longer than 4096 bytes.
var ErrTooLong = errors.New("list too long")

// Parse reads a list. A line holds an address or CIDR prefix (see
// banner.ParsePrefix: host bits set is an error), optionally followed by a
// comment after '#' or ';' (Spamhaus writes the SBL reference there) or by
// whitespace and anything else; lines that are empty or comments only are
// skipped; CRLF line ends are accepted. Bad lines are reported in List.Bad
// and do not stop the reading; only a read error or ErrTooLong does.
func Parse(r io.Reader) (List, error) {
	var l List
	seen := map[netip.Prefix]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, maxLine), maxLine)
	n := 0
	for sc.Scan() {
		n++
		p, ok, err := parseLine(sc.Bytes())
		if err != nil {
			l.Bad = append(l.Bad, LineError{Line: n, Err: err})
			continue
		}
		if !ok || seen[p] {
			continue
		}
		if len(l.Prefixes) >= MaxEntries {
			return l, fmt.Errorf("more than %d entries: %w", MaxEntries, ErrTooLong)
		}
		seen[p] = true
		l.Prefixes = append(l.Prefixes, p)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return l, fmt.Errorf("line %d longer than %d bytes: %w", n+1, maxLine, ErrTooLong)
		}
		return l, err
	}
	return l, nil
}

// parseLine returns the prefix of one line, ok false for a line with none.
func parseLine(b []byte) (netip.Prefix, bool, error) {
	if i := bytes.IndexAny(b, "#;"); i >= 0 {
		b = b[:i]
	}
	b = bytes.TrimSpace(b)
	if i := bytes.IndexAny(b, " \t"); i >= 0 {
		b = b[:i] // "PREFIX  anything": the first field
	}
	if len(b) == 0 {
		return netip.Prefix{}, false, nil
	}
	p, err := banner.ParsePrefix(string(b))
	if err != nil {
		return netip.Prefix{}, false, err
	}
	return p, true, nil
}
