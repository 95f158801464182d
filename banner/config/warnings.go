package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/banner-mta/banner/banner/logwatch"
	"github.com/banner-mta/banner/dnsbl"
)

// Warning is a setting that is legal but almost surely wrong (Warnings), or
// something on this machine that `banner run` will trip over
// (EnvironmentWarnings). Like Error, it names the file, line and key.
type Warning struct {
	Path string
	Line int    // 0 when unknown (e.g. a built-in default the file does not set)
	Key  string // dotted, e.g. "dnsbl.threshold"
	Msg  string
	// LoggedByDaemon marks warnings a part of the daemon logs itself when
	// `banner run` starts (the DNSBL checker's), so run does not log them
	// twice. `banner run -check` prints them all.
	LoggedByDaemon bool
}

// String formats the warning like an Error: "file:line: key: message".
func (w Warning) String() string {
	return (&Error{Path: w.Path, Line: w.Line, Key: w.Key, Err: errors.New(w.Msg)}).Error()
}

func (f *File) warning(key, format string, a ...any) Warning {
	return Warning{Path: f.path, Line: f.lines.find(key), Key: key, Msg: fmt.Sprintf(format, a...)}
}

// Warningf is a warning about key, placed at the line of the file that
// sets it (for checks of the machine made outside this package).
func (f *File) Warningf(key, format string, a ...any) Warning { return f.warning(key, format, a...) }

// DNSBLWarning is w, a warning of the DNSBL checker, placed at the line of
// its key (or of key when w names none).
func (f *File) DNSBLWarning(w dnsbl.ConfigWarning, key string) Warning { return f.dnsblWarning(w, key) }

// setInFile reports whether the file itself sets key (not a parent table).
func (f *File) setInFile(key string) bool {
	_, ok := f.lines[key]
	return ok
}

// Warnings returns the settings that are legal but almost surely wrong, in
// file order (see SortWarnings). It
// looks at the configuration only, never at the machine (see
// daemon.Preflight). `banner run -check` prints them and `banner run`
// logs them at start-up.
func (f *File) Warnings() []Warning {
	var ws []Warning
	ws = append(ws, f.dnsblWarnings()...)
	ws = append(ws, f.immediateWarnings()...)
	ws = append(ws, f.allowlistWarnings()...)
	ws = append(ws, f.actionWarnings()...)
	ws = append(ws, f.timeoutWarnings()...)
	ws = append(ws, f.portWarnings()...)
	ws = append(ws, f.submissionWarnings()...)
	ws = append(ws, f.saslWarnings()...)
	ws = append(ws, f.saslPortWarnings()...)
	ws = append(ws, f.listenWarnings()...)
	ws = append(ws, f.patternWarnings()...)
	SortWarnings(ws)
	return ws
}

// patternWarnings flags [[logwatch.pattern]]s that could match text a
// client controls (logwatch.PatternRisk says how it decides).
func (f *File) patternWarnings() []Warning {
	var ws []Warning
	for i, p := range f.LogWatch.Patterns {
		if why := logwatch.PatternRisk(p.Regex); why != "" {
			ws = append(ws, f.warning(fmt.Sprintf("logwatch.pattern[%d].regex", i),
				"pattern %q may count an address a client wrote (forged in its HELO name, sender or recipient, which Postfix echoes in its log lines): %s", p.Name, why))
		}
	}
	return ws
}

// SortWarnings puts warnings in file order: by line, those without a line
// last, each group keeping its order.
func SortWarnings(ws []Warning) {
	slices.SortStableFunc(ws, func(a, b Warning) int { return compareLines(a.Line, b.Line) })
}

// crossErrors are the settings that are legal one by one but can never do
// what they say together; validate reports them as errors.
func (f *File) crossErrors() []error {
	var errs []error
	if err := f.thresholdError(); err != nil {
		errs = append(errs, err)
	}
	return append(errs, f.immediateErrors()...)
}

// zones parses [dnsbl] zones, skipping invalid ones (validate reports them).
func (f *File) zones() []dnsbl.Zone {
	var zs []dnsbl.Zone
	for _, s := range f.DNSBL.Zones {
		if z, err := dnsbl.ParseZone(s); err == nil {
			zs = append(zs, z)
		}
	}
	return zs
}

// maxScore is the highest score a lookup can reach: every zone with a
// positive weight listing the client. It adds in configuration order, as
// dnsbl's Lookup does, so the comparison with the threshold is exact.
func maxScore(zs []dnsbl.Zone, domain string) float64 {
	var s float64
	for _, z := range zs {
		if z.Weight > 0 && (domain == "" || z.Domain == domain) {
			s += z.Weight
		}
	}
	return s
}

// thresholdError: zones whose positive weights cannot add up to the
// threshold never list anyone, so banner never rejects on DNSBL while
// querying every client. This is an error, not a warning: it is what
// zones = ["zen.spamhaus.org"] (weight 1, postscreen's habit) does under
// the default threshold of 3, and a report-only setup has an explicit
// form, weight 0 (see dnsblWarnings).
func (f *File) thresholdError() error {
	zs := f.zones()
	if len(zs) == 0 || len(zs) != len(f.DNSBL.Zones) || !(f.DNSBL.Threshold > 0) {
		return nil
	}
	max := maxScore(zs, "")
	if max <= 0 || max >= f.DNSBL.Threshold {
		return nil
	}
	key := "dnsbl.threshold"
	if f.setInFile("dnsbl.zones") || !f.setInFile(key) {
		key = "dnsbl.zones"
	}
	return f.fieldError(key, fmt.Errorf("the zones' positive weights add up to %v at most, below threshold %v: no client can ever be listed, so banner would query every client and never reject one; "+
		"give the zones weights that reach the threshold (e.g. \"zen.spamhaus.org=127.0.0.[2..11]*%v\"), or lower dnsbl.threshold; for report-only lookups give every zone weight 0 (\"*0\")",
		num(max), num(f.DNSBL.Threshold), num(f.DNSBL.Threshold)))
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// dnsblWarnings: report-only zones, and dnsbl's own warnings (CBL beside
// ZEN, Spamhaus through a public resolver) for the resolvers the file
// names; EnvironmentWarnings covers resolvers taken from resolv_conf.
func (f *File) dnsblWarnings() []Warning {
	var ws []Warning
	zs := f.zones()
	if len(zs) > 0 && maxScore(zs, "") <= 0 {
		ws = append(ws, f.warning("dnsbl.zones", "no zone has a positive weight: every client is looked up and `banner check` shows the answers, but nobody is ever listed or rejected on DNSBL (fine for a trial run)"))
	}
	for _, w := range dnsbl.ConfigWarnings(zs, f.DNSBL.Resolvers, f.DNSBL.DQSKey) {
		ws = append(ws, f.dnsblWarning(w, "dnsbl."+w.Key))
	}
	return ws
}

// dnsblWarning turns one of dnsbl's warnings into a Warning for key.
func (f *File) dnsblWarning(w dnsbl.ConfigWarning, key string) Warning {
	msg := w.Msg
	if len(w.Attrs) > 0 {
		var parts []string
		for i := 0; i+1 < len(w.Attrs); i += 2 {
			parts = append(parts, fmt.Sprintf("%v %v", w.Attrs[i], w.Attrs[i+1]))
		}
		msg += " (" + strings.Join(parts, ", ") + ")"
	}
	if w.Fix != "" {
		msg += "; fix: " + w.Fix
	}
	out := f.warning(key, "%s", msg)
	out.LoggedByDaemon = true
	return out
}

// zoneDomains returns the distinct domains of zs.
func zoneDomains(zs []dnsbl.Zone) []string {
	var ds []string
	for _, z := range zs {
		if !slices.Contains(ds, z.Domain) {
			ds = append(ds, z.Domain)
		}
	}
	return ds
}

// immediateZoneMissing says why rule i's zone matches no configured zone,
// or "" when one matches. The policy compares domains exactly, as dnsbl
// writes them: lower case, no trailing dot.
func (f *File) immediateZoneMissing(i int, zs []dnsbl.Zone) string {
	r := f.Policy.Immediate[i]
	ds := zoneDomains(zs)
	if r.Zone == "" || slices.Contains(ds, r.Zone) {
		return ""
	}
	msg := fmt.Sprintf("zone %q is not in dnsbl.zones (%s): this rule can never fire", r.Zone, strings.Join(ds, ", "))
	if canon := strings.ToLower(strings.TrimSuffix(r.Zone, ".")); slices.Contains(ds, canon) {
		msg += fmt.Sprintf("; write it as %q (lower case, no trailing dot)", canon)
	}
	return msg
}

// immediateErrors: a [[policy.immediate]] rule the file writes, naming a
// zone that is not queried, can never fire (typically a typo).
func (f *File) immediateErrors() []error {
	zs := f.zones()
	if len(zs) == 0 || len(zs) != len(f.DNSBL.Zones) {
		return nil // DNSBL off: nothing can fire, which is what was asked
	}
	if !f.immediateFromFile() {
		return nil // the built-in rule: a warning (immediateWarnings)
	}
	var errs []error
	for i := range f.Policy.Immediate {
		if msg := f.immediateZoneMissing(i, zs); msg != "" {
			errs = append(errs, f.fieldError(fmt.Sprintf("policy.immediate[%d].zone", i), errors.New(msg)))
		}
	}
	return errs
}

// immediateFromFile reports whether the file writes the immediate rules
// ([[policy.immediate]] or immediate = [...]) rather than keeping the
// built-in one.
func (f *File) immediateFromFile() bool {
	return f.setInFile("policy.immediate") || f.setInFile("policy.immediate[0]")
}

// immediateWarnings: the built-in zen rule left in place after zen was
// taken out of the zones, and rules whose zone alone cannot reach the
// threshold (the policy bans at once only clients it lists).
func (f *File) immediateWarnings() []Warning {
	zs := f.zones()
	if len(zs) == 0 || len(zs) != len(f.DNSBL.Zones) {
		return nil
	}
	var ws []Warning
	for i, r := range f.Policy.Immediate {
		key := fmt.Sprintf("policy.immediate[%d]", i)
		if msg := f.immediateZoneMissing(i, zs); msg != "" {
			if !f.immediateFromFile() {
				ws = append(ws, f.warning("policy.immediate", "built-in rule: %s; write `immediate = []` under [policy] to drop it", msg))
			}
			continue
		}
		if r.Zone == "" {
			continue
		}
		if w := maxScore(zs, r.Zone); w < f.DNSBL.Threshold && maxScore(zs, "") >= f.DNSBL.Threshold {
			ws = append(ws, f.warning(key+".zone", "zone %s adds at most %v to the score, below dnsbl.threshold %v: banner bans at once only clients it lists, so this rule fires only when other zones list the client too",
				r.Zone, num(w), num(f.DNSBL.Threshold)))
		}
	}
	return ws
}

// broad reports whether p covers a very large part of the address space:
// shorter than /8 for IPv4, /16 for IPv6 (the limits of manual bans).
func broad(p netip.Prefix) bool {
	if p.Addr().Is4() {
		return p.Bits() < 8
	}
	return p.Bits() < 16
}

func describeBroad(p netip.Prefix) string {
	if p.Bits() == 0 {
		if p.Addr().Is4() {
			return "every IPv4 address"
		}
		return "every IPv6 address"
	}
	return fmt.Sprintf("1/%d of the %s Internet", 1<<p.Bits(), map[bool]string{true: "IPv4", false: "IPv6"}[p.Addr().Is4()])
}

// allowlistWarnings: an allowlist entry covering a huge range means banner
// never bans anyone there.
func (f *File) allowlistWarnings() []Warning {
	var ws []Warning
	for _, p := range prefixes(f.Ban.Allowlist) {
		if broad(p) {
			ws = append(ws, f.warning("ban.allowlist", "%s is very broad (shorter than /8 for IPv4 or /16 for IPv6): it covers %s, and allowlisted clients are never banned nor even checked against the DNSBLs", p, describeBroad(p)))
		}
	}
	return ws
}

// refusal says how an access(5) action refuses mail, or "" when it lets
// mail through.
func refusal(action string) string {
	word, _, _ := strings.Cut(strings.TrimSpace(action), " ")
	switch w := strings.ToUpper(word); {
	case w == "REJECT" || len(w) == 3 && w[0] == '5':
		return "rejects the mail for good (5xx: the sender gets a bounce)"
	case w == "DEFER" || w == "DEFER_IF_PERMIT" || len(w) == 3 && w[0] == '4':
		return "refuses the mail for now (4xx: senders retry, mail is delayed)"
	case w == "DISCARD":
		return "throws the mail away while telling the sender it was accepted"
	case w == "HOLD":
		return "puts the mail on hold until you release it (postsuper -H)"
	}
	return ""
}

// refuses reports whether an access(5) action refuses the mail outright:
// REJECT, DEFER, DEFER_IF_PERMIT or a 4xx/5xx reply.
func refuses(action string) bool {
	word, _, _ := strings.Cut(strings.TrimSpace(action), " ")
	switch w := strings.ToUpper(word); {
	case w == "REJECT" || w == "DEFER" || w == "DEFER_IF_PERMIT":
		return true
	case len(w) == 3 && (w[0] == '4' || w[0] == '5') && w[1] >= '0' && w[1] <= '9' && w[2] >= '0' && w[2] <= '9':
		return true
	}
	return false
}

// acceptance says what a non-refusing action does with the mail.
func acceptance(action string) string {
	if how := refusal(action); how != "" {
		return how // DISCARD, HOLD
	}
	return "lets the mail through"
}

// actionWarnings: fail_action and dns_error_action are sent when banner
// cannot decide; an action that refuses mail there turns every DNS
// hiccup into refused mail. dnsbl_action and banned_action are sent for
// the clients banner means to stop; an action that does not refuse mail
// there stops nothing.
func (f *File) actionWarnings() []Warning {
	var ws []Warning
	if a := f.Policy.DNSBLAction; !refuses(a) && maxScore(f.zones(), "") > 0 {
		ws = append(ws, f.warning("policy.dnsbl_action", "%q does not refuse mail from clients the DNSBLs list, it %s: banner counts the listing but stops nothing; write a reject such as %q",
			a, acceptance(a), Default().Policy.DNSBLAction))
	}
	if a := f.Policy.BannedAction; !refuses(a) {
		ws = append(ws, f.warning("policy.banned_action", "%q does not refuse mail from a banned client that still reaches Postfix (on a port not in [firewall] ports, with backend \"none\", or on a connection opened before the ban), it %s; write a reject such as %q",
			a, acceptance(a), Default().Policy.BannedAction))
	}
	if how := refusal(f.Policy.FailAction); how != "" {
		ws = append(ws, f.warning("policy.fail_action", "%q %s whenever a decision takes longer than request_timeout (%v): every slow DNS answer then refuses mail from innocent clients; \"DUNNO\" lets it through",
			f.Policy.FailAction, how, time.Duration(f.Policy.RequestTimeout)))
	}
	if how := refusal(f.Policy.DNSErrorAction); how != "" && len(f.DNSBL.Zones) > 0 {
		ws = append(ws, f.warning("policy.dns_error_action", "%q %s whenever a DNSBL cannot be asked (timeout, SERVFAIL, a resolver Spamhaus refuses): every DNS hiccup then refuses mail from innocent clients; \"DUNNO\" lets it through",
			f.Policy.DNSErrorAction, how))
	}
	return ws
}

// postfixPolicyTimeout is how long Postfix waits for banner: the
// timeout=10s of check_policy_service in conf/main.cf.
const postfixPolicyTimeout = 10 * time.Second

// timeoutWarnings: banner must answer before Postfix gives up waiting, or
// Postfix's default_action decides instead of banner's fail_action.
func (f *File) timeoutWarnings() []Warning {
	rt := time.Duration(f.Policy.RequestTimeout)
	if rt < postfixPolicyTimeout {
		return nil
	}
	return []Warning{f.warning("policy.request_timeout", "%v is not below the 10s Postfix waits for a policy answer (timeout=10s in check_policy_service, see conf/main.cf): a slow decision then times out in Postfix, which applies its own default_action instead of banner's fail_action; use less, e.g. \"5s\" (or raise Postfix's timeout above it)",
		rt)}
}

// submissionPorts are the ports of the services ignore_services skips by
// default.
var submissionPorts = []uint16{465, 587}

// submissionWarnings: a banned client loses 465 and 587 when [firewall]
// ports has them, but with submission, submissions or smtps in
// ignore_services the rejects logged on those ports never count, so
// attacks there are never banned: the two settings contradict each other.
func (f *File) submissionWarnings() []Warning {
	if f.Firewall.Backend == "none" {
		return nil
	}
	var ports, services []string
	for _, p := range submissionPorts {
		if slices.Contains(f.Firewall.Ports, p) {
			ports = append(ports, strconv.Itoa(int(p)))
		}
	}
	for _, s := range f.LogWatch.IgnoreServices {
		// compared as logwatch compares them: regardless of case
		if slices.ContainsFunc([]string{"submission", "submissions", "smtps"}, func(svc string) bool { return strings.EqualFold(s, svc) }) {
			services = append(services, strconv.Quote(s))
		}
	}
	if len(ports) == 0 || len(services) == 0 {
		return nil
	}
	key := "logwatch.ignore_services"
	if !f.setInFile(key) {
		key = "firewall.ports"
	}
	return []Warning{f.warning(key, "[firewall] ports blocks %s for banned clients, but [logwatch] ignore_services holds %s: rejects Postfix logs for those services never count, so clients are banned there only for what they do on other ports; to count them too, set ignore_services = [] under [logwatch]",
		strings.Join(ports, " and "), strings.Join(services, ", "))}
}

// saslWarnings: with [ban.sasl] ports = [], SASL bans close [firewall]
// ports, which by default do not hold the submission ports where
// passwords are guessed.
func (f *File) saslWarnings() []Warning {
	if len(f.Ban.SASL.Ports) > 0 || f.Firewall.Backend == "none" || !slices.ContainsFunc(f.LogWatch.Builtin, func(b string) bool {
		return b == logwatch.PatternSASL || b == logwatch.PatternSASLDisconnect
	}) || len(f.LogWatch.Files) == 0 {
		return nil
	}
	var missing []string
	for _, p := range submissionPorts {
		if !slices.Contains(f.Firewall.Ports, p) {
			missing = append(missing, strconv.Itoa(int(p)))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	key := "ban.sasl.ports"
	if !f.setInFile(key) {
		key = "logwatch.builtin"
	}
	return []Warning{f.warning(key, "SASL failures ban clients, but with [ban.sasl] ports = [] on [firewall] ports only, which lack %s: a client guessing passwords there keeps guessing; set [ban.sasl] ports (say [25, 465, 587]) so that only SASL bans close them",
		strings.Join(missing, " and "))}
}

// mailPorts are the SMTP ports: 25 (MX), 465 (submissions), 587 (submission).
var mailPorts = []uint16{25, 465, 587}

// portWarnings: banned clients lose every port in [firewall] ports.
func (f *File) portWarnings() []Warning {
	var odd []string
	for _, p := range f.Firewall.Ports {
		if !slices.Contains(mailPorts, p) {
			s := strconv.Itoa(int(p))
			if name := wellKnownPorts[p]; name != "" {
				s += " (" + name + ")"
			}
			odd = append(odd, s)
		}
	}
	if len(odd) == 0 || f.Firewall.Backend == "none" {
		return nil
	}
	return []Warning{f.warning("firewall.ports", "%s: not a mail port (25, 465, 587); banner blocks these ports for banned clients, so a client banned for mail also loses %s",
		strings.Join(odd, ", "), map[bool]string{true: "it", false: "them"}[len(odd) == 1])}
}

// saslPortWarnings: [ban.sasl] ports beyond the ports where mail
// passwords are used (SMTP, IMAP, POP3, ManageSieve).
func (f *File) saslPortWarnings() []Warning {
	var odd []string
	for _, p := range f.Ban.SASL.Ports {
		switch p {
		case 25, 465, 587, 110, 143, 993, 995, 4190:
			continue
		}
		s := strconv.Itoa(int(p))
		if name := wellKnownPorts[p]; name != "" {
			s += " (" + name + ")"
		}
		odd = append(odd, s)
	}
	if len(odd) == 0 || f.Firewall.Backend == "none" {
		return nil
	}
	return []Warning{f.warning("ban.sasl.ports", "%s: not a port where mail passwords are used (25, 465, 587, IMAP, POP3, ManageSieve); a client banned for SMTP AUTH failures also loses %s",
		strings.Join(odd, ", "), map[bool]string{true: "it", false: "them"}[len(odd) == 1])}
}

var wellKnownPorts = map[uint16]string{22: "SSH", 53: "DNS", 80: "HTTP", 443: "HTTPS", 110: "POP3", 143: "IMAP", 993: "IMAPS", 995: "POP3S", 4190: "ManageSieve"}

// listenWarnings: a policy listener on a non-loopback address is reachable
// from other hosts. Anyone allow_peers lets in can send forged requests,
// and each forged RCPT to an unknown user or from a listed client counts
// against the client address the request names.
func (f *File) listenWarnings() []Warning {
	var ws []Warning
	peers := make([]string, 0, len(f.Policy.AllowPeers))
	var open []string
	for _, p := range prefixes(f.Policy.AllowPeers) {
		if p.IsSingleIP() {
			peers = append(peers, p.Addr().String())
		} else {
			peers = append(peers, p.String())
		}
		if broad(p) {
			open = append(open, p.String())
		}
	}
	for _, l := range f.Policy.Listen {
		if strings.HasPrefix(l, "unix:") {
			continue
		}
		host, _, err := net.SplitHostPort(strings.TrimPrefix(l, "inet:"))
		if err != nil {
			continue // validate reports it
		}
		ip, err := netip.ParseAddr(host)
		if err != nil || ip.Unmap().IsLoopback() {
			continue
		}
		where := "on " + ip.String()
		if ip.IsUnspecified() {
			where = "on every address of this host"
		}
		msg := fmt.Sprintf("%q listens %s, not only on loopback: other hosts can reach the policy service; allow_peers (%s) still decides who is served", l, where, strings.Join(peers, ", "))
		if len(open) > 0 {
			msg += fmt.Sprintf(", and %s lets in almost anyone, who could then get addresses banned with forged policy requests", strings.Join(open, ", "))
		}
		ws = append(ws, f.warning("policy.listen", "%s", msg))
	}
	return ws
}
