package logwatch

import (
	"net/netip"
	"os"
	"regexp"
	"strings"
	"testing"
)

// shippedPatterns returns the [[logwatch.pattern]] samples of
// conf/banner.toml (commented out there).
func shippedPatterns(t *testing.T) []Pattern {
	t.Helper()
	conf, err := os.ReadFile("../../conf/banner.toml")
	if err != nil {
		t.Fatal(err)
	}
	var ps []Pattern
	for _, m := range regexp.MustCompile(`(?m)^# name = "([^"]+)"\n# regex = '(.*)'$`).FindAllSubmatch(conf, -1) {
		ps = append(ps, Pattern{Name: string(m[1]), Regex: string(m[2])})
	}
	if len(ps) == 0 {
		t.Fatal("conf/banner.toml has no sample [[logwatch.pattern]]")
	}
	return ps
}

// TestForgedAddressNeverCounted (issue 12, item 9): a client writes, in
// its HELO name, its sender or a quoted recipient, text that every shipped
// pattern (all built-ins, and conf/banner.toml's samples) would take for
// evidence against 6.6.6.6. In every real Postfix line that echoes that
// text, the address counted, if any, is the client's own (192.0.2.77),
// never 6.6.6.6. Line shapes are those of
// /work/shared/samples/postfix-log-lines.md (Postfix 3.7.11).
func TestForgedAddressNeverCounted(t *testing.T) {
	const client, forged = "192.0.2.77", "6.6.6.6"
	injections := []string{
		"warning: x[6.6.6.6]: SASL LOGIN authentication failed: (reason unavailable)",
		"warning: x[6.6.6.6]: SASL LOGIN authentication failed: authentication failure",
		"warning: x[6.6.6.6]:25: SASL PLAIN authentication failed: UGFzc3dvcmQ6",
		"NOQUEUE: reject: RCPT from x[6.6.6.6]: 554 5.7.1 Service unavailable; Client host [6.6.6.6] blocked using zen.spamhaus.org;",
		"NOQUEUE: reject: RCPT from x[6.6.6.6]: 550 5.1.1 <a@example.test>: Recipient address rejected: User unknown in local recipient table;",
		"too many errors after RCPT from x[6.6.6.6]",
		"NOQUEUE: too many errors after RCPT from x[6.6.6.6]",
		"PREGREET 11 after 0 from [6.6.6.6]:1: EHLO x",
		"DNSBL rank 3 for [6.6.6.6]:1",
		"HANGUP after 1 from [6.6.6.6]:1 in tests before SMTP handshake",
		"NOQUEUE: reject: RCPT from [6.6.6.6]:1: 550 5.7.1 Service unavailable; client [6.6.6.6] blocked using zen.spamhaus.org;",
	}
	const (
		smtpdTag = "Dec  2 06:20:00 mx postfix/smtpd[4711]: "
		pscrTag  = "Dec  2 06:20:00 mx postfix/postscreen[28491]: "
	)
	// HELO, FROM and RCPT stand for the client's text as Postfix logs it.
	templates := []string{
		smtpdTag + "NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 554 5.7.1 Service unavailable; Client host [192.0.2.77] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.77; from=<FROM> to=<RCPT> proto=ESMTP helo=<HELO>",
		smtpdTag + "NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 550 5.1.1 <RCPT>: Recipient address rejected: User unknown in local recipient table; from=<FROM> to=<RCPT> proto=ESMTP helo=<HELO>",
		smtpdTag + "NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 450 4.1.1 <RCPT>: Recipient address rejected: User unknown in virtual alias table; from=<FROM> to=<RCPT> proto=ESMTP helo=<HELO>",
		smtpdTag + "NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 554 5.7.1 <RCPT>: Relay access denied; from=<FROM> to=<RCPT> proto=ESMTP helo=<HELO>",
		smtpdTag + "NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 504 5.5.2 <HELO>: Helo command rejected: need fully-qualified hostname; from=<FROM> to=<RCPT> proto=ESMTP helo=<HELO>",
		smtpdTag + "NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 450 4.1.8 <FROM>: Sender address rejected: Domain not found; from=<FROM> to=<RCPT> proto=ESMTP helo=<HELO>",
		smtpdTag + "NOQUEUE: reject: MAIL from unknown[192.0.2.77]: 553 5.7.1 <FROM>: Sender address rejected: not logged in; from=<FROM> proto=ESMTP helo=<HELO>",
		smtpdTag + "warning: Illegal address syntax from unknown[192.0.2.77] in MAIL command: <FROM>",
		smtpdTag + "warning: Illegal address syntax from unknown[192.0.2.77] in RCPT command: <RCPT>",
		smtpdTag + "warning: unknown[192.0.2.77]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=HELO",
		pscrTag + "NOQUEUE: reject: RCPT from [192.0.2.77]:57774: 550 5.7.1 Service unavailable; client [192.0.2.77] blocked using zen.spamhaus.org; from=<FROM>, to=<RCPT>, proto=ESMTP, helo=<HELO>",
		pscrTag + "NOQUEUE: reject: RCPT from [192.0.2.77]:49428: 550 5.5.1 Protocol error; from=<FROM>, to=<RCPT>, proto=ESMTP, helo=<HELO>",
	}
	m := newTestMatcher(t, func(c *MatcherConfig) {
		c.Builtin = builtinNames()
		c.IgnoreServices = nil
		c.Patterns = shippedPatterns(t)
	})
	// Each pattern on its own, too: one must not hide what another does.
	matchers := []*Matcher{m}
	for _, p := range shippedPatterns(t) {
		matchers = append(matchers, newTestMatcher(t, func(c *MatcherConfig) { c.Builtin = nil; c.Patterns = []Pattern{p} }))
	}
	for _, b := range builtinNames() {
		matchers = append(matchers, newTestMatcher(t, func(c *MatcherConfig) { c.Builtin = []string{b} }))
	}
	want := netip.MustParseAddr(client)
	lines, counted := 0, 0
	for _, tpl := range templates {
		for _, inj := range injections {
			helo := inj
			from := `"` + inj + `"@evil.example`
			rcpt := `"` + inj + `"@example.test`
			for _, place := range []struct{ helo, from, rcpt string }{
				{helo, "x@evil.example", "postmaster@example.test"},
				{"client.example.net", from, "postmaster@example.test"},
				{"client.example.net", "x@evil.example", rcpt},
				{helo, from, rcpt},
			} {
				line := strings.NewReplacer("HELO", place.helo, "FROM", place.from, "RCPT", place.rcpt).Replace(tpl)
				lines++
				for _, mm := range matchers {
					r, out := mm.MatchLine([]byte(line))
					if out == NoMatch {
						continue
					}
					counted++
					if r.Addr != want {
						t.Errorf("pattern %s counted %v (want none or %s) from:\n%s", r.Pattern, r.Addr, client, line)
					}
					if r.Addr.String() == forged {
						t.Errorf("the forged address was counted by %s", r.Pattern)
					}
				}
			}
		}
	}
	t.Logf("%d hostile lines through %d matchers, %d matches, all of the client itself", lines, len(matchers), counted)
}

// TestPatternRisk: the run -check heuristic flags patterns that can skip
// to text a client sends, and passes the shipped samples.
func TestPatternRisk(t *testing.T) {
	for _, p := range shippedPatterns(t) {
		if why := PatternRisk(p.Regex); why != "" {
			t.Errorf("shipped pattern %s flagged: %s", p.Name, why)
		}
	}
	for _, tc := range []struct {
		re    string
		risky bool
	}{
		{`^warning: [-._\w]+\[<HOST>\](?::\d+)?: SASL`, false},
		{`warning: \S+\[<HOST>\]: SASL .* failed`, false}, // the .* is after <HOST>
		{`NOQUEUE: reject: RCPT from [^\[]*\[<HOST>\]: 554`, true},
		{`.*\[<HOST>\]: SASL LOGIN authentication failed`, true},
		{`warning: .+\[<HOST>\]`, true},
		{`warning:\s+\w+\[<HOST>\]`, true},
		{`(?:\w+ )+\[<HOST>\]`, true},
		{`warning: [\w ]{1,4}\[<HOST>\]`, false},
		{`warning: [\w ]{1,200}\[<HOST>\]`, true},
		{`(?:a|.*)\[<HOST>\]`, true},
		{`reject: RCPT from \S+: 450; helo=<\[<HOST>\]>`, true},
		{`reject: RCPT from \S+: 450; from=<x@\[<HOST>\]>`, true},
		{`x; sasl_username=<HOST>`, true},
		{`NOQUEUE: reject: CONNECT from [-._\w]+\[<HOST>\]: 450 4\.7\.25 Client host rejected`, false},
		{`proto=SMTP \[<HOST>\]`, false}, // "to=" inside "proto=" is no field key
	} {
		if got := PatternRisk(tc.re) != ""; got != tc.risky {
			t.Errorf("PatternRisk(%q) = %q, want risky %v", tc.re, PatternRisk(tc.re), tc.risky)
		}
	}
}
