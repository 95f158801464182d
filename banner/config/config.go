// Package config reads banner's TOML configuration file. It owns the file
// format: the sections, their keys, defaults, and error messages that name
// the file, line and key. It maps each section onto the plain Config struct
// of the package that does the work, whose Validate method it then calls.
package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	toml "github.com/pelletier/go-toml/v2"
)

// DefaultPath is where banner looks for its configuration by default.
const DefaultPath = "/etc/banner/banner.toml"

// File is the whole configuration file. Every key has a default (see
// Default and conf/banner.toml), so an empty file is a valid configuration.
type File struct {
	Policy     Policy     `toml:"policy"`
	DNSBL      DNSBL      `toml:"dnsbl"`
	DNSList    DNSList    `toml:"dnslist"`
	Ban        Ban        `toml:"ban"`
	Firewall   Firewall   `toml:"firewall"`
	LogWatch   LogWatch   `toml:"logwatch"`
	Recipients Recipients `toml:"recipients"`
	Store      Store      `toml:"store"`
	Control    Control    `toml:"control"`
	Metrics    Metrics    `toml:"metrics"`
	Log        Log        `toml:"log"`
	Fleet      Fleet      `toml:"fleet"`
	Feeds      []Feed     `toml:"feeds"`

	path  string
	lines keyLines
}

// Policy is the [policy] section: the Postfix policy service and its
// decision.
type Policy struct {
	Listen         []string `toml:"listen"`
	AllowPeers     []Prefix `toml:"allow_peers"`
	SocketUser     string   `toml:"socket_user"`
	SocketGroup    string   `toml:"socket_group"`
	PeerUsers      []string `toml:"peer_users"`
	MaxConnections int      `toml:"max_connections"`
	MaxPerUser     int      `toml:"max_connections_per_user"`
	MaxLine        int      `toml:"max_line"`
	MaxAttributes  int      `toml:"max_attributes"`
	MaxRequest     int      `toml:"max_request"`
	ReadTimeout    Duration `toml:"read_timeout"`
	IdleTimeout    Duration `toml:"idle_timeout"`
	RequestTimeout Duration `toml:"request_timeout"`
	FailAction     string   `toml:"fail_action"`
	DNSBLAction    string   `toml:"dnsbl_action"`
	BannedAction   string   `toml:"banned_action"`
	DNSErrorAction string   `toml:"dns_error_action"`
	SkipSASL       bool     `toml:"skip_sasl"`
	DNSBLWeight    float64  `toml:"dnsbl_weight"`

	Immediate []Immediate `toml:"immediate"`
}

// Immediate is one [[policy.immediate]] rule: a DNSBL answer that bans the
// client at once, for bantime.
type Immediate struct {
	Zone    string   `toml:"zone"`
	Codes   string   `toml:"codes"`
	BanTime Duration `toml:"bantime"`
}

// DNSBL is the [dnsbl] section.
type DNSBL struct {
	Zones            []string `toml:"zones"`
	Threshold        float64  `toml:"threshold"`
	Resolvers        []string `toml:"resolvers"`
	ResolvConf       string   `toml:"resolv_conf"`
	QueryTimeout     Duration `toml:"query_timeout"`
	CacheSize        int      `toml:"cache_size"`
	MinTTL           Duration `toml:"min_ttl"`
	MaxTTL           Duration `toml:"max_ttl"`
	NegativeTTL      Duration `toml:"negative_ttl"`
	DQSKey           string   `toml:"dqs_key"`
	ErrorLogInterval Duration `toml:"error_log_interval"`
	FailureBackoff   Duration `toml:"failure_backoff"`
}

// DNSList is the [dnslist] section: banner's bans served as a DNS list.
type DNSList struct {
	Listen       string   `toml:"listen"`
	Zone         string   `toml:"zone"`
	TTL          Duration `toml:"ttl"`
	ListScored   bool     `toml:"list_scored"`
	AllowClients []Prefix `toml:"allow_clients"`
}

// Ban is the [ban] section: scoring, escalation and the allowlist.
type Ban struct {
	MaxRetry          float64  `toml:"maxretry"`
	FindTime          Duration `toml:"findtime"`
	BanTime           Duration `toml:"bantime"`
	Factor            float64  `toml:"factor"`
	MaxTime           Duration `toml:"maxtime"`
	BanTimeJitter     Duration `toml:"bantime_jitter"`
	ForgetAfter       Duration `toml:"forget_after"`
	Allowlist         []Prefix `toml:"allowlist"`
	AllowLocal        bool     `toml:"allow_local"`
	AllowMynetworks   bool     `toml:"allow_mynetworks"`
	PostfixConfigDir  string   `toml:"postfix_config_dir"`
	IPv6Prefix        int      `toml:"ipv6_prefix"`
	EchoWindow        Duration `toml:"echo_window"`
	ReconcileInterval Duration `toml:"reconcile_interval"`
	QueueSize         int      `toml:"queue_size"`
	GoodSenderDays    int      `toml:"good_sender_days"`
	GoodSenderFactor  float64  `toml:"good_sender_factor"`
	GoodSendersMax    int      `toml:"good_senders_max"`
	AllowFCrDNS       []string `toml:"allow_fcrdns"`
	SASL              KindBan  `toml:"sasl"`
}

// KindBan is a [ban.KIND] table: a kind scored in a window of its own.
type KindBan struct {
	MaxRetry float64  `toml:"maxretry"`
	FindTime Duration `toml:"findtime"`
	// Ports are the TCP ports the kind's bans close, instead of
	// [firewall] ports; [] means [firewall] ports.
	Ports []uint16 `toml:"ports"`
}

// Firewall is the [firewall] section.
type Firewall struct {
	Backend        string   `toml:"backend"`
	NFTTable       string   `toml:"nft_table"`
	NFTPriority    int      `toml:"nft_priority"`
	Chain          string   `toml:"chain"`
	Ports          []uint16 `toml:"ports"`
	Drop           string   `toml:"drop"`
	Set4           string   `toml:"set4"`
	Set6           string   `toml:"set6"`
	MaxElem        int      `toml:"maxelem"`
	IPv6           bool     `toml:"ipv6"`
	LockWait       Duration `toml:"lock_wait"`
	CommandTimeout Duration `toml:"command_timeout"`
}

// LogWatch is the [logwatch] section.
type LogWatch struct {
	Files          []string           `toml:"files"`
	Journal        bool               `toml:"journal"`
	FromStart      bool               `toml:"from_start"`
	PollInterval   Duration           `toml:"poll_interval"`
	RotateGrace    Duration           `toml:"rotate_grace"`
	MaxLine        int                `toml:"max_line"`
	Builtin        []string           `toml:"builtin"`
	BuiltinWeights map[string]float64 `toml:"builtin_weights"`
	IgnoreServices []string           `toml:"ignore_services"`
	Patterns       []Pattern          `toml:"pattern"`
}

// Pattern is one [[logwatch.pattern]]: an admin-written regular expression
// with a <HOST> tag.
type Pattern struct {
	Name   string  `toml:"name"`
	Regex  string  `toml:"regex"`
	Weight float64 `toml:"weight"`
}

// Recipients is the [recipients] section: unknown-recipient tracking.
type Recipients struct {
	Domains            []string `toml:"domains"`
	Files              []string `toml:"files"`
	RecipientDelimiter string   `toml:"recipient_delimiter"`
	Weight             float64  `toml:"weight"`
	ReloadInterval     Duration `toml:"reload_interval"`
}

// Feed is one [[feeds]] entry: a list of addresses and prefixes, in a local
// file, that banner keeps banned while it lists them.
type Feed struct {
	Name     string   `toml:"name"`
	Path     string   `toml:"path"`
	Interval Duration `toml:"interval"`
}

// DefaultFeedInterval is a feed's interval when the file sets none.
const DefaultFeedInterval = Duration(time.Hour)

// FeedInterval is f's reload interval: Interval, or DefaultFeedInterval.
func (f Feed) FeedInterval() time.Duration {
	if f.Interval == 0 {
		return time.Duration(DefaultFeedInterval)
	}
	return time.Duration(f.Interval)
}

// Store is the [store] section.
type Store struct {
	Path string `toml:"path"`
}

// Control is the [control] section: the socket the CLI talks to.
type Control struct {
	Socket string `toml:"socket"`
}

// Metrics is the [metrics] section.
type Metrics struct {
	Listen string `toml:"listen"`
}

// Fleet is the [fleet] section: sharing bans, scores and offenders with the
// other MX hosts through Redis (off by default).
type Fleet struct {
	Enabled      bool   `toml:"enabled"`
	Redis        string `toml:"redis"`
	CAFile       string `toml:"ca_file"`
	User         string `toml:"user"`
	PasswordFile string `toml:"password_file"`
	Node         string `toml:"node"`
	KeyPrefix    string `toml:"key_prefix"`
	MaxLen       int    `toml:"max_len"`
	QueueSize    int    `toml:"queue_size"`
}

// Log is the [log] section: banner's own logging.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// Path is the file the configuration was read from ("" for defaults).
func (f *File) Path() string { return f.path }

// Error is a configuration error that names the file, line and key.
type Error struct {
	Path   string
	Line   int    // 0 when unknown
	Column int    // 0 when unknown; set for syntax errors
	Key    string // dotted, e.g. "ban.bantime"
	Err    error
	// Context quotes the line with a caret under Column, on lines of
	// their own after the message ("" for none).
	Context string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	if e.Key != "" {
		fmt.Fprintf(&b, ": %s", e.Key)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	if e.Context != "" {
		b.WriteString("\n")
		b.WriteString(e.Context)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Load reads and validates the configuration file at path. A missing file is
// an error: banner never runs on a configuration it did not find.
func Load(path string) (*File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading configuration: %w", err)
	}
	return parse(path, data, true)
}

// Parse decodes and validates configuration text; path is used in errors.
// It reports every error it finds at once, in file order (see sortErrors):
// unknown keys and values of the wrong type (checkSchema), syntax and
// other decoding errors, and the values each package's Validate refuses.
// Values found wrong by type are left out of the decoding, so a value
// check never runs on them.
func Parse(path string, data []byte) (*File, error) { return parse(path, data, false) }

// parse is Parse; with machine (Load), also the checks that look at this
// machine and find an error, not a warning: two [logwatch] files that are
// one file (sameLogFileErrors).
func parse(path string, data []byte, machine bool) (*File, error) {
	f := Default()
	f.path = path
	s := f.checkSchema(data)
	f.lines = s.lines
	errs := s.errs
	dec := toml.NewDecoder(bytes.NewReader(s.clean)).DisallowUnknownFields()
	decoded := true
	if err := dec.Decode(f); err != nil {
		var strict *toml.StrictMissingError
		// Unknown keys are reported after the rest is decoded; any
		// other error stops the decoder half way.
		decoded = errors.As(err, &strict)
		for _, e := range f.decodeErrors(err, data) {
			if s.syntax == nil || e.Line != s.syntax.Line {
				errs = append(errs, e)
			}
		}
	}
	if s.syntax != nil {
		errs = append(errs, s.syntax)
		decoded = false
	}
	if decoded {
		for _, err := range f.validateErrors() {
			var e *Error
			if !errors.As(err, &e) {
				e = &Error{Path: f.path, Err: err}
			}
			if !s.hides(e) {
				errs = append(errs, e)
			}
		}
		if machine {
			for _, err := range f.sameLogFileErrors() {
				e := err.(*Error)
				// "listed twice" already said it for that entry
				if !slices.ContainsFunc(errs, func(o *Error) bool { return o.Key == e.Key }) {
					errs = append(errs, e)
				}
			}
		}
	}
	if len(errs) == 0 {
		return f, nil
	}
	sortErrors(errs)
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
	}
	return nil, errors.Join(out...)
}

// sortErrors puts errors in file order: by line, those without a line
// last, each group keeping the order in which they were found.
func sortErrors(errs []*Error) {
	slices.SortStableFunc(errs, func(a, b *Error) int { return compareLines(a.Line, b.Line) })
}

// compareLines orders line numbers, 0 (unknown) after all others.
func compareLines(a, b int) int {
	switch {
	case a == b:
		return 0
	case a == 0:
		return 1
	case b == 0:
		return -1
	}
	return cmp.Compare(a, b)
}

// hides reports whether a value error is about a key whose value checkSchema
// left out, so that the check ran on its default: a key left out or one
// under it, or a key of the same table whose message names it (maxtime
// "must be >= bantime" when bantime was of the wrong type).
func (s *schemaResult) hides(e *Error) bool {
	for _, b := range s.bad {
		if e.Key == b || strings.HasPrefix(e.Key, b+".") || strings.HasPrefix(e.Key, b+"[") {
			return true
		}
		table, name := cutLast(b)
		if t, _ := cutLast(e.Key); t == table && mentions(e.Err.Error(), name) {
			return true
		}
		if strings.Contains(e.Err.Error(), b) {
			return true
		}
	}
	return false
}

// mentions reports whether msg has name as a whole word.
func mentions(msg, name string) bool {
	isWord := func(c byte) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	for i := 0; ; {
		j := strings.Index(msg[i:], name)
		if j < 0 || name == "" {
			return false
		}
		j += i
		end := j + len(name)
		if (j == 0 || !isWord(msg[j-1])) && (end == len(msg) || !isWord(msg[end])) {
			return true
		}
		i = j + 1
	}
}

// decodeErrors turns the decoder's error into file errors. Positions are
// those of data, which the decoded copy shares.
func (f *File) decodeErrors(err error, data []byte) []*Error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) {
		errs := make([]*Error, 0, len(strict.Errors))
		for _, de := range strict.Errors {
			row, _ := de.Position()
			errs = append(errs, &Error{Path: f.path, Line: row, Key: strings.Join(de.Key(), "."),
				Err: errUnknownKey})
		}
		return errs
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		msg := de.Error()
		msg = strings.TrimPrefix(msg, "toml: ")
		// go-toml names Go types; say what the file should hold instead.
		if i := strings.Index(msg, "into struct field"); i >= 0 {
			msg = strings.TrimSpace(msg[:i]) + " (wrong type for this key)"
		}
		var inner error = errors.New(msg)
		if u := errors.Unwrap(de); u != nil {
			inner = u
		}
		key := strings.Join(de.Key(), ".")
		if strings.Contains(msg, "already exists as a value, but should be an array table") {
			at := ""
			if n := f.lines.find(key); n > 0 && n != row {
				at = fmt.Sprintf(" at line %d", n)
			}
			inner = fmt.Errorf("%w: the file sets %s = ...%s and also writes [[%s]] blocks; keep only one of the two", inner, key, at, key)
		}
		e := &Error{Path: f.path, Line: row, Key: key, Err: inner}
		if off := offsetOf(data, row, col); off >= 0 {
			e.Line, e.Column, e.Context = position(data, off)
		}
		return []*Error{e}
	}
	return []*Error{{Path: f.path, Err: err}}
}

// offsetOf returns the byte offset of line row, column col (in bytes, from
// 1, as go-toml counts) of data, or -1 when there is none.
func offsetOf(data []byte, row, col int) int {
	if row < 1 || col < 1 {
		return -1
	}
	off := 0
	for range row - 1 {
		i := bytes.IndexByte(data[off:], '\n')
		if i < 0 {
			return -1
		}
		off += i + 1
	}
	if off+col-1 > len(data) {
		return -1
	}
	return off + col - 1
}

// fieldError builds an Error for a dotted key, finding its line in the file.
func (f *File) fieldError(key string, err error) error {
	return &Error{Path: f.path, Line: f.lines.find(key), Key: key, Err: err}
}

// keyLines maps dotted keys ("ban.bantime", "logwatch.pattern[1].regex",
// "logwatch.builtin_weights.rbl") to the line where the file sets them;
// checkSchema fills it. It only points messages at the right line.
type keyLines map[string]int

// find returns the line of key, else of its closest parent the file sets:
// an array element ("dnsbl.zones[1]") is on its key's line, a key the file
// does not set is reported at its table's header. 0 when none is set.
func (kl keyLines) find(key string) int {
	for key != "" {
		if n, ok := kl[key]; ok {
			return n
		}
		i := strings.LastIndexByte(key, '.')
		if strings.HasSuffix(key, "]") {
			i = strings.LastIndexByte(key, '[')
		}
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}
