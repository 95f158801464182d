package logwatch

import (
	"bytes"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/banner-mta/banner/banner"
)

// Built-in pattern names.
const (
	PatternRBL              = "rbl"
	PatternUnknownUser      = "unknown_user"
	PatternPostscreen       = "postscreen"
	PatternTooManyErrors    = "too_many_errors"
	PatternPostscreenRank   = "postscreen_rank"
	PatternPostscreenHangup = "postscreen_hangup"
	PatternSASL             = "sasl_auth"
	PatternSASLDisconnect   = "sasl_disconnect"
	// PatternOwn is the Match.Pattern of a line recognised as a reject
	// issued by banner's own policy service (see OwnRejectMarker).
	PatternOwn = "own"
)

// Builtin describes a built-in pattern.
type Builtin struct {
	Name    string
	Kind    banner.Kind
	Weight  float64 // default weight
	Default bool    // enabled by DefaultConfig
	Matches string  // what it matches, for documentation and `banner test-log`
}

// Builtins lists the built-in patterns in their fixed order.
var Builtins = []Builtin{
	{PatternRBL, banner.KindRBLReject, 1, true,
		"smtpd reject_rbl_client: `reject: STAGE from NAME[IP]: 4xx/5xx X.Y.Z Service unavailable; Client host [IP] blocked using ZONE` (the two IPs must be equal; key = zone)"},
	{PatternUnknownUser, banner.KindUnknownUser, 1, true,
		"smtpd RCPT/VRFY `4xx/5xx <addr>: Recipient address rejected: User unknown[ in local recipient|virtual alias|virtual mailbox|relay recipient table]`, and 5xx `undeliverable address:` (reject_unverified_recipient); key = lower-cased address"},
	{PatternPostscreen, banner.KindPostscreen, 1, true,
		"postscreen DNSBL reject `reject: RCPT from [IP]:PORT: 5xx X.Y.Z Service unavailable; client [IP] blocked using ZONE` (key = zone) and `PREGREET N after T from [IP]:PORT` (key = pregreet)"},
	{PatternTooManyErrors, banner.KindTooManyErrors, 1, true,
		"smtpd `[QUEUEID|NOQUEUE: ]too many errors after STAGE from NAME[IP]`"},
	{PatternPostscreenRank, banner.KindPostscreen, 1, false,
		"postscreen `DNSBL rank N for [IP]:PORT` (logged when the score reaches postscreen_dnsbl_threshold; enable with postscreen_dnsbl_action = drop, key = dnsbl_rank)"},
	{PatternPostscreenHangup, banner.KindPostscreen, 1, false,
		"postscreen `HANGUP after T from [IP]:PORT in tests` (fail2ban's ddos mode; hits legitimate clients too, key = hangup)"},
	{PatternSASL, banner.KindSASL, 1, false,
		"smtpd `warning: NAME[IP][:PORT]: SASL MECH authentication failed:[ REASON]` where REASON means a wrong password (none, `authentication failure`, `Password:`, `(reason unavailable)`, a base64 challenge), not a broken auth server; counted on every service, ignore_services or not"},
	{PatternSASLDisconnect, banner.KindSASL, 1, false,
		"smtpd `disconnect from NAME[IP] ... auth=0/N ...` (N >= 1: a session whose every AUTH failed; one event per session, for slow guessing that drops after one try; with sasl also on, a session counts once more)"},
}

const (
	bRBL = iota
	bUnknownUser
	bPostscreen
	bTooManyErrors
	bRank
	bHangup
	bSASL
	bSASLDisconnect
	nBuiltins
)

// DefaultBuiltins returns the names of the built-in patterns enabled by default.
func DefaultBuiltins() []string {
	var out []string
	for _, b := range Builtins {
		if b.Default {
			out = append(out, b.Name)
		}
	}
	return out
}

// DefaultIgnoreServices are the Postfix services whose lines yield no events
// by default: submission (port 587) and submissions/smtps (port 465), where
// the clients are the site's own users. Banner's firewall closes port 25
// only, so a reject there must not ban a user's address from port 25.
var DefaultIgnoreServices = []string{"submission", "submissions", "smtps"}

// Pattern is an admin-written pattern: a Go regular expression (RE2 syntax)
// containing the tag <HOST> exactly once. It is anchored: it must match
// from the first byte of the message (the text after the syslog prefix
// "TIMESTAMP HOST TAG[PID]: "; the whole line when it has no syslog
// prefix), as if it started with "^". A pattern that could still reach
// text a client controls (HELO name, sender, recipient) is reported by
// PatternRisk.
type Pattern struct {
	Name  string
	Regex string
	// Weight of each match; 0 means 1.
	Weight float64
	// Kind is reported in Match.Kind; "" means "pattern".
	Kind string
}

// MatcherConfig configures a Matcher.
type MatcherConfig struct {
	// Builtin names the enabled built-in patterns (see Builtins).
	Builtin []string
	// BuiltinWeights overrides the default weight of built-in patterns by name.
	BuiltinWeights map[string]float64
	// Patterns are the admin's own patterns.
	Patterns []Pattern
	// IgnoreServices names Postfix services (master.cf service names as
	// they appear in the syslog tag: "submission" in
	// "postfix/submission/smtpd" or "postfix-out/submission/smtpd": the
	// part between the first and the last '/' of a tag whose first part is
	// "postfix" or "postfix-INSTANCE") whose lines yield no events: a line from one of them that a
	// pattern (built-in or admin) matches is reported as IgnoredService.
	// nil means none; DefaultMatcherConfig sets DefaultIgnoreServices.
	IgnoreServices []string
	// OwnRejectMarker: a reject whose reply is
	// "<rcpt>: Recipient address rejected: " followed by this text is banner's
	// own policy reject; it is counted but yields no event. "" disables.
	OwnRejectMarker string
	// Location for classic syslog timestamps, which have no zone; nil = time.Local.
	Location *time.Location
	// Now returns the current time (year inference, unparseable timestamps);
	// nil = time.Now.
	Now func() time.Time
}

// DefaultMatcherConfig enables the default built-in patterns.
func DefaultMatcherConfig() MatcherConfig {
	return MatcherConfig{Builtin: DefaultBuiltins(), IgnoreServices: slices.Clone(DefaultIgnoreServices)}
}

// Validate checks the configuration; errors name the offending field.
func (c MatcherConfig) Validate() error {
	_, err := NewMatcher(c)
	return err
}

// Match is one log line that a pattern matched.
type Match struct {
	Addr    netip.Addr
	Pattern string // pattern name, e.g. "rbl", or an admin pattern's name
	Kind    banner.Kind
	Weight  float64
	Time    time.Time
	// Key de-duplicates echoes of policy-service events: the DNSBL zone for
	// rbl and postscreen DNSBL rejects, the lower-cased recipient for
	// unknown_user.
	Key    string
	Reason string
	// BadTime is set when the line's timestamp could not be parsed; Time is
	// then the time the line was read.
	BadTime bool
	Line    string
	// Origin says where the line was read: "FILE:OFFSET" (the offset of
	// the line's start), the journal cursor, or "line N" for Analyze.
	Origin string
}

// Outcome classifies a line.
type Outcome uint8

// Outcomes of Matcher.MatchLine.
const (
	NoMatch Outcome = iota
	Matched
	// OwnReject: a reject issued by banner's policy service; not an event.
	OwnReject
	// RBLError: an RBL reject whose reason is "Error: ..." (Spamhaus's
	// answer to queries through public resolvers, or over quota: every
	// client is "listed"). Postfix is misconfigured; this is not an event.
	RBLError
	// IgnoredService: a pattern matched, but the line comes from a service
	// in MatcherConfig.IgnoreServices (submission, smtps: the site's own
	// users); not an event.
	IgnoredService
)

type adminPattern struct {
	name   string
	kind   banner.Kind
	weight float64
	re     *regexp.Regexp
	host   int // submatch index of <HOST>
}

// Matcher classifies log lines. It is safe for concurrent use.
type Matcher struct {
	enabled [nBuiltins]bool
	weight  [nBuiltins]float64
	admin   []adminPattern
	own     []byte
	ignore  []string // services whose matches are IgnoredService
	loc     *time.Location
	now     func() time.Time
	names   []string
}

// hostRE is what <HOST> expands to: an IPv4 or IPv6 literal, never a name.
const hostRE = `(?P<host>[0-9]{1,3}(?:\.[0-9]{1,3}){3}|[0-9A-Fa-f]{0,4}:(?:[0-9A-Fa-f:.]*[0-9A-Fa-f]|[0-9A-Fa-f:]*::))`

// NewMatcher compiles cfg.
func NewMatcher(cfg MatcherConfig) (*Matcher, error) {
	m := &Matcher{loc: cfg.Location, now: cfg.Now}
	if m.loc == nil {
		m.loc = time.Local
	}
	if m.now == nil {
		m.now = time.Now
	}
	for i, b := range Builtins {
		m.weight[i] = b.Weight
	}
	seen := map[string]bool{}
	for _, n := range cfg.Builtin {
		i := builtinIndex(n)
		if i < 0 {
			return nil, fmt.Errorf("builtin: unknown pattern %q (known: %s)", n, strings.Join(builtinNames(), ", "))
		}
		m.enabled[i] = true
		if !seen[n] {
			m.names = append(m.names, n)
		}
		seen[n] = true
	}
	for n, w := range cfg.BuiltinWeights {
		i := builtinIndex(n)
		if i < 0 {
			return nil, fmt.Errorf("builtin_weights: unknown pattern %q", n)
		}
		if w < 0 {
			return nil, fmt.Errorf("builtin_weights.%s: must be >= 0, got %v", n, w)
		}
		if w > 0 {
			m.weight[i] = w
		}
	}
	for i, p := range cfg.Patterns {
		f := fmt.Sprintf("pattern[%d]", i)
		if p.Name == "" {
			return nil, fmt.Errorf("%s.name: must not be empty", f)
		}
		f = fmt.Sprintf("pattern[%d] (%q)", i, p.Name)
		if builtinIndex(p.Name) >= 0 || p.Name == PatternOwn || seen[p.Name] {
			return nil, fmt.Errorf("%s.name: duplicate or reserved name", f)
		}
		seen[p.Name] = true
		if p.Weight < 0 {
			return nil, fmt.Errorf("%s.weight: must be >= 0, got %v", f, p.Weight)
		}
		if c := strings.Count(p.Regex, "<HOST>"); c != 1 {
			return nil, fmt.Errorf("%s.regex: must contain <HOST> exactly once, found %d", f, c)
		}
		// Anchored: a match starts at the message's first byte (see
		// Pattern), so text a client sends, which Postfix echoes later in
		// the line, can never be where a pattern starts to match.
		re, err := regexp.Compile(`^(?:` + strings.Replace(p.Regex, "<HOST>", hostRE, 1) + `)`)
		if err != nil {
			return nil, fmt.Errorf("%s.regex %q: %w", f, p.Regex, err)
		}
		ap := adminPattern{name: p.Name, kind: banner.Kind(p.Kind), weight: p.Weight, re: re, host: re.SubexpIndex("host")}
		if ap.kind == "" {
			ap.kind = banner.KindPattern
		}
		if ap.weight == 0 {
			ap.weight = 1
		}
		if hostGroups(re) != 1 {
			return nil, fmt.Errorf("%s.regex: the group name \"host\" is reserved for <HOST>", f)
		}
		m.admin = append(m.admin, ap)
		m.names = append(m.names, p.Name)
	}
	for i, s := range cfg.IgnoreServices {
		if s == "" || strings.ContainsFunc(s, unicode.IsSpace) || strings.Contains(s, "/") {
			hint := ""
			if _, svc, ok := strings.Cut(s, "/"); ok && strings.HasPrefix(s, "postfix") && svc != "" && !strings.Contains(svc, "/") {
				hint = fmt.Sprintf(" (for syslog_name=%s write %q)", s, svc)
			}
			return nil, fmt.Errorf("ignore_services: entry %d (%q): want a master.cf service name such as \"submission\", the middle of the syslog tag postfix/submission/smtpd%s", i, s, hint)
		}

		if !slices.Contains(m.ignore, s) {
			m.ignore = append(m.ignore, s)
		}
	}
	if cfg.OwnRejectMarker != "" {
		m.own = []byte(cfg.OwnRejectMarker)
	}
	return m, nil
}

// Names returns the enabled pattern names: built-ins in configuration order,
// then admin patterns.
func (m *Matcher) Names() []string { return append([]string(nil), m.names...) }

// Kind returns the kind reported by the named enabled pattern.
func (m *Matcher) Kind(name string) banner.Kind {
	if i := builtinIndex(name); i >= 0 {
		return Builtins[i].Kind
	}
	for _, a := range m.admin {
		if a.name == name {
			return a.kind
		}
	}
	return ""
}

func hostGroups(re *regexp.Regexp) int {
	n := 0
	for _, s := range re.SubexpNames() {
		if s == "host" {
			n++
		}
	}
	return n
}

func builtinIndex(name string) int {
	for i, b := range Builtins {
		if b.Name == name {
			return i
		}
	}
	return -1
}

func builtinNames() []string {
	var s []string
	for _, b := range Builtins {
		s = append(s, b.Name)
	}
	return s
}

// MatchLine classifies one log line (without its trailing newline). For
// Matched, OwnReject, RBLError and IgnoredService, the Match is filled in
// (Line included); for NoMatch it is the zero Match. Without admin patterns,
// MatchLine does not allocate for lines that match nothing.
func (m *Matcher) MatchLine(line []byte) (Match, Outcome) {
	r, out, _ := m.matchLine(line)
	return r, out
}

// matchLine is MatchLine that also reports whether the line has a syslog
// prefix parseSyslog reads, so that callers counting lines without one
// (Analyze, the watcher) need not parse the prefix again.
func (m *Matcher) matchLine(line []byte) (Match, Outcome, bool) {
	r, out, _, ok := m.matchSplit(line)
	return r, out, ok
}

// matchSplit is matchLine that also returns the line's syslog split (valid
// when ok).
func (m *Matcher) matchSplit(line []byte) (Match, Outcome, syslogLine, bool) {
	line = trimEOL(line)
	sl, ok := parseSyslog(line)
	r, out := m.classify(sl, ok, line)
	if out != NoMatch {
		m.finish(&r, sl.ts, line)
	}
	return r, out, sl, ok
}

// MatchRecord classifies one entry as MatchLine does: a raw line (Line
// set) with MatchLine, an entry split already (the journal's identifier,
// PID, time and message) without rebuilding a syslog line. For a split
// entry, Match.Line is "IDENTIFIER[PID]: MESSAGE" and a zero Time is a bad
// timestamp (Match.BadTime).
func (m *Matcher) MatchRecord(rec *Record) (Match, Outcome) {
	r, out, _ := m.matchRecord(rec)
	return r, out
}

// matchRecord is MatchRecord that also reports, as matchLine does, whether
// the entry has its syslog structure (a split entry always has).
func (m *Matcher) matchRecord(rec *Record) (Match, Outcome, bool) {
	if rec.Line != nil {
		return m.matchLine(rec.Line)
	}
	msg := trimEOL(rec.Message)
	r, out := m.classify(syslogLine{prog: rec.Identifier, msg: msg}, true, msg)
	if out != NoMatch {
		r.Time = rec.Time
		if r.Time.IsZero() {
			r.Time, r.BadTime = m.now(), true
		}
		pid := ""
		if rec.PID > 0 {
			pid = "[" + strconv.Itoa(rec.PID) + "]"
		}
		r.Line = string(rec.Identifier) + pid + ": " + string(msg)
	}
	return r, out, true
}

// classify applies the patterns to a line: built-in ones if it was split
// at its syslog structure (ok), admin ones to its message, or to the whole
// line if it has no syslog structure. The Match's Time and Line are left
// to the caller.
func (m *Matcher) classify(sl syslogLine, ok bool, line []byte) (Match, Outcome) {
	if ok {
		if r, out := m.builtin(sl); out != NoMatch {
			// SASL failures count on every service: submission is where
			// passwords are guessed.
			if out == Matched && r.Kind != banner.KindSASL && m.ignored(sl.prog) {
				out = IgnoredService
			}
			return r, out
		}
	}
	if len(m.admin) == 0 {
		return Match{}, NoMatch
	}
	text := line
	if ok {
		text = sl.msg
	}
	for i := range m.admin {
		a := &m.admin[i]
		sm := a.re.FindSubmatchIndex(text)
		if sm == nil || sm[2*a.host] < 0 {
			continue
		}
		addr, err := netip.ParseAddr(string(text[sm[2*a.host]:sm[2*a.host+1]]))
		if err != nil {
			continue
		}
		r := Match{Addr: addr.Unmap(), Pattern: a.name, Kind: a.kind, Weight: a.weight, Reason: "pattern " + a.name}
		if ok && m.ignored(sl.prog) {
			return r, IgnoredService
		}
		return r, Matched
	}
	return Match{}, NoMatch
}

// ignored reports whether prog, a syslog program name, belongs to a
// service in IgnoreServices.
func (m *Matcher) ignored(prog []byte) bool {
	if len(m.ignore) == 0 {
		return false
	}
	s, ok := service(prog)
	if !ok {
		return false
	}
	for _, ig := range m.ignore {
		if strings.EqualFold(string(s), ig) { // "Submission" is no typo worth banning users over
			return true
		}
	}
	return false
}

func (m *Matcher) finish(r *Match, ts, line []byte) {
	now := m.now()
	t, ok := parseTimestamp(ts, now, m.loc)
	if !ok {
		t, r.BadTime = now, true
	}
	r.Time = t
	r.Line = string(line)
}

func trimEOL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

var (
	sReject        = []byte("reject: ")
	sTooMany       = []byte("too many errors after ")
	sFrom          = []byte(" from ")
	sRBLText       = []byte("Service unavailable; Client host [")
	sPSText        = []byte("Service unavailable; client [")
	sBlocked       = []byte("] blocked using ")
	sRBLError      = []byte("; Error: ")
	sRcptRejected  = []byte(": Recipient address rejected: ")
	sUserUnknown   = []byte("User unknown")
	sUndeliverable = []byte("undeliverable address: ")
	sPregreet      = []byte("PREGREET ")
	sAfter         = []byte(" after ")
	sRank          = []byte("DNSBL rank ")
	sFor           = []byte(" for ")
	sHangup        = []byte("HANGUP after ")
	sInTests       = []byte(" in tests")
)

// builtin applies the built-in patterns to a parsed syslog line.
func (m *Matcher) builtin(sl syslogLine) (Match, Outcome) {
	switch d := daemon(sl.prog); string(d) {
	case "smtpd":
		return m.smtpd(sl.msg)
	case "postscreen":
		return m.postscreen(sl.msg)
	}
	return Match{}, NoMatch
}

// queueID strips a leading "QUEUEID: " or "NOQUEUE: ". A queue ID is
// "NOQUEUE", a short ID (upper-case hex) or a long ID (digits and letters
// without vowels); so "warning: " is not taken for one.
func queueID(msg []byte) ([]byte, bool) {
	i := 0
	hex, long := true, true
	for i < len(msg) && i < 32 && (isDigit(msg[i]) || isLetter(msg[i])) {
		c := msg[i]
		if !isDigit(c) && (c < 'A' || c > 'F') {
			hex = false
		}
		switch c | 0x20 {
		case 'a', 'e', 'i', 'o', 'u':
			long = false
		}
		i++
	}
	if i == 0 || i+1 >= len(msg) || msg[i] != ':' || msg[i+1] != ' ' {
		return msg, false
	}
	if !hex && !long && string(msg[:i]) != "NOQUEUE" {
		return msg, false
	}
	return msg[i+2:], true
}

func (m *Matcher) smtpd(msg []byte) (Match, Outcome) {
	if len(msg) < 20 {
		return Match{}, NoMatch
	}
	rest, _ := queueID(msg)
	switch {
	case bytes.HasPrefix(rest, sReject):
		return m.smtpdReject(rest[len(sReject):])
	case bytes.HasPrefix(msg, sWarning):
		return m.saslFailed(msg[len(sWarning):])
	case bytes.HasPrefix(msg, sDisconnect):
		return m.saslDisconnect(msg[len(sDisconnect):])
	case bytes.HasPrefix(rest, sTooMany):
		if !m.enabled[bTooManyErrors] {
			return Match{}, NoMatch
		}
		stage, rest, ok := stageFrom(rest[len(sTooMany):])
		if !ok {
			return Match{}, NoMatch
		}
		addr, rest, ok := client(rest)
		if !ok || len(bytes.TrimSpace(rest)) != 0 {
			return Match{}, NoMatch
		}
		return Match{Addr: addr, Pattern: PatternTooManyErrors, Kind: banner.KindTooManyErrors,
			Weight: m.weight[bTooManyErrors], Reason: "too many errors after " + string(stage)}, Matched
	}
	return Match{}, NoMatch
}

// rejectFrom parses what follows "reject: ": "STAGE from NAME[ADDR]: REPLY"
// (postscreen: "STAGE from [ADDR]:PORT: REPLY"), and returns the stage,
// the client address and the reply's code and text.
func rejectFrom(b []byte) (stage []byte, addr netip.Addr, code, text []byte, ok bool) {
	stage, b, ok = stageFrom(b)
	if !ok {
		return nil, netip.Addr{}, nil, nil, false
	}
	addr, b, ok = client(b)
	if !ok || len(b) < 2 || b[0] != ':' || b[1] != ' ' {
		return nil, netip.Addr{}, nil, nil, false
	}
	code, text, ok = reply(b[2:])
	return stage, addr, code, text, ok
}

// stageFrom parses "STAGE from " and returns STAGE and the rest.
func stageFrom(b []byte) (stage, rest []byte, ok bool) {
	i := 0
	for i < len(b) && i < 20 && (b[i] >= 'A' && b[i] <= 'Z' || b[i] == '-') {
		i++
	}
	if i == 0 || !bytes.HasPrefix(b[i:], sFrom) {
		return nil, nil, false
	}
	return b[:i], b[i+len(sFrom):], true
}

// client parses the client of a Postfix log line: "NAME[ADDR]" with an
// optional ":PORT", where NAME consists of hostname characters (possibly
// empty, as postscreen writes it) and ADDR of address characters. It returns
// the address and what follows. The name is the client's reverse name and
// therefore hostile, which is why its alphabet is restricted: a name
// containing '[' or ']' does not parse at all.
func client(b []byte) (netip.Addr, []byte, bool) {
	i := 0
	for i < len(b) && i < 256 && isHostChar(b[i]) {
		i++
	}
	if i >= len(b) || b[i] != '[' {
		return netip.Addr{}, nil, false
	}
	i++
	j := i
	for j < len(b) && j-i <= 45 && isAddrChar(b[j]) {
		j++
	}
	if j >= len(b) || b[j] != ']' || j == i {
		return netip.Addr{}, nil, false
	}
	addr, ok := parseAddr(b[i:j])
	if !ok {
		return netip.Addr{}, nil, false
	}
	j++
	if j < len(b) && b[j] == ':' && j+1 < len(b) && isDigit(b[j+1]) {
		j++
		for j < len(b) && isDigit(b[j]) {
			j++
		}
	}
	return addr, b[j:], true
}

func parseAddr(b []byte) (netip.Addr, bool) {
	if a, ok := parseIPv4(b); ok {
		return a, true
	}
	if bytes.IndexByte(b, ':') < 0 {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(string(b)) // allocates; IPv6 only
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func isHostChar(c byte) bool {
	return isLetter(c) || isDigit(c) || c == '.' || c == '-' || c == '_'
}

func isAddrChar(c byte) bool {
	return isDigit(c) || c == '.' || c == ':' || (c|0x20 >= 'a' && c|0x20 <= 'f')
}

// reply parses "CODE[ X.Y.Z] " of a 4xx/5xx reply and returns the text.
func reply(b []byte) (code, text []byte, ok bool) {
	if len(b) < 4 || (b[0] != '4' && b[0] != '5') || !isDigit(b[1]) || !isDigit(b[2]) || b[3] != ' ' {
		return nil, nil, false
	}
	code, b = b[:3], b[4:]
	// enhanced status code: D.D{1,3}.D{1,3} followed by a space
	if len(b) > 1 && isDigit(b[0]) && b[1] == '.' {
		i := 2
		for k := 0; k < 2; k++ {
			s := i
			for i < len(b) && isDigit(b[i]) && i-s < 3 {
				i++
			}
			if i == s {
				return code, b, true
			}
			if k == 0 {
				if i >= len(b) || b[i] != '.' {
					return code, b, true
				}
				i++
			}
		}
		if i < len(b) && b[i] == ' ' {
			b = b[i+1:]
		}
	}
	return code, b, true
}

// smtpdReject handles "STAGE from NAME[IP]: REPLY" after "reject: ".
func (m *Matcher) smtpdReject(b []byte) (Match, Outcome) {
	stage, addr, code, text, ok := rejectFrom(b)
	if !ok {
		return Match{}, NoMatch
	}
	if bytes.HasPrefix(text, sRBLText) {
		if !m.enabled[bRBL] {
			return Match{}, NoMatch
		}
		zone, after, ok := blocked(text[len(sRBLText):], addr)
		if !ok {
			return Match{}, NoMatch
		}
		r := Match{Addr: addr, Pattern: PatternRBL, Kind: banner.KindRBLReject, Weight: m.weight[bRBL], Key: zone,
			Reason: string(code) + " blocked using " + zone}
		if bytes.HasPrefix(after, sRBLError) {
			r.Reason += ": the list answered with an error code, not a listing"
			return r, RBLError
		}
		return r, Matched
	}
	// "<rcpt>: Recipient address rejected: TEXT"
	rcpt, rtext, ok := rcptRejected(text)
	if !ok {
		return Match{}, NoMatch
	}
	if m.own != nil && bytes.HasPrefix(rtext, m.own) {
		return Match{Addr: addr, Pattern: PatternOwn, Key: strings.ToLower(string(rcpt)),
			Reason: "banner policy reject"}, OwnReject
	}
	if !m.enabled[bUnknownUser] || (string(stage) != "RCPT" && string(stage) != "VRFY") {
		return Match{}, NoMatch
	}
	switch {
	case bytes.HasPrefix(rtext, sUserUnknown):
		if r := rtext[len(sUserUnknown):]; len(r) > 0 && r[0] != ' ' && r[0] != ';' {
			return Match{}, NoMatch
		}
	case bytes.HasPrefix(rtext, sUndeliverable) && code[0] == '5':
		// reject_unverified_recipient: the next hop said the user does not exist
	default:
		return Match{}, NoMatch
	}
	key := strings.ToLower(string(rcpt))
	return Match{Addr: addr, Pattern: PatternUnknownUser, Kind: banner.KindUnknownUser, Weight: m.weight[bUnknownUser],
		Key: key, Reason: string(code) + " user unknown <" + key + ">"}, Matched
}

// blocked parses "IP] blocked using ZONE" (after "... [") and checks that IP
// is the client address. It returns the zone and the text after it.
func blocked(b []byte, addr netip.Addr) (string, []byte, bool) {
	j := 0
	for j < len(b) && j <= 45 && isAddrChar(b[j]) {
		j++
	}
	a, ok := parseAddr(b[:j])
	if !ok || a != addr || !bytes.HasPrefix(b[j:], sBlocked) {
		return "", nil, false
	}
	b = b[j+len(sBlocked):]
	k := 0
	for k < len(b) && k < 256 && isHostChar(b[k]) {
		k++
	}
	if k == 0 || (k < len(b) && b[k] != ';' && b[k] != ' ' && b[k] != ',') {
		return "", nil, false
	}
	return strings.ToLower(string(b[:k])), b[k:], true
}

// rcptRejected parses "<ADDR>: Recipient address rejected: " (or, with the
// address missing, ": Recipient address rejected: ") and returns the address
// and the text after it. A quoted local part is skipped as a whole, so that
// an address like <"x>: Recipient address rejected: y"@d> cannot fake the
// structure.
func rcptRejected(b []byte) (rcpt, text []byte, ok bool) {
	if len(b) > 0 && b[0] == '<' {
		i := 1
		if i < len(b) && b[i] == '"' {
			i++
			for i < len(b) && b[i] != '"' {
				if b[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(b) {
				return nil, nil, false
			}
			i++
		}
		for i < len(b) && b[i] != '>' && b[i] != '"' && b[i] != '<' {
			i++
		}
		if i >= len(b) || b[i] != '>' {
			return nil, nil, false
		}
		rcpt, b = b[1:i], b[i+1:]
	}
	if !bytes.HasPrefix(b, sRcptRejected) {
		return nil, nil, false
	}
	return rcpt, b[len(sRcptRejected):], true
}

func (m *Matcher) postscreen(msg []byte) (Match, Outcome) {
	switch {
	case bytes.HasPrefix(msg, sPregreet):
		if !m.enabled[bPostscreen] {
			return Match{}, NoMatch
		}
		b := skipDigits(msg[len(sPregreet):])
		if !bytes.HasPrefix(b, sAfter) {
			return Match{}, NoMatch
		}
		b = b[len(sAfter):]
		i := 0
		for i < len(b) && (isDigit(b[i]) || b[i] == '.') {
			i++
		}
		if i == 0 || !bytes.HasPrefix(b[i:], sFrom) {
			return Match{}, NoMatch
		}
		addr, rest, ok := client(b[i+len(sFrom):])
		if !ok || (len(rest) > 0 && rest[0] != ':') {
			return Match{}, NoMatch
		}
		return Match{Addr: addr, Pattern: PatternPostscreen, Kind: banner.KindPostscreen, Weight: m.weight[bPostscreen],
			Key: "pregreet", Reason: "postscreen PREGREET"}, Matched
	case bytes.HasPrefix(msg, sRank):
		if !m.enabled[bRank] {
			return Match{}, NoMatch
		}
		b := msg[len(sRank):]
		n := skipDigits(b)
		if len(n) == len(b) || !bytes.HasPrefix(n, sFor) {
			return Match{}, NoMatch
		}
		rank := b[:len(b)-len(n)]
		addr, rest, ok := client(n[len(sFor):])
		if !ok || len(bytes.TrimSpace(rest)) != 0 {
			return Match{}, NoMatch
		}
		return Match{Addr: addr, Pattern: PatternPostscreenRank, Kind: banner.KindPostscreen, Weight: m.weight[bRank],
			Key: "dnsbl_rank", Reason: "postscreen DNSBL rank " + string(rank)}, Matched
	case bytes.HasPrefix(msg, sHangup):
		if !m.enabled[bHangup] {
			return Match{}, NoMatch
		}
		b := msg[len(sHangup):]
		i := 0
		for i < len(b) && (isDigit(b[i]) || b[i] == '.') {
			i++
		}
		if i == 0 || !bytes.HasPrefix(b[i:], sFrom) {
			return Match{}, NoMatch
		}
		addr, rest, ok := client(b[i+len(sFrom):])
		if !ok || !bytes.HasPrefix(rest, sInTests) {
			return Match{}, NoMatch
		}
		return Match{Addr: addr, Pattern: PatternPostscreenHangup, Kind: banner.KindPostscreen, Weight: m.weight[bHangup],
			Key: "hangup", Reason: "postscreen HANGUP in tests"}, Matched
	}
	rest, ok := queueID(msg)
	if !ok || !bytes.HasPrefix(rest, sReject) || !m.enabled[bPostscreen] {
		return Match{}, NoMatch
	}
	_, addr, code, text, ok := rejectFrom(rest[len(sReject):])
	if !ok || !bytes.HasPrefix(text, sPSText) {
		return Match{}, NoMatch
	}
	zone, _, ok := blocked(text[len(sPSText):], addr)
	if !ok {
		return Match{}, NoMatch
	}
	return Match{Addr: addr, Pattern: PatternPostscreen, Kind: banner.KindPostscreen, Weight: m.weight[bPostscreen],
		Key: zone, Reason: "postscreen " + string(code) + " blocked using " + zone}, Matched
}

func skipDigits(b []byte) []byte {
	i := 0
	for i < len(b) && isDigit(b[i]) {
		i++
	}
	return b[i:]
}

// parseIPv4 parses a dotted-quad without allocating (no leading zeros, as
// netip.ParseAddr).
func parseIPv4(b []byte) (netip.Addr, bool) {
	var a [4]byte
	k, n, digits := 0, 0, 0
	for i := 0; i <= len(b); i++ {
		if i == len(b) || b[i] == '.' {
			if digits == 0 || k > 3 {
				return netip.Addr{}, false
			}
			a[k] = byte(n)
			k++
			n, digits = 0, 0
			continue
		}
		c := b[i]
		if !isDigit(c) || (digits == 1 && n == 0) {
			return netip.Addr{}, false
		}
		n = n*10 + int(c-'0')
		digits++
		if n > 255 {
			return netip.Addr{}, false
		}
	}
	if k != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(a), true
}

// Event is the engine event a match reports: the one conversion the daemon
// and `banner test-log` share, so both give the same reasons.
func (m Match) Event() banner.Event {
	reason := m.Reason
	if reason == "" {
		reason = m.Pattern
	}
	return banner.Event{Addr: m.Addr, Kind: m.Kind, Weight: m.Weight, Time: m.Time,
		Source: banner.SourceLog, Key: m.Key, Reason: "log: " + reason, Origin: m.Origin}
}
