package config

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/dnslist"
	"github.com/banner-mta/banner/banner/engine"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/fleet"
	"github.com/banner-mta/banner/banner/follow"
	"github.com/banner-mta/banner/banner/logwatch"
	"github.com/banner-mta/banner/banner/policy"
	"github.com/banner-mta/banner/banner/recipients"
	"github.com/banner-mta/banner/dnsbl"
	"github.com/banner-mta/banner/policyd"
)

// validateErrors checks what the packages cannot (cross-section rules, the
// log section) and runs every package's own Validate on its mapped Config.
func (f *File) validateErrors() []error {
	var errs []error
	add := func(section string, rename map[string]string, err error) {
		errs = append(errs, f.packageErrors(section, rename, err)...)
	}
	add("policy", map[string]string{"max_line_bytes": "max_line", "max_request_bytes": "max_request"}, f.PolicydConfig(nil).Validate())
	pc, err := f.PolicyConfig(nil)
	add("policy", nil, err)
	add("policy", nil, pc.Validate())
	add("dnsbl", nil, f.DNSBLConfig(nil).Validate())
	add("dnslist", nil, f.DNSListConfig(nil).Validate())
	add("ban", nil, f.EngineConfig(nil).Validate())
	add("ban", nil, f.validateFCrDNS())
	add("firewall", map[string]string{"sasl_ports": "ban.sasl.ports"}, f.FirewallConfig(nil).Validate())
	if f.Fleet.Enabled {
		add("fleet", map[string]string{"url": "redis"}, f.FleetConfig(nil).Validate())
	}
	errs = append(errs, f.validateLogWatch()...)
	errs = append(errs, f.validateRecipients()...)
	errs = append(errs, f.validateFeeds()...)
	errs = append(errs, f.crossErrors()...) // warnings.go

	if f.Store.Path == "" {
		errs = append(errs, f.fieldError("store.path", errors.New("must not be empty")))
	}
	if f.Control.Socket == "" {
		errs = append(errs, f.fieldError("control.socket", errors.New("must not be empty")))
	}
	if f.Metrics.Listen != "" {
		if _, port, err := net.SplitHostPort(f.Metrics.Listen); err != nil {
			errs = append(errs, f.fieldError("metrics.listen", fmt.Errorf("want host:port: %w", err)))
		} else if _, err := net.LookupPort("tcp", port); err != nil {
			errs = append(errs, f.fieldError("metrics.listen", fmt.Errorf("want host:port: %w", err)))
		}
	}
	if _, err := f.LogLevel(); err != nil {
		errs = append(errs, f.fieldError("log.level", err))
	}
	if f.Log.Format != "text" && f.Log.Format != "json" {
		errs = append(errs, f.fieldError("log.format", fmt.Errorf("want \"text\" or \"json\", got %q", f.Log.Format)))
	}
	return uniqueErrors(errs)
}

// uniqueErrors drops repeats of the same message (two checks of one key
// that agree), keeping the first.
func uniqueErrors(errs []error) []error {
	seen := map[string]bool{}
	out := errs[:0]
	for _, e := range errs {
		if msg := e.Error(); !seen[msg] {
			seen[msg] = true
			out = append(out, e)
		}
	}
	return out
}

// keyPrefix matches the "key: " or "key[3].sub: " a package puts before its
// Validate messages.
var keyPrefix = regexp.MustCompile(`^([a-z0-9_]+(?:\[\d+\])?(?: \("[^"]*"\))?(?:\.[a-z0-9_]+)*)(?:/[a-z0-9_]+)?: `)

// quotedName is the ` ("name")` some packages put after an index.
var quotedName = regexp.MustCompile(` \("[^"]*"\)`)

// packageErrors turns a package's Validate error into file errors, one per
// joined message, each with the dotted key and its line.
func (f *File) packageErrors(section string, rename map[string]string, err error) []error {
	if err == nil {
		return nil
	}
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	var out []error
	for _, e := range list {
		msg := e.Error()
		m := keyPrefix.FindStringSubmatch(msg)
		if m == nil {
			out = append(out, &Error{Path: f.path, Line: f.lines.find(section), Key: section, Err: e})
			continue
		}
		key := quotedName.ReplaceAllString(m[1], "")
		if r, ok := rename[key]; ok {
			key = r
		}
		if !strings.Contains(key, ".") || !strings.HasPrefix(key, "recipients.") && !strings.HasPrefix(key, "ban.") {
			key = section + "." + key
		}
		out = append(out, &Error{Path: f.path, Line: f.lines.find(key), Key: key, Err: errors.New(strings.TrimPrefix(msg, m[0]))})
	}
	return out
}

// FleetConfig maps [fleet] onto fleet.Config; node defaults to the host
// name.
func (f *File) FleetConfig(log *slog.Logger) fleet.Config {
	c := fleet.DefaultConfig()
	c.URL, c.CAFile, c.User, c.PasswordFile = f.Fleet.Redis, f.Fleet.CAFile, f.Fleet.User, f.Fleet.PasswordFile
	c.Node, c.KeyPrefix = f.Fleet.Node, f.Fleet.KeyPrefix
	c.MaxLen, c.QueueSize = int64(f.Fleet.MaxLen), f.Fleet.QueueSize
	if c.Node == "" {
		c.Node, _ = os.Hostname()
	}
	c.Logger = log
	return c
}

// Allowlist is the [ban] allowlist plus loopback, which is always allowed.
func (f *File) Allowlist() []netip.Prefix {
	return append(banner.LoopbackPrefixes(), prefixes(f.Ban.Allowlist)...)
}

// LogLevel parses [log] level.
func (f *File) LogLevel() (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(f.Log.Level)); err != nil {
		return 0, fmt.Errorf("want debug, info, warn or error, got %q", f.Log.Level)
	}
	return l, nil
}

// PolicydConfig maps [policy] onto the policy server's Config.
func (f *File) PolicydConfig(log *slog.Logger) policyd.Config {
	c := policyd.DefaultConfig()
	p := f.Policy
	c.Listen = p.Listen
	c.AllowPeers = prefixes(p.AllowPeers)
	c.SocketUser = p.SocketUser
	c.SocketGroup = p.SocketGroup
	c.PeerUsers = p.PeerUsers
	c.MaxConns = p.MaxConnections
	c.MaxConnsPerUser = p.MaxPerUser
	c.MaxLineBytes = p.MaxLine
	c.MaxAttrs = p.MaxAttributes
	c.MaxRequestBytes = p.MaxRequest
	c.ReadTimeout = time.Duration(p.ReadTimeout)
	c.IdleTimeout = time.Duration(p.IdleTimeout)
	c.RequestTimeout = time.Duration(p.RequestTimeout)
	c.FailAction = p.FailAction
	c.Logger = log
	return c
}

// PolicyConfig maps [policy], [recipients] weight and the allowlist onto the
// policy decision's Config. On error (an immediate rule's codes do not
// parse) the Config must not be used; it still holds one rule per file
// rule, so that its Validate names the file's indexes.
func (f *File) PolicyConfig(log *slog.Logger) (policy.Config, error) {
	p := f.Policy
	c := policy.Config{
		DNSBLAction:     p.DNSBLAction,
		BannedAction:    p.BannedAction,
		DNSErrorAction:  p.DNSErrorAction,
		SkipSASL:        p.SkipSASL,
		DNSBLWeight:     p.DNSBLWeight,
		RecipientWeight: f.Recipients.Weight,
		Allowlist:       f.Allowlist(),
		SASLPorts:       f.Ban.SASL.Ports,
		Logger:          log,
	}
	var errs []error
	for i, r := range p.Immediate {
		codes, err := dnsbl.ParseFilter(r.Codes)
		if err != nil {
			// Keep the rule, so Immediate[i] stays the file's rule i in
			// Validate's messages; the error says it is unusable.
			errs = append(errs, fmt.Errorf("immediate[%d].codes: %w", i, err))
		}
		c.Immediate = append(c.Immediate, policy.ImmediateRule{Zone: r.Zone, Codes: codes, BanFor: time.Duration(r.BanTime)})
	}
	return c, errors.Join(errs...)
}

// DNSBLConfig maps [dnsbl] onto the DNSBL checker's Config.
func (f *File) DNSBLConfig(log *slog.Logger) dnsbl.Config {
	d := f.DNSBL
	return dnsbl.Config{
		Zones:            d.Zones,
		Threshold:        d.Threshold,
		Resolvers:        d.Resolvers,
		ResolvConf:       d.ResolvConf,
		QueryTimeout:     time.Duration(d.QueryTimeout),
		CacheSize:        d.CacheSize,
		MinTTL:           time.Duration(d.MinTTL),
		MaxTTL:           time.Duration(d.MaxTTL),
		NegativeTTL:      time.Duration(d.NegativeTTL),
		DQSKey:           d.DQSKey,
		ErrorLogInterval: time.Duration(d.ErrorLogInterval),
		FailureBackoff:   time.Duration(d.FailureBackoff),
		Logger:           log,
	}
}

// DNSListConfig maps [dnslist] onto the DNS list server's Config.
func (f *File) DNSListConfig(log *slog.Logger) dnslist.Config {
	d := f.DNSList
	return dnslist.Config{
		Listen:       d.Listen,
		Zone:         d.Zone,
		TTL:          time.Duration(d.TTL),
		ListScored:   d.ListScored,
		AllowClients: prefixes(d.AllowClients),
		Logger:       log,
	}
}

// EngineConfig maps [ban] onto the ban engine's Config.
func (f *File) EngineConfig(log *slog.Logger) engine.Config {
	b := f.Ban
	return engine.Config{
		FindTime:          time.Duration(b.FindTime),
		MaxRetry:          b.MaxRetry,
		BanTime:           time.Duration(b.BanTime),
		Factor:            b.Factor,
		MaxTime:           time.Duration(b.MaxTime),
		BanTimeJitter:     time.Duration(b.BanTimeJitter),
		ForgetAfter:       time.Duration(b.ForgetAfter),
		Allowlist:         prefixes(b.Allowlist),
		IPv6Prefix:        b.IPv6Prefix,
		EchoWindow:        time.Duration(b.EchoWindow),
		ReconcileInterval: time.Duration(b.ReconcileInterval),
		QueueSize:         b.QueueSize,
		GoodSenderFor:     time.Duration(b.GoodSenderDays) * 24 * time.Hour,
		GoodSenderFactor:  b.GoodSenderFactor,
		MaxGoodSenders:    b.GoodSendersMax,
		Kinds: map[banner.Kind]engine.KindRule{
			banner.KindSASL: {MaxRetry: b.SASL.MaxRetry, FindTime: time.Duration(b.SASL.FindTime), OwnPorts: len(b.SASL.Ports) > 0},
		},
		Logger: log,
	}
}

// FirewallConfig maps [firewall] onto the firewall backend's Config.
func (f *File) FirewallConfig(log *slog.Logger) firewall.Config {
	w := f.Firewall
	return firewall.Config{
		Backend:        w.Backend,
		NFTTable:       w.NFTTable,
		NFTPriority:    w.NFTPriority,
		Chain:          w.Chain,
		Ports:          w.Ports,
		SASLPorts:      f.Ban.SASL.Ports,
		Drop:           w.Drop,
		Set4:           w.Set4,
		Set6:           w.Set6,
		MaxElem:        w.MaxElem,
		IPv6:           w.IPv6,
		LockWait:       time.Duration(w.LockWait),
		CommandTimeout: time.Duration(w.CommandTimeout),
		Logger:         log,
	}
}

// MatcherConfig maps [logwatch] onto the log-line matcher's Config (also
// used by `banner test-log`).
func (f *File) MatcherConfig() logwatch.MatcherConfig {
	c := logwatch.DefaultMatcherConfig()
	c.Builtin = f.LogWatch.Builtin
	c.BuiltinWeights = f.LogWatch.BuiltinWeights
	c.IgnoreServices = f.LogWatch.IgnoreServices
	c.OwnRejectMarker = ownRejectMarker(f.Policy.DNSBLAction, f.Policy.BannedAction)
	c.Patterns = nil
	for _, p := range f.LogWatch.Patterns {
		c.Patterns = append(c.Patterns, logwatch.Pattern{Name: p.Name, Regex: p.Regex, Weight: p.Weight})
	}
	return c
}

// LogWatchConfig maps [logwatch] onto the log watcher's Config. Where
// positions persist is the caller's to set (Config.Positions).
func (f *File) LogWatchConfig(log *slog.Logger) (logwatch.Config, error) {
	c := logwatch.DefaultConfig()
	m := f.MatcherConfig()
	c.Files = f.LogWatch.Files
	c.Journal = f.LogWatch.Journal
	c.FromStart = f.LogWatch.FromStart
	c.PollInterval = time.Duration(f.LogWatch.PollInterval)
	c.RotateGrace = time.Duration(f.LogWatch.RotateGrace)
	c.MaxLineLen = f.LogWatch.MaxLine
	c.Builtin = m.Builtin
	c.BuiltinWeights = m.BuiltinWeights
	c.Patterns = m.Patterns
	c.OwnRejectMarker = m.OwnRejectMarker
	c.IgnoreServices = m.IgnoreServices
	c.Logger = log
	return c, c.Validate()
}

// replyCode is the "554 5.7.1 " or "REJECT " that starts a reject action.
var replyCode = regexp.MustCompile(`^(?:[45]\d\d(?: [45]\.\d{1,3}\.\d{1,3})?|REJECT|DEFER|DEFER_IF_PERMIT) +`)

// ownRejectMarker is the fixed start of the text banner's own rejects put
// after "Recipient address rejected: " in Postfix's log, so the log
// watcher does not count them again: the common prefix of the reject
// templates up to the first placeholder. "" when they share too little.
func ownRejectMarker(actions ...string) string {
	marker := ""
	for i, a := range actions {
		a = replyCode.ReplaceAllString(a, "")
		if j := strings.IndexByte(a, '{'); j >= 0 {
			a = a[:j]
		}
		if i == 0 {
			marker = a
			continue
		}
		n := 0
		for n < len(marker) && n < len(a) && marker[n] == a[n] {
			n++
		}
		marker = marker[:n]
	}
	if len(marker) < 8 {
		return ""
	}
	return marker
}

// validateLogWatch checks [logwatch]: what the log watcher's Validate
// checks, plus each admin pattern's name and regex syntax, reported with
// the regex as the admin wrote it. logwatch's Validate stops at its first
// error, so patterns already found wrong here are replaced by a harmless
// stand-in before it runs: it then reports the next problem, not the same
// one again.
func (f *File) validateLogWatch() []error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(f.LogWatch.BuiltinWeights)) {
		if f.LogWatch.BuiltinWeights[name] == 0 {
			errs = append(errs, f.fieldError("logwatch.builtin_weights."+name,
				errors.New("must be > 0 (to turn a pattern off, leave it out of builtin)")))
		}
	}
	c, _ := f.LogWatchConfig(nil)
	for i, p := range f.LogWatch.Patterns {
		key := fmt.Sprintf("logwatch.pattern[%d]", i)
		bad := false
		if p.Name == "" {
			errs = append(errs, f.fieldError(key+".name", errors.New("must not be empty")))
			bad = true
		}
		if err := patternSyntax(p.Regex); err != nil {
			errs = append(errs, f.fieldError(key+".regex", err))
			bad = true
		}
		if bad {
			c.Patterns[i] = logwatch.Pattern{Name: fmt.Sprintf("\x00pattern %d", i), Regex: "<HOST>"}
		}
	}
	return append(errs, f.packageErrors("logwatch", nil, c.Validate())...)
}

// sameLogFileErrors: two [logwatch] files that exist on this machine and
// are one file (device and inode: a symlink, a hard link, "//" in a path)
// would have every line counted twice. Load checks it, Parse cannot (the
// text alone cannot tell); the log watcher refuses them too.
func (f *File) sameLogFileErrors() []error {
	return f.packageErrors("logwatch", nil, follow.SameFiles(f.LogWatch.Files))
}

// hostStandIn takes the place of <HOST> when checking an admin regex: a
// group, like the expression <HOST> stands for.
const hostStandIn = "(?:HOST)"

// patternSyntax checks an admin regex as the log watcher compiles it, with
// <HOST> expanded, but says what is wrong in the admin's own terms.
func patternSyntax(re string) error {
	if _, err := regexp.Compile(strings.ReplaceAll(re, "<HOST>", hostStandIn)); err != nil {
		var se *syntax.Error
		if errors.As(err, &se) {
			return fmt.Errorf("invalid regex: %w", &syntax.Error{Code: se.Code, Expr: strings.ReplaceAll(se.Expr, hostStandIn, "<HOST>")})
		}
		return fmt.Errorf("invalid regex: %w", err)
	}
	return nil
}

// RecipientsConfig maps [recipients] onto the recipient tables' Config.
func (f *File) RecipientsConfig(log *slog.Logger) recipients.Config {
	r := f.Recipients
	c := recipients.DefaultConfig()
	c.Domains, c.Files, c.RecipientDelimiter, c.Logger = r.Domains, r.Files, r.RecipientDelimiter, log
	return c
}

// validateRecipients checks [recipients], including the recipient tables'
// own Validate, which `banner run` calls when domains is set.
func (f *File) validateRecipients() []error {
	var errs []error
	r := f.Recipients
	if len(r.Domains) > 0 {
		errs = append(errs, f.packageErrors("recipients", nil, f.RecipientsConfig(nil).Validate())...)
	}
	if len(r.Files) > 0 && len(r.Domains) == 0 {
		errs = append(errs, f.fieldError("recipients.files", errors.New("set recipients.domains too: only RCPTs to those domains are checked")))
	}
	if r.Weight < 0 {
		errs = append(errs, f.fieldError("recipients.weight", fmt.Errorf("must be >= 0, got %v", r.Weight)))
	}
	if r.ReloadInterval <= 0 {
		errs = append(errs, f.fieldError("recipients.reload_interval", errors.New("must be > 0")))
	}
	return errs
}
