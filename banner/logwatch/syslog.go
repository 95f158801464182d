package logwatch

import (
	"bytes"
	"strings"
	"time"
)

// syslogLine is a log line split at its syslog structure:
// "TIMESTAMP HOST TAG[PID]: MESSAGE".
type syslogLine struct {
	ts   []byte // timestamp text
	prog []byte // TAG without "[PID]", e.g. "postfix/submission/smtpd"
	msg  []byte // everything after "TAG[PID]: "
}

// parseSyslog splits line into timestamp, program and message. It accepts
// the classic BSD format ("Nov  4 09:11:01", also with an unpadded day and
// with a fraction of a second as journalctl's short-precise writes it) and
// ISO 8601 timestamps (RFC 3339 as written by rsyslog's high-precision
// template, and journalctl's short-iso / short-iso-precise), optionally
// after a "<PRI>", and RFC 5424 lines. The split is anchored at the start
// of the line: nothing in the message can move it.
func parseSyslog(line []byte) (syslogLine, bool) {
	var s syslogLine
	if len(line) > 0 && line[0] == '<' {
		// "<PRI>": RFC 5424 ("<22>1 TIMESTAMP HOST APP PROCID MSGID SD
		// MSG", rsyslog's RSYSLOG_SyslogProtocol23Format) or a classic
		// line with its priority kept (RFC 3164 as sent on the wire).
		j := 1
		for j < len(line) && j <= 4 && isDigit(line[j]) {
			j++
		}
		if j == 1 || j >= len(line) || line[j] != '>' {
			return s, false
		}
		rest := line[j+1:]
		if len(rest) > 2 && rest[0] == '1' && rest[1] == ' ' {
			return parse5424(rest[2:])
		}
		if len(rest) == 0 || rest[0] == '<' {
			return s, false
		}
		line = rest
	}
	n := len(line)
	if n < 16 {
		return s, false
	}
	i := 0
	if isDigit(line[0]) { // ISO 8601: one token
		for i < n && line[i] != ' ' {
			i++
		}
	} else {
		// "Mmm", spaces, 1-2 digit day, space, "HH:MM:SS"
		if !isLetter(line[0]) || !isLetter(line[1]) || !isLetter(line[2]) || line[3] != ' ' {
			return s, false
		}
		i = 4
		if line[i] == ' ' {
			i++
		}
		d := 0
		for i < n && isDigit(line[i]) && d < 2 {
			i++
			d++
		}
		if d == 0 || i >= n || line[i] != ' ' {
			return s, false
		}
		i++
		if i+8 > n || line[i+2] != ':' || line[i+5] != ':' {
			return s, false
		}
		i += 8
		// journalctl -o short-precise: "Nov 24 10:00:01.123456"
		if i+1 < n && line[i] == '.' && isDigit(line[i+1]) {
			i++
			for i < n && isDigit(line[i]) {
				i++
			}
		}
	}
	if i >= n || line[i] != ' ' {
		return s, false
	}
	s.ts = line[:i]
	i++
	// host
	h := i
	for i < n && line[i] != ' ' {
		i++
	}
	if i == h || i >= n {
		return s, false
	}
	i++
	// tag: up to the first space; must end in ':'
	t := i
	for i < n && line[i] != ' ' {
		i++
	}
	if i >= n || i-t < 2 || line[i-1] != ':' {
		return s, false
	}
	tag := line[t : i-1]
	if tag[len(tag)-1] == ']' {
		b := bytes.LastIndexByte(tag, '[')
		if b <= 0 {
			return s, false
		}
		for _, c := range tag[b+1 : len(tag)-1] {
			if !isDigit(c) {
				return s, false
			}
		}
		tag = tag[:b]
	}
	s.prog = tag
	s.msg = line[i+1:]
	return s, true
}

// parse5424 reads what follows "<PRI>1 " in an RFC 5424 line: TIMESTAMP
// HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]. The timestamp
// may be "-" (none: the line's time is then bad); APP-NAME, Postfix's
// syslog tag without "[pid]", must be given.
func parse5424(b []byte) (syslogLine, bool) {
	var s syslogLine
	var f [5][]byte
	for k := range f {
		i := bytes.IndexByte(b, ' ')
		if i <= 0 {
			return s, false
		}
		f[k], b = b[:i], b[i+1:]
	}
	if len(b) == 0 || string(f[2]) == "-" {
		return s, false
	}
	// STRUCTURED-DATA: "-", or elements "[id k="v" ...]" in a row, where a
	// quoted value may hold an escaped quote, backslash or "]".
	i := 0
	if b[0] == '-' {
		i = 1
	} else {
		for i < len(b) && b[i] == '[' {
			quoted, closed := false, false
			for i++; i < len(b) && !closed; i++ {
				switch c := b[i]; {
				case quoted && c == '\\':
					i++ // skip the escaped byte, if there is one
				case c == '"':
					quoted = !quoted
				case c == ']' && !quoted:
					closed = true
				}
			}
			if !closed {
				return s, false // element not closed before the end of the line
			}
		}
		if i == 0 {
			return s, false
		}
	}
	switch {
	case i == len(b):
		b = nil
	case b[i] == ' ':
		b = bytes.TrimPrefix(b[i+1:], []byte("\xef\xbb\xbf")) // MSG may start with a BOM
	default:
		return s, false
	}
	if string(f[0]) != "-" {
		s.ts = f[0]
	}
	s.prog, s.msg = f[2], b
	return s, true
}

// daemon returns the last path component of a syslog program name:
// "postfix-in/submission/smtpd" -> "smtpd".
func daemon(prog []byte) []byte {
	if j := bytes.LastIndexByte(prog, '/'); j >= 0 {
		return prog[j+1:]
	}
	return prog
}

// service returns the service part of a Postfix syslog program name: what
// lies between the syslog_name's first component ("postfix", or
// "postfix-INSTANCE" for a multi-instance setup) and the daemon name. It is
// the master.cf service name when master.cf sets
// "-o syslog_name=postfix/$service_name" (Debian's and Postfix's stock
// submission, submissions and smtps entries do):
// "postfix/submission/smtpd" -> "submission", "postfix-out/smtps/smtpd" ->
// "smtps". "postfix/smtpd" and "postfix-in/postscreen" have none.
func service(prog []byte) ([]byte, bool) {
	i := bytes.IndexByte(prog, '/')
	j := bytes.LastIndexByte(prog, '/')
	if i < 0 || j <= i+1 {
		return nil, false
	}
	if first := prog[:i]; string(first) != "postfix" && !strings.HasPrefix(string(first), "postfix-") {
		return nil, false
	}
	return prog[i+1 : j], true
}

var months = [...]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}

// isoLayouts are tried in order for timestamps starting with a digit.
var isoLayouts = [...]string{
	time.RFC3339Nano,                     // rsyslog high precision, RFC 5424
	"2006-01-02T15:04:05.999999999Z0700", // journalctl -o short-iso(-precise)
	"2006-01-02 15:04:05",                // unusual, but cheap to try
}

// parseTimestamp parses a syslog timestamp. Classic timestamps carry no year
// and no zone: they are taken in loc, in now's year, or in the year before
// if that would put them more than a day after now.
func parseTimestamp(ts []byte, now time.Time, loc *time.Location) (time.Time, bool) {
	if len(ts) == 0 {
		return time.Time{}, false
	}
	if isDigit(ts[0]) {
		s := string(ts)
		for _, l := range isoLayouts {
			if t, err := time.ParseInLocation(l, s, loc); err == nil {
				return t, true
			}
		}
		return time.Time{}, false
	}
	if len(ts) < 14 {
		return time.Time{}, false
	}
	mon := -1
	for k, m := range months {
		if ts[0] == m[0] && ts[1] == m[1] && ts[2] == m[2] {
			mon = k
			break
		}
	}
	if mon < 0 {
		return time.Time{}, false
	}
	i := 4
	if ts[i] == ' ' {
		i++
	}
	day := 0
	for i < len(ts) && isDigit(ts[i]) {
		day = day*10 + int(ts[i]-'0')
		i++
	}
	if day < 1 || day > 31 || i+9 > len(ts) {
		return time.Time{}, false
	}
	c := ts[i+1:]
	hh, ok1 := two(c[0], c[1])
	mm, ok2 := two(c[3], c[4])
	ss, ok3 := two(c[6], c[7])
	if !ok1 || !ok2 || !ok3 || hh > 23 || mm > 59 || ss > 60 {
		return time.Time{}, false
	}
	// An optional fraction, as journalctl -o short-precise writes it.
	ns := 0
	if frac := c[8:]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		scale := 100_000_000
		for _, d := range frac[1:] {
			if !isDigit(d) {
				return time.Time{}, false
			}
			ns += int(d-'0') * scale
			scale /= 10
		}
	}
	nl := now.In(loc)
	t := time.Date(nl.Year(), time.Month(mon+1), day, hh, mm, ss, ns, loc)
	if t.Sub(now) > 24*time.Hour {
		t = time.Date(nl.Year()-1, time.Month(mon+1), day, hh, mm, ss, ns, loc)
	}
	return t, true
}

func two(a, b byte) (int, bool) {
	if !isDigit(a) || !isDigit(b) {
		return 0, false
	}
	return int(a-'0')*10 + int(b-'0'), true
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }
