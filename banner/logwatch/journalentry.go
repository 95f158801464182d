package logwatch

import (
	"bytes"
	"errors"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// journalEntry is the part of one `journalctl --output=json` entry that
// banner reads. Its slices point into the line or into buf and are valid
// until the next parse into the same journalEntry.
type journalEntry struct {
	Cursor     []byte
	Identifier []byte
	Message    []byte
	PID        int
	Time       time.Time // __REALTIME_TIMESTAMP; zero if missing
	HasMessage bool      // MESSAGE was present and not null

	buf []byte // decoded strings with escapes
}

var errJournalJSON = errors.New("not a journal JSON entry")

// parseJournalEntry parses one line of `journalctl --output=json` into e.
// It handles what journalctl(1) documents: every value a string; a value
// that is not valid UTF-8 or holds control characters written as an array
// of byte values; a field too long written as null (without --all); a
// field repeated in one entry written as an array of values (the first is
// taken). Unknown fields are skipped. Any input gives an error or an
// entry, never a panic.
func parseJournalEntry(line []byte, e *journalEntry) error {
	*e = journalEntry{buf: e.buf[:0]}
	p := jsonParser{b: line, e: e}
	p.ws()
	if !p.eat('{') {
		return errJournalJSON
	}
	p.ws()
	if p.eat('}') {
		return nil
	}
	var pid, syslogPID int
	for {
		p.ws()
		key, ok := p.str()
		if !ok {
			return errJournalJSON
		}
		p.ws()
		if !p.eat(':') {
			return errJournalJSON
		}
		p.ws()
		var val []byte
		var present bool
		switch string(key) {
		case "__CURSOR", "SYSLOG_IDENTIFIER", "MESSAGE", "_PID", "SYSLOG_PID", "__REALTIME_TIMESTAMP":
			val, present, ok = p.value()
		default:
			ok = p.skip(0)
		}
		if !ok {
			return errJournalJSON
		}
		if present {
			switch string(key) {
			case "__CURSOR":
				e.Cursor = val
			case "SYSLOG_IDENTIFIER":
				e.Identifier = val
			case "MESSAGE":
				e.Message, e.HasMessage = val, true
			case "_PID":
				pid = atoiPos(val)
			case "SYSLOG_PID":
				syslogPID = atoiPos(val)
			case "__REALTIME_TIMESTAMP":
				if us, err := strconv.ParseInt(string(val), 10, 64); err == nil && us > 0 {
					e.Time = time.UnixMicro(us)
				}
			}
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat('}') {
			break
		}
		return errJournalJSON
	}
	p.ws()
	if p.i != len(p.b) {
		return errJournalJSON
	}
	e.PID = pid
	if e.PID == 0 {
		e.PID = syslogPID
	}
	return nil
}

// atoiPos parses a positive decimal int, 0 if it is none.
func atoiPos(b []byte) int {
	n, err := strconv.Atoi(string(b))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

type jsonParser struct {
	b []byte
	i int
	e *journalEntry
}

func (p *jsonParser) ws() {
	for p.i < len(p.b) && (p.b[p.i] == ' ' || p.b[p.i] == '\t' || p.b[p.i] == '\n' || p.b[p.i] == '\r') {
		p.i++
	}
}

func (p *jsonParser) eat(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// value reads the value of a field banner uses: a string, an array of
// byte values, null (present false), or an array of such values (the
// first string or byte array is taken).
func (p *jsonParser) value() (val []byte, present, ok bool) {
	if p.i >= len(p.b) {
		return nil, false, false
	}
	switch p.b[p.i] {
	case '"':
		s, ok := p.str()
		return s, ok, ok
	case 'n':
		return nil, false, p.lit("null")
	case '[':
		return p.array()
	}
	return nil, false, false
}

// array reads [n, n, ...] (bytes) or [v, v, ...] (a repeated field).
func (p *jsonParser) array() (val []byte, present, ok bool) {
	p.i++ // '['
	p.ws()
	if p.eat(']') {
		return []byte{}, true, true
	}
	if p.i < len(p.b) && (p.b[p.i] >= '0' && p.b[p.i] <= '9') {
		start := len(p.e.buf)
		for {
			p.ws()
			n, ok := p.byteNum()
			if !ok {
				return nil, false, false
			}
			p.e.buf = append(p.e.buf, n)
			p.ws()
			if p.eat(',') {
				continue
			}
			if p.eat(']') {
				return p.e.buf[start:len(p.e.buf):len(p.e.buf)], true, true
			}
			return nil, false, false
		}
	}
	// A repeated field: the first value that is present.
	for {
		p.ws()
		v, pr, ok := p.value()
		if !ok {
			return nil, false, false
		}
		if pr && !present {
			val, present = v, true
		}
		p.ws()
		if p.eat(',') {
			continue
		}
		if p.eat(']') {
			return val, present, true
		}
		return nil, false, false
	}
}

func (p *jsonParser) byteNum() (byte, bool) {
	n, digits := 0, 0
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' && digits < 4 {
		n = n*10 + int(p.b[p.i]-'0')
		p.i++
		digits++
	}
	if digits == 0 || n > 255 {
		return 0, false
	}
	return byte(n), true
}

func (p *jsonParser) lit(s string) bool {
	if bytes.HasPrefix(p.b[p.i:], []byte(s)) {
		p.i += len(s)
		return true
	}
	return false
}

// str reads a JSON string; without escapes it returns a slice of the
// line, otherwise the decoded text in the entry's buffer.
func (p *jsonParser) str() ([]byte, bool) {
	if !p.eat('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		switch c := p.b[p.i]; {
		case c == '"':
			s := p.b[start:p.i:p.i]
			p.i++
			return s, true
		case c == '\\':
			return p.escaped(start)
		case c < 0x20:
			return nil, false
		default:
			p.i++
		}
	}
	return nil, false
}

// escaped decodes the rest of a string that has an escape at p.i.
func (p *jsonParser) escaped(start int) ([]byte, bool) {
	bs := len(p.e.buf)
	p.e.buf = append(p.e.buf, p.b[start:p.i]...)
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return p.e.buf[bs:len(p.e.buf):len(p.e.buf)], true
		case c < 0x20:
			return nil, false
		case c != '\\':
			p.e.buf = append(p.e.buf, c)
			p.i++
			continue
		}
		if p.i+1 >= len(p.b) {
			return nil, false
		}
		esc := p.b[p.i+1]
		p.i += 2
		switch esc {
		case '"', '\\', '/':
			p.e.buf = append(p.e.buf, esc)
		case 'b':
			p.e.buf = append(p.e.buf, '\b')
		case 'f':
			p.e.buf = append(p.e.buf, '\f')
		case 'n':
			p.e.buf = append(p.e.buf, '\n')
		case 'r':
			p.e.buf = append(p.e.buf, '\r')
		case 't':
			p.e.buf = append(p.e.buf, '\t')
		case 'u':
			r, ok := p.hex4()
			if !ok {
				return nil, false
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
					save := p.i
					p.i += 2
					if r2, ok = p.hex4(); !ok {
						return nil, false
					}
					if utf16.DecodeRune(r, r2) == utf8.RuneError {
						p.i, r2 = save, -1
					}
				}
				if r2 < 0 {
					r = utf8.RuneError
				} else {
					r = utf16.DecodeRune(r, r2)
				}
			}
			p.e.buf = utf8.AppendRune(p.e.buf, r)
		default:
			return nil, false
		}
	}
	return nil, false
}

func (p *jsonParser) hex4() (rune, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c|0x20 >= 'a' && c|0x20 <= 'f':
			r = r<<4 | rune(c|0x20-'a'+10)
		default:
			return 0, false
		}
	}
	p.i += 4
	return r, true
}

// maxJSONDepth bounds the nesting skip follows: journalctl writes none
// deeper than 2.
const maxJSONDepth = 16

// skip passes over one value of a field banner does not use.
func (p *jsonParser) skip(depth int) bool {
	if p.i >= len(p.b) || depth > maxJSONDepth {
		return false
	}
	switch c := p.b[p.i]; {
	case c == '"':
		// Scan without decoding.
		p.i++
		for p.i < len(p.b) {
			switch p.b[p.i] {
			case '"':
				p.i++
				return true
			case '\\':
				p.i += 2
			default:
				p.i++
			}
		}
		return false
	case c == '[':
		p.i++
		p.ws()
		if p.eat(']') {
			return true
		}
		for {
			p.ws()
			if !p.skip(depth + 1) {
				return false
			}
			p.ws()
			if p.eat(',') {
				continue
			}
			return p.eat(']')
		}
	case c == '{':
		p.i++
		p.ws()
		if p.eat('}') {
			return true
		}
		for {
			p.ws()
			if !p.skip(depth+1) || p.i >= len(p.b) || p.b[p.i-1] != '"' {
				return false // a key is a string
			}
			p.ws()
			if !p.eat(':') {
				return false
			}
			p.ws()
			if !p.skip(depth + 1) {
				return false
			}
			p.ws()
			if p.eat(',') {
				continue
			}
			return p.eat('}')
		}
	case c == 'n':
		return p.lit("null")
	case c == 't':
		return p.lit("true")
	case c == 'f':
		return p.lit("false")
	case c == '-' || c >= '0' && c <= '9':
		p.i++
		for p.i < len(p.b) && (p.b[p.i] >= '0' && p.b[p.i] <= '9' || p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E' || p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		return true
	}
	return false
}

// isPostfixIdentifier reports whether a syslog identifier is Postfix's:
// "postfix/SERVICE" or a multi-instance "postfix-NAME/SERVICE" (and
// service names with their own prefix, "postfix/submission/smtpd").
func isPostfixIdentifier(id []byte) bool {
	if bytes.HasPrefix(id, []byte("postfix/")) {
		return len(id) > len("postfix/")
	}
	if rest, ok := bytes.CutPrefix(id, []byte("postfix-")); ok {
		i := bytes.IndexByte(rest, '/')
		return i > 0 && i < len(rest)-1
	}
	return false
}
