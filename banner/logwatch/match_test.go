package logwatch

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/internal/testenv"
)

var testNow = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

func newTestMatcher(t testing.TB, mutate func(*MatcherConfig)) *Matcher {
	t.Helper()
	cfg := DefaultMatcherConfig()
	cfg.Location = time.UTC
	cfg.Now = func() time.Time { return testNow }
	if mutate != nil {
		mutate(&cfg)
	}
	m, err := NewMatcher(cfg)
	if err != nil {
		t.Fatalf("NewMatcher: %v", err)
	}
	return m
}

const (
	smtpd = "Nov 24 10:00:00 mx postfix/smtpd[1234]: "
	pscr  = "Nov 24 10:00:00 mx postfix/postscreen[28491]: "
)

type want struct {
	out     Outcome
	pattern string
	addr    string
	key     string
}

func check(t *testing.T, m *Matcher, line string, w want) {
	t.Helper()
	got, out := m.MatchLine([]byte(line))
	if out != w.out {
		t.Fatalf("outcome = %d, want %d (match %+v)\nline: %s", out, w.out, got, line)
	}
	if out == NoMatch {
		return
	}
	if got.Pattern != w.pattern || got.Addr != netip.MustParseAddr(w.addr) || got.Key != w.key {
		t.Fatalf("got pattern=%q addr=%v key=%q, want %q %v %q\nline: %s", got.Pattern, got.Addr, got.Key, w.pattern, w.addr, w.key, line)
	}
	if got.Line != strings.TrimRight(line, "\r\n") {
		t.Errorf("Line = %q", got.Line)
	}
}

// Lines from /work/shared/samples/postfix-log-lines.md (Postfix 3.7.11 live,
// unless noted), with a syslog prefix added.
func TestMatchSamples(t *testing.T) {
	m := newTestMatcher(t, nil)
	tail := "; from=<normal@sender.example> to=<alice@example.test> proto=ESMTP helo=<client.example.net>"
	cases := []struct {
		name string
		line string
		want want
	}{
		{"rbl", smtpd + "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using dnsbl.test; https://www.spamhaus.org/query/ip/127.0.0.1" + tail,
			want{Matched, "rbl", "127.0.0.1", "dnsbl.test"}},
		{"rbl open resolver error", smtpd + "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using dnsbl.test; Error: open resolver; https://check.spamhaus.org/returnc/pub/192.0.2.53/" + tail,
			want{RBLError, "rbl", "127.0.0.1", "dnsbl.test"}},
		{"rbl reject_warning is not a reject", smtpd + "NOQUEUE: reject_warning: RCPT from unknown[127.0.0.1]: 554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using dnsbl.test; Error: open resolver" + tail,
			want{out: NoMatch}},
		{"rbl 4xx queue id port ipv6", smtpd + "4XjQ7b2MNbz9vBF: reject: RCPT from mail.example.org[2001:db8::25]:40123: 450 4.7.1 Service unavailable; Client host [2001:db8::25] blocked using ZEN.example" + tail,
			want{Matched, "rbl", "2001:db8::25", "zen.example"}},
		{"rbl no enhanced status", smtpd + "NOQUEUE: reject: RCPT from x.example[192.0.2.7]: 554 Service unavailable; Client host [192.0.2.7] blocked using bl.example",
			want{Matched, "rbl", "192.0.2.7", "bl.example"}},
		{"unknown local", smtpd + "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <nosuchuser@example.test>: Recipient address rejected: User unknown in local recipient table; from=<normal@sender.example> to=<nosuchuser@example.test> proto=ESMTP helo=<client.example.net>",
			want{Matched, "unknown_user", "127.0.0.1", "nosuchuser@example.test"}},
		{"unknown virtual alias", smtpd + "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <nobody@valias.test>: Recipient address rejected: User unknown in virtual alias table" + tail,
			want{Matched, "unknown_user", "127.0.0.1", "nobody@valias.test"}},
		{"unknown relay", smtpd + "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <unknown@relay.test>: Recipient address rejected: User unknown in relay recipient table" + tail,
			want{Matched, "unknown_user", "127.0.0.1", "unknown@relay.test"}},
		{"unknown virtual mailbox, case folded", smtpd + "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <Bob@VMail.test>: Recipient address rejected: User unknown in virtual mailbox table" + tail,
			want{Matched, "unknown_user", "127.0.0.1", "bob@vmail.test"}},
		{"unknown 450", smtpd + "NOQUEUE: reject: RCPT from unknown[69.39.36.246]: 450 4.1.1 <iteal_1978@jortosh.com>: Recipient address rejected: User unknown in local recipient table; from=<> to=<iteal_1978@jortosh.com> proto=ESMTP helo=<mail.coafcu.org>",
			want{Matched, "unknown_user", "69.39.36.246", "iteal_1978@jortosh.com"}},
		{"unknown without table name", smtpd + "NOQUEUE: reject: RCPT from unknown[192.0.2.9]: 550 5.1.1 <x@example.test>: Recipient address rejected: User unknown; from=<> to=<x@example.test> proto=ESMTP helo=<h>",
			want{Matched, "unknown_user", "192.0.2.9", "x@example.test"}},
		{"unknown VRFY", smtpd + "NOQUEUE: reject: VRFY from unknown[192.0.2.9]: 550 5.1.1 <root@example.test>: Recipient address rejected: User unknown in local recipient table; to=<root@example.test> proto=SMTP",
			want{Matched, "unknown_user", "192.0.2.9", "root@example.test"}},
		{"unverified 450 is not unknown", smtpd + "NOQUEUE: reject: RCPT from unknown[192.0.2.9]: 450 4.1.1 <x@example.test>: Recipient address rejected: unverified address: host mx[192.0.2.1] said: 451 try later",
			want{out: NoMatch}},
		{"lookup failure", smtpd + "NOQUEUE: reject: RCPT from unknown[192.0.2.9]: 451 4.3.0 <x@example.test>: Temporary lookup failure" + tail, want{out: NoMatch}},
		{"relay denied", smtpd + "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <someone@elsewhere.example>: Relay access denied" + tail, want{out: NoMatch}},
		{"banner policy reject not rbl", smtpd + "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <alice@example.test>: Recipient address rejected: blocked by banner test; from=<reject@sender.example> to=<alice@example.test> proto=ESMTP helo=<h>",
			want{out: NoMatch}},
		{"banner policy reject quoting rbl text", smtpd + "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <alice@example.test>: Recipient address rejected: Service unavailable; Client host [127.0.0.1] blocked using zen.example" + tail,
			want{out: NoMatch}},
		{"policy defer", smtpd + "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 450 4.7.1 <alice@example.test>: Recipient address rejected: try later (banner test)" + tail, want{out: NoMatch}},
		{"policy warn", smtpd + "NOQUEUE: warn: RCPT from unknown[127.0.0.1]: banner warning text" + tail, want{out: NoMatch}},
		{"connect", smtpd + "connect from unknown[127.0.0.1]", want{out: NoMatch}},
		{"disconnect", smtpd + "disconnect from unknown[127.0.0.1] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4", want{out: NoMatch}},
		{"client=", smtpd + "E09FEBE209: client=unknown[127.0.0.1]", want{out: NoMatch}},
		{"lost connection", smtpd + "NOQUEUE: lost connection after CONNECT from unknown[192.0.2.25]", want{out: NoMatch}},
		{"cannot find hostname", smtpd + "NOQUEUE: reject: CONNECT from unknown[192.0.2.114]: 450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.114]; proto=SMTP", want{out: NoMatch}},
		{"sasl", smtpd + "warning: unknown[1.2.3.4]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", want{out: NoMatch}},
		{"too many errors", smtpd + "too many errors after RCPT from example.com[192.0.2.11]", want{Matched, "too_many_errors", "192.0.2.11", ""}},
		{"too many errors 3.10", smtpd + "NOQUEUE: too many errors after DATA from unknown[192.0.2.12]", want{Matched, "too_many_errors", "192.0.2.12", ""}},
		{"too many errors queue id", smtpd + "4XjQ7b2MNbz9vBF: too many errors after END-OF-MESSAGE from unknown[2001:db8::7]:555", want{Matched, "too_many_errors", "2001:db8::7", ""}},
		{"postscreen dnsbl", pscr + "NOQUEUE: reject: RCPT from [127.0.0.1]:57774: 550 5.7.1 Service unavailable; client [127.0.0.1] blocked using dnsbl.test; from=<normal@sender.example>, to=<alice@example.test>, proto=ESMTP, helo=<client.example.net>",
			want{Matched, "postscreen", "127.0.0.1", "dnsbl.test"}},
		{"postscreen pregreet", pscr + `PREGREET 21 after 0 from [127.0.0.1]:49428: EHLO zombie.example\r\n`, want{Matched, "postscreen", "127.0.0.1", "pregreet"}},
		{"postscreen pregreet v6", pscr + `PREGREET 14 after 0.08 from [2001:db8::2]:59415: EHLO ylmf-pc\r\n`, want{Matched, "postscreen", "2001:db8::2", "pregreet"}},
		{"postscreen rank off by default", pscr + "DNSBL rank 3 for [127.0.0.1]:57774", want{out: NoMatch}},
		{"postscreen hangup off by default", pscr + "HANGUP after 0.3 from [127.0.0.1]:37670 in tests before SMTP handshake", want{out: NoMatch}},
		{"postscreen protocol error", pscr + "NOQUEUE: reject: RCPT from [127.0.0.1]:49428: 550 5.5.1 Protocol error; from=<z@zombie.example>, to=<alice@example.test>, proto=ESMTP, helo=<zombie.example>", want{out: NoMatch}},
		{"postscreen connect", pscr + "CONNECT from [127.0.0.1]:57774 to [127.0.0.1]:25", want{out: NoMatch}},
		{"dnsblog", "Nov 24 10:00:00 mx postfix/dnsblog[28492]: addr 127.0.0.1 listed by domain dnsbl.test as 127.0.0.2", want{out: NoMatch}},
		{"rbl lookup error", smtpd + "warning: 173.216.85.209.zen.spamhaus.org: RBL lookup error: Host or domain name not found. Name service error for name=173.216.85.209.zen.spamhaus.org type=A: Host not found, try again", want{out: NoMatch}},
		{"multi-instance submission (ignored service)", "Nov 24 10:00:00 mx postfix-in/submission/smtpd[99]: NOQUEUE: reject: RCPT from a.example[192.0.2.3]: 554 5.7.1 Service unavailable; Client host [192.0.2.3] blocked using bl.example",
			want{IgnoredService, "rbl", "192.0.2.3", "bl.example"}},
		{"multi-instance port 25", "Nov 24 10:00:00 mx postfix-in/smtpd[99]: NOQUEUE: reject: RCPT from a.example[192.0.2.3]: 554 5.7.1 Service unavailable; Client host [192.0.2.3] blocked using bl.example",
			want{Matched, "rbl", "192.0.2.3", "bl.example"}},
		{"smtp client not smtpd", "Nov 24 10:00:00 mx postfix/smtp[99]: NOQUEUE: reject: RCPT from a.example[192.0.2.3]: 554 5.7.1 Service unavailable; Client host [192.0.2.3] blocked using bl.example",
			want{out: NoMatch}},
		{"rfc3339", "2026-11-24T10:00:00.123456+01:00 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from a[192.0.2.4]: 554 5.7.1 Service unavailable; Client host [192.0.2.4] blocked using bl.example",
			want{Matched, "rbl", "192.0.2.4", "bl.example"}},
		{"short-iso", "2026-11-24T10:00:00+0100 mx postfix/smtpd[1]: too many errors after RCPT from a[192.0.2.5]", want{Matched, "too_many_errors", "192.0.2.5", ""}},
		{"crlf", smtpd + "too many errors after RCPT from a[192.0.2.6]\r\n", want{Matched, "too_many_errors", "192.0.2.6", ""}},
		{"short-precise", "Nov 24 10:00:00.123456 mx postfix/smtpd[1]: too many errors after RCPT from a[192.0.2.5]", want{Matched, "too_many_errors", "192.0.2.5", ""}},
		{"rfc3164 with PRI", "<22>Nov 24 10:00:00 mx postfix/smtpd[1]: too many errors after RCPT from a[192.0.2.5]", want{Matched, "too_many_errors", "192.0.2.5", ""}},
		{"rfc5424", "<22>1 2026-11-24T10:00:00.123+01:00 mx postfix/smtpd 1234 - - too many errors after RCPT from a[192.0.2.5]", want{Matched, "too_many_errors", "192.0.2.5", ""}},
		{"rfc5424 structured data", `<22>1 2026-11-24T10:00:00Z mx postfix/submission/smtpd 1 ID47 [a@1 k="v\"]x"][b@2] NOQUEUE: reject: RCPT from a[192.0.2.3]: 554 5.7.1 Service unavailable; Client host [192.0.2.3] blocked using bl.example`,
			want{IgnoredService, "rbl", "192.0.2.3", "bl.example"}},
		{"rfc5424 BOM", "<22>1 2026-11-24T10:00:00Z mx postfix/smtpd 1 - - \ufefftoo many errors after RCPT from a[192.0.2.5]", want{Matched, "too_many_errors", "192.0.2.5", ""}},
		{"rfc5424 no app", "<22>1 2026-11-24T10:00:00Z mx - 1 - - too many errors after RCPT from a[192.0.2.5]", want{out: NoMatch}},
		{"rfc5424 unclosed sd", "<22>1 2026-11-24T10:00:00Z mx postfix/smtpd 1 - [a k=\"v] too many errors after RCPT from a[192.0.2.5]", want{out: NoMatch}},
		{"pri only", "<22>", want{out: NoMatch}},
		{"bad pri", "<2a>Nov 24 10:00:00 mx postfix/smtpd[1]: too many errors after RCPT from a[192.0.2.5]", want{out: NoMatch}},
		{"nested pri", "<22><22>Nov 24 10:00:00 mx postfix/smtpd[1]: too many errors after RCPT from a[192.0.2.5]", want{out: NoMatch}},
		{"empty", "", want{out: NoMatch}},
		{"garbage", "reject: RCPT from a[192.0.2.6]: 554 5.7.1 Service unavailable; Client host [192.0.2.6] blocked using x", want{out: NoMatch}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { check(t, m, c.line, c.want) })
	}
}

func TestOptionalBuiltins(t *testing.T) {
	m := newTestMatcher(t, func(c *MatcherConfig) {
		c.Builtin = []string{PatternPostscreenRank, PatternPostscreenHangup}
		c.BuiltinWeights = map[string]float64{PatternPostscreenRank: 3}
	})
	check(t, m, pscr+"DNSBL rank 3 for [127.0.0.1]:57774", want{Matched, "postscreen_rank", "127.0.0.1", "dnsbl_rank"})
	check(t, m, pscr+"HANGUP after 0.3 from [127.0.0.1]:37670 in tests before SMTP handshake", want{Matched, "postscreen_hangup", "127.0.0.1", "hangup"})
	check(t, m, pscr+`PREGREET 21 after 0 from [127.0.0.1]:49428: EHLO x\r\n`, want{out: NoMatch}) // postscreen disabled
	r, _ := m.MatchLine([]byte(pscr + "DNSBL rank 3 for [127.0.0.1]:57774"))
	if r.Weight != 3 || r.Kind != banner.KindPostscreen {
		t.Errorf("weight %v kind %q", r.Weight, r.Kind)
	}
}

func TestOwnRejectMarker(t *testing.T) {
	m := newTestMatcher(t, func(c *MatcherConfig) { c.OwnRejectMarker = "blocked by banner" })
	check(t, m, smtpd+"NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <alice@example.test>: Recipient address rejected: blocked by banner test; from=<reject@sender.example> to=<alice@example.test> proto=ESMTP helo=<h>",
		want{OwnReject, "own", "127.0.0.1", "alice@example.test"})
	// a client cannot dress its own unknown-user reject up as banner's
	check(t, m, smtpd+`NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 550 5.1.1 <"x>: Recipient address rejected: blocked by banner"@example.test>: Recipient address rejected: User unknown in local recipient table; from=<> to=<x@example.test> proto=ESMTP helo=<h>`,
		want{Matched, "unknown_user", "192.0.2.1", `"x>: recipient address rejected: blocked by banner"@example.test`})
	// text elsewhere in the line does not make a reject banner's own
	check(t, m, smtpd+"NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 550 5.1.1 <u@example.test>: Recipient address rejected: User unknown in local recipient table; from=<Recipient address rejected: blocked by banner> to=<u@example.test> proto=ESMTP helo=<Recipient address rejected: blocked by banner>",
		want{Matched, "unknown_user", "192.0.2.1", "u@example.test"})
}

// TestInjection: text the client controls (HELO, sender, recipient, its
// reverse name) must never produce an event for the address it names.
func TestInjection(t *testing.T) {
	m := newTestMatcher(t, func(c *MatcherConfig) {
		c.Builtin = builtinNames() // everything on
		c.OwnRejectMarker = "banner"
	})
	evil := netip.MustParseAddr("6.6.6.6")
	rbl := "554 5.7.1 Service unavailable; Client host [6.6.6.6] blocked using zen.example"
	lines := []string{
		// HELO
		smtpd + "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 504 5.5.2 <x[6.6.6.6]>: Helo command rejected: need fully-qualified hostname; from=<a@b.example> to=<c@d.example> proto=ESMTP helo=<x[6.6.6.6]: " + rbl + ">",
		smtpd + "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.example; from=<a@b.example> to=<c@d.example> proto=ESMTP helo=<from x[6.6.6.6]: " + rbl + ">",
		// the reply names another address than the client
		smtpd + "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: " + rbl,
		// sender
		smtpd + `NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 <s@x.example>: Sender address rejected: Domain not found; from=<"reject: RCPT from x[6.6.6.6]: ` + rbl + `"@x.example> to=<c@d.example> proto=ESMTP helo=<h>`,
		// recipient
		smtpd + "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 550 5.1.1 <u@[6.6.6.6]>: Recipient address rejected: User unknown in local recipient table; from=<> to=<u@[6.6.6.6]> proto=ESMTP helo=<h>",
		smtpd + `NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 550 5.1.1 <"from x[6.6.6.6]: 554 5.7.1 Service unavailable; Client host [6.6.6.6] blocked using z"@d.example>: Recipient address rejected: User unknown in local recipient table`,
		// reverse name
		smtpd + "NOQUEUE: reject: RCPT from evil[6.6.6.6][192.0.2.1]: 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.example",
		smtpd + "NOQUEUE: reject: RCPT from evil[6.6.6.6]x[192.0.2.1]: 554 5.7.1 Service unavailable; Client host [6.6.6.6] blocked using zen.example",
		smtpd + "NOQUEUE: reject: RCPT from evil[6.6.6.6]: 554 5.7.1 Service unavailable; Client host [6.6.6.6] blocked using zen.example[192.0.2.1]: x",
		smtpd + "too many errors after RCPT from evil[6.6.6.6].example[192.0.2.1]",
		smtpd + "too many errors after RCPT from unknown[192.0.2.1] helo=<x[6.6.6.6]>",
		// other messages carrying the text
		smtpd + "warning: reject: RCPT from x[6.6.6.6]: " + rbl,
		smtpd + "warning: non-SMTP command from unknown[192.0.2.1]: NOQUEUE: reject: RCPT from x[6.6.6.6]: " + rbl,
		smtpd + "improper command pipelining after RCPT from unknown[192.0.2.1]: too many errors after RCPT from x[6.6.6.6]",
		pscr + `PREGREET 21 after 0 from [192.0.2.1]:49428: PREGREET 1 after 0 from [6.6.6.6]:1: \r\n`,
		pscr + `COMMAND PIPELINING from [192.0.2.1]:49428 after MAIL: NOQUEUE: reject: RCPT from [6.6.6.6]:1: 550 5.7.1 Service unavailable; client [6.6.6.6] blocked using z`,
		pscr + `NON-SMTP COMMAND from [192.0.2.1]:1 after CONNECT: HANGUP after 1 from [6.6.6.6]:1 in tests`,
		// another program's message containing a whole postfix line
		"Nov 24 10:00:00 mx sshd[1]: Invalid user Nov 24 10:00:00 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[6.6.6.6]: " + rbl,
		"Nov 24 10:00:00 mx kernel: x postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[6.6.6.6]: " + rbl,
		"Nov 24 10:00:00 postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[6.6.6.6]: " + rbl,
		// own-reject marker placed by the client
		smtpd + "NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 550 5.1.1 <u@d.example>: Recipient address rejected: User unknown; from=<x[6.6.6.6]: Recipient address rejected: banner>",
	}
	for i, l := range lines {
		r, out := m.MatchLine([]byte(l))
		if out != NoMatch && r.Addr == evil {
			t.Errorf("line %d yields %v for 6.6.6.6 (pattern %s)\n%s", i, out, r.Pattern, l)
		}
	}
}

func TestTimestamps(t *testing.T) {
	m := newTestMatcher(t, nil)
	msg := " mx postfix/smtpd[1]: too many errors after RCPT from a[192.0.2.5]"
	cet := time.FixedZone("", 3600)
	cases := []struct {
		ts   string
		want time.Time
		bad  bool
	}{
		{"Nov 24 10:00:00", time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC), false},
		{"Nov  4 10:00:00", time.Date(2026, 11, 4, 10, 0, 0, 0, time.UTC), false},
		{"Nov 4 10:00:00", time.Date(2026, 11, 4, 10, 0, 0, 0, time.UTC), false},
		{"Nov 25 11:59:59", time.Date(2026, 11, 25, 11, 59, 59, 0, time.UTC), false}, // within a day ahead: clock skew
		{"Dec 31 23:59:59", time.Date(2025, 12, 31, 23, 59, 59, 0, time.UTC), false}, // last year
		{"Jan  1 00:00:00", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), false},
		{"2026-11-24T10:00:00.123456+01:00", time.Date(2026, 11, 24, 10, 0, 0, 123456000, cet), false},
		{"2026-11-24T10:00:00+01:00", time.Date(2026, 11, 24, 10, 0, 0, 0, cet), false},
		{"2026-11-24T10:00:00+0100", time.Date(2026, 11, 24, 10, 0, 0, 0, cet), false},
		{"2026-11-24T10:00:00.123456+0100", time.Date(2026, 11, 24, 10, 0, 0, 123456000, cet), false},
		{"2026-11-24T10:00:00Z", time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC), false},
		{"Nov 24 10:00:00.123456", time.Date(2026, 11, 24, 10, 0, 0, 123456000, time.UTC), false}, // short-precise
		{"Nov  4 10:00:00.5", time.Date(2026, 11, 4, 10, 0, 0, 500000000, time.UTC), false},
		{"2026-13-24T10:00:00Z", testNow, true},
		{"Nov 24 25:00:00", testNow, true},
		{"Foo 24 10:00:00", testNow, true},
	}
	for _, c := range cases {
		t.Run(c.ts, func(t *testing.T) {
			r, out := m.MatchLine([]byte(c.ts + msg))
			if out != Matched {
				t.Fatalf("no match")
			}
			if !r.Time.Equal(c.want) || r.BadTime != c.bad {
				t.Errorf("time %v bad %v, want %v %v", r.Time, r.BadTime, c.want, c.bad)
			}
		})
	}
}

func TestAdminPatterns(t *testing.T) {
	m := newTestMatcher(t, func(c *MatcherConfig) {
		c.Patterns = []Pattern{
			{Name: "sasl", Regex: `^warning: [-._\w]+\[<HOST>\](?::\d+)?: SASL (?:LOGIN|PLAIN) authentication failed`, Weight: 2},
			{Name: "relay", Regex: `NOQUEUE: reject: RCPT from [-._\w]+\[<HOST>\]: 554 5\.7\.1 <[^>]*>: Relay access denied`, Kind: "relay"},
		}
	})
	r, out := m.MatchLine([]byte(smtpd + "warning: unknown[192.0.2.150]:55729: SASL LOGIN authentication failed: UGFzc3dvcmQ6"))
	if out != Matched || r.Pattern != "sasl" || r.Addr != netip.MustParseAddr("192.0.2.150") || r.Weight != 2 || r.Kind != banner.KindPattern {
		t.Errorf("sasl: %v %+v", out, r)
	}
	r, out = m.MatchLine([]byte(smtpd + "warning: unknown[2001:db8::1]: SASL PLAIN authentication failed:"))
	if out != Matched || r.Addr != netip.MustParseAddr("2001:db8::1") {
		t.Errorf("sasl v6: %v %+v", out, r)
	}
	r, out = m.MatchLine([]byte(smtpd + "NOQUEUE: reject: RCPT from h.example[1.2.3.4]: 554 5.7.1 <smtp@example.com>: Relay access denied; from=<j@example.com>"))
	if out != Matched || r.Pattern != "relay" || r.Kind != "relay" || r.Weight != 1 || r.Addr != netip.MustParseAddr("1.2.3.4") {
		t.Errorf("relay: %v %+v", out, r)
	}
	// implicitly anchored: "midline" would match only from the middle
	m2 := newTestMatcher(t, func(c *MatcherConfig) {
		c.Patterns = []Pattern{{Name: "midline", Regex: `reject: RCPT from [-._\w]+\[<HOST>\]: 554`}}
	})
	if r, out := m2.MatchLine([]byte(smtpd + "NOQUEUE: reject: RCPT from h.example[1.2.3.4]: 554 5.7.1 <smtp@example.com>: Relay access denied")); out != NoMatch {
		t.Errorf("pattern matched from the middle of the message: %+v", r)
	}
	// names are never resolved: <HOST> does not match them
	if r, out := m.MatchLine([]byte(smtpd + "warning: unknown[mail.example.com]: SASL LOGIN authentication failed:")); out != NoMatch {
		t.Errorf("hostname matched: %+v", r)
	}
	// anchored at the message: the prefix is not part of the text
	if _, out := m.MatchLine([]byte(smtpd + "x warning: unknown[192.0.2.1]: SASL LOGIN authentication failed:")); out != NoMatch {
		t.Errorf("^ not anchored at the message")
	}
	// invalid address literal
	if r, out := m.MatchLine([]byte(smtpd + "warning: unknown[999.1.1.1]: SASL LOGIN authentication failed:")); out != NoMatch {
		t.Errorf("bad address matched: %+v", r)
	}
}

func TestMatcherConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		cfg  MatcherConfig
		want string
	}{
		{"unknown builtin", MatcherConfig{Builtin: []string{"rbl", "nope"}}, `builtin: unknown pattern "nope"`},
		{"unknown weight", MatcherConfig{BuiltinWeights: map[string]float64{"x": 1}}, `builtin_weights: unknown pattern "x"`},
		{"negative weight", MatcherConfig{BuiltinWeights: map[string]float64{"rbl": -1}}, `builtin_weights.rbl: must be >= 0`},
		{"no name", MatcherConfig{Patterns: []Pattern{{Regex: "<HOST>"}}}, "pattern[0].name: must not be empty"},
		{"no host", MatcherConfig{Patterns: []Pattern{{Name: "a", Regex: "foo"}}}, `pattern[0] ("a").regex: must contain <HOST> exactly once`},
		{"two hosts", MatcherConfig{Patterns: []Pattern{{Name: "a", Regex: "<HOST> <HOST>"}}}, `exactly once, found 2`},
		{"bad regex", MatcherConfig{Patterns: []Pattern{{Name: "sasl", Regex: "(<HOST>"}}}, `pattern[0] ("sasl").regex "(<HOST>": error parsing regexp`},
		{"reserved group", MatcherConfig{Patterns: []Pattern{{Name: "a", Regex: "(?P<host>x)<HOST>"}}}, `group name "host" is reserved`},
		{"duplicate", MatcherConfig{Patterns: []Pattern{{Name: "a", Regex: "<HOST>"}, {Name: "a", Regex: "<HOST>"}}}, `pattern[1] ("a").name: duplicate`},
		{"builtin name", MatcherConfig{Patterns: []Pattern{{Name: "rbl", Regex: "<HOST>"}}}, `pattern[0] ("rbl").name: duplicate or reserved`},
		{"negative", MatcherConfig{Patterns: []Pattern{{Name: "a", Regex: "<HOST>", Weight: -1}}}, `pattern[0] ("a").weight: must be >= 0`},
		{"empty service", MatcherConfig{IgnoreServices: []string{"submission", ""}}, `ignore_services: entry 1 ("")`},
		{"service with space", MatcherConfig{IgnoreServices: []string{"sub mission"}}, `ignore_services: entry 0 ("sub mission")`},
		{"whole tag", MatcherConfig{IgnoreServices: []string{"/submission/"}}, `ignore_services: entry 0`},
		{"syslog_name", MatcherConfig{IgnoreServices: []string{"postfix/submission"}}, `(for syslog_name=postfix/submission write "submission")`},
		{"instance syslog_name", MatcherConfig{IgnoreServices: []string{"postfix-out/smtps"}}, `write "smtps"`},
		{"service and program", MatcherConfig{IgnoreServices: []string{"submission/smtpd"}}, `ignore_services: entry 0 ("submission/smtpd"): want a master.cf service name`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := c.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
	if err := DefaultMatcherConfig().Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestMatchLineNoAlloc(t *testing.T) {
	m := newTestMatcher(t, nil)
	lines := [][]byte{
		[]byte(smtpd + "connect from unknown[192.0.2.1]"),
		[]byte(smtpd + "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 <someone@elsewhere.example>: Relay access denied; from=<a@b> to=<c@d> proto=ESMTP helo=<h>"),
		[]byte("Nov 24 10:00:00 mx postfix/qmgr[1]: 4XjQ7b2MNbz9vBF: from=<a@b.example>, size=1234, nrcpt=1 (queue active)"),
	}
	for _, l := range lines {
		if n := testing.AllocsPerRun(100, func() { m.MatchLine(l) }); n != 0 {
			t.Errorf("%d allocs for %s", int(n), l)
		}
	}
}

func FuzzMatchLine(f *testing.F) {
	seeds := []string{
		smtpd + "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using dnsbl.test; x",
		smtpd + "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 550 5.1.1 <nosuchuser@example.test>: Recipient address rejected: User unknown in local recipient table; from=<>",
		smtpd + `NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 550 5.1.1 <"a\"b>"@d>: Recipient address rejected: User unknown`,
		smtpd + "too many errors after RCPT from example.com[192.0.2.11]",
		pscr + "NOQUEUE: reject: RCPT from [127.0.0.1]:57774: 550 5.7.1 Service unavailable; client [127.0.0.1] blocked using dnsbl.test; from=<>",
		pscr + `PREGREET 21 after 0 from [127.0.0.1]:49428: EHLO zombie.example\r\n`,
		pscr + "DNSBL rank 3 for [2001:db8::1]:57774",
		pscr + "HANGUP after 0.3 from [127.0.0.1]:37670 in tests before SMTP handshake",
		"2026-11-24T10:00:00.123456+01:00 mx postfix/smtpd[1]: warning: unknown[192.0.2.1]: SASL LOGIN authentication failed:",
		"Nov 4 10:00:00 x y: z",
		"Nov 24 10:00:00.123456 mx postfix/smtpd[1]: too many errors after RCPT from a[192.0.2.5]",
		`<22>1 2026-11-24T10:00:00Z mx postfix/smtpd 1 ID [a@1 k="v\"]x"] too many errors after RCPT from a[192.0.2.5]`,
		"<13>Nov 24 10:00:00 mx postfix/smtpd[1]: x",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	m := newTestMatcher(f, func(c *MatcherConfig) {
		c.Builtin = builtinNames()
		c.OwnRejectMarker = "banner"
		c.Patterns = []Pattern{{Name: "sasl", Regex: `^warning: [-._\w]+\[<HOST>\]: SASL`}}
	})
	f.Fuzz(func(t *testing.T, line string) {
		r, out := m.MatchLine([]byte(line))
		if out == NoMatch {
			if r != (Match{}) {
				t.Fatalf("NoMatch with %+v", r)
			}
			return
		}
		if !r.Addr.IsValid() || r.Addr.Is4In6() || r.Addr.Zone() != "" {
			t.Fatalf("bad addr %v", r.Addr)
		}
		// the address is printed in the line, inside brackets for built-ins
		if r.Pattern != "sasl" && !strings.Contains(line, "["+r.Addr.String()+"]") &&
			!strings.Contains(strings.ToLower(line), "["+r.Addr.String()+"]") {
			// e.g. "[::FFFF:1.2.3.4]" or non-canonical spellings: re-parse
			if !strings.Contains(line, "[") {
				t.Fatalf("address %v not in line %q", r.Addr, line)
			}
		}
		if r.Pattern == "" || (out == Matched && r.Kind == "") || r.Line == "" {
			t.Fatalf("incomplete match %+v", r)
		}
		// deterministic
		r2, out2 := m.MatchLine([]byte(line))
		if !r2.Time.Equal(r.Time) {
			t.Fatalf("time not deterministic")
		}
		r2.Time = r.Time // a parsed zone offset is a new *Location each time
		if out2 != out || r2 != r {
			t.Fatalf("not deterministic")
		}
	})
}

// FuzzMatchRecord: a split entry (identifier, message) is classified as
// the syslog line made of it, whatever the two hold.
func FuzzMatchRecord(f *testing.F) {
	f.Add("postfix/smtpd", "NOQUEUE: reject: RCPT from unknown[127.0.0.1]: 554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using dnsbl.test; x")
	f.Add("postfix/submission/smtpd", "too many errors after RCPT from example.com[192.0.2.11]")
	f.Add("postfix/postscreen", "PREGREET 21 after 0 from [127.0.0.1]:49428: EHLO zombie.example")
	f.Add("postfix/smtpd", "warning: unknown[192.0.2.1]: SASL LOGIN authentication failed:")
	f.Add("", "x\n")
	m := newTestMatcher(f, func(c *MatcherConfig) {
		c.Builtin = builtinNames()
		c.OwnRejectMarker = "banner"
		c.Patterns = []Pattern{{Name: "sasl", Regex: `^warning: [-._\w]+\[<HOST>\]: SASL`}}
	})
	at := testNow.Add(-time.Hour)
	f.Fuzz(func(t *testing.T, ident, msg string) {
		r, out := m.MatchRecord(&Record{Identifier: []byte(ident), Time: at, Message: []byte(msg)})
		if out == NoMatch {
			if r != (Match{}) {
				t.Fatalf("NoMatch with %+v", r)
			}
		} else if !r.Addr.IsValid() || r.Pattern == "" || !r.Time.Equal(at) || r.BadTime || r.Line != ident+": "+string(trimEOL([]byte(msg))) {
			t.Fatalf("match %+v", r)
		}
		// the same as the syslog line, where one can be written
		if ident == "" || strings.ContainsAny(ident, " []\n\r") || strings.ContainsAny(msg, "\n\r") {
			return
		}
		lr, lout := m.MatchLine([]byte(at.Format(time.RFC3339) + " mx " + ident + ": " + msg))
		if lout != out || lr.Addr != r.Addr || lr.Pattern != r.Pattern || lr.Key != r.Key || lr.Reason != r.Reason {
			t.Fatalf("split %+v (%d), line %+v (%d)", r, out, lr, lout)
		}
	})
}

// TestIgnoreServices: matches from the submission/smtps services (the
// site's own users on ports 587 and 465, which banner's firewall does not
// close) are IgnoredService, for built-in and admin patterns alike; port 25
// smtpd, postscreen and multi-instance port-25 services are not. Tags and
// messages are those of /work/shared/samples/postfix-log-lines.md and
// fail2ban's Postfix test log.
func TestIgnoreServices(t *testing.T) {
	rbl := "NOQUEUE: reject: RCPT from unknown[192.0.2.10]: 554 5.7.1 Service unavailable; Client host [192.0.2.10] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.10; from=<u@example.net> to=<alice@example.test> proto=ESMTP helo=<pc>"
	unknown := "NOQUEUE: reject: RCPT from dsl.example.net[192.0.2.11]: 550 5.1.1 <nosuchuser@example.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<alice@example.test> to=<nosuchuser@example.test> proto=ESMTP helo=<laptop>"
	tooMany := "too many errors after AUTH from unknown[192.0.2.12]"
	own := "NOQUEUE: reject: RCPT from unknown[192.0.2.13]: 554 5.7.1 <alice@example.test>: Recipient address rejected: blocked by banner test; from=<x@example.net> to=<alice@example.test> proto=ESMTP helo=<x>"
	rblErr := "NOQUEUE: reject: RCPT from unknown[192.0.2.14]: 554 5.7.1 Service unavailable; Client host [192.0.2.14] blocked using zen.spamhaus.org; Error: open resolver; https://check.spamhaus.org/returnc/pub/192.0.2.53/; from=<x@example.net> to=<alice@example.test> proto=ESMTP helo=<x>"
	sasl := "warning: unknown[192.0.2.150]: SASL PLAIN authentication failed:"
	pregreet := "PREGREET 11 after 0.07 from [192.0.2.15]:61459: EHLO x\\r\\n"
	at := func(tag string) string { return "Nov 24 10:00:00 mail " + tag + ": " }
	m := newTestMatcher(t, func(c *MatcherConfig) {
		c.OwnRejectMarker = "blocked by banner"
		c.Patterns = []Pattern{{Name: "sasl", Regex: `^warning: [-._\w]+\[<HOST>\]: SASL (?:LOGIN|PLAIN) authentication failed`}}
	})
	cases := []struct {
		name string
		line string
		want want
	}{
		// ignored: Debian's and Postfix's stock master.cf set
		// syslog_name=postfix/submission, postfix/submissions, postfix/smtps
		{"submission unknown user", at("postfix/submission/smtpd[27133]") + unknown, want{IgnoredService, "unknown_user", "192.0.2.11", "nosuchuser@example.test"}},
		{"submissions rbl", at("postfix/submissions/smtpd[42]") + rbl, want{IgnoredService, "rbl", "192.0.2.10", "zen.spamhaus.org"}},
		{"smtps too many errors", at("postfix/smtps/smtpd[42]") + tooMany, want{IgnoredService, "too_many_errors", "192.0.2.12", ""}},
		{"multi-instance submission", at("postfix-smo/submission/smtpd[22427]") + unknown, want{IgnoredService, "unknown_user", "192.0.2.11", "nosuchuser@example.test"}},
		{"rsyslog timestamp submission", "2026-11-24T10:00:00.123456+01:00 mail postfix/submission/smtpd[1]: " + rbl, want{IgnoredService, "rbl", "192.0.2.10", "zen.spamhaus.org"}},
		{"admin pattern on submission", at("postfix/submission/smtpd[27133]") + sasl, want{IgnoredService, "sasl", "192.0.2.150", ""}},
		{"admin pattern on smtps", at("postfix/smtps/smtpd[42]") + "warning: astra4139.startdedicated.de[62.138.2.143]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", want{IgnoredService, "sasl", "62.138.2.143", ""}},
		// not ignored: port 25
		{"smtpd", at("postfix/smtpd[1234]") + unknown, want{Matched, "unknown_user", "192.0.2.11", "nosuchuser@example.test"}},
		{"multi-instance smtpd", at("postfix-incoming/smtpd[1574]") + rbl, want{Matched, "rbl", "192.0.2.10", "zen.spamhaus.org"}},
		{"port 25 service named smtp-25", at("postfix/smtp-25/smtpd[123]") + tooMany, want{Matched, "too_many_errors", "192.0.2.12", ""}},
		{"postscreen", at("postfix/postscreen[28491]") + pregreet, want{Matched, "postscreen", "192.0.2.15", "pregreet"}},
		{"admin pattern on smtpd", at("postfix/smtpd[1]") + sasl, want{Matched, "sasl", "192.0.2.150", ""}},
		{"admin pattern on multi-instance smtpd", at("postfix-incoming/smtpd[10752]") + "warning: unknown[1.1.1.1]: SASL LOGIN authentication failed: Password:", want{Matched, "sasl", "1.1.1.1", ""}},
		{"admin pattern, no syslog prefix", sasl, want{Matched, "sasl", "192.0.2.150", ""}},
		// the service must sit in a Postfix tag
		{"not a postfix tag", at("postfixer/submission/smtpd[1]") + unknown, want{Matched, "unknown_user", "192.0.2.11", "nosuchuser@example.test"}},
		{"service as instance name", at("postfix-submission/smtpd[1]") + unknown, want{Matched, "unknown_user", "192.0.2.11", "nosuchuser@example.test"}},
		// other outcomes are what they were: not events either way
		{"own reject on submission", at("postfix/submission/smtpd[1]") + own, want{OwnReject, "own", "192.0.2.13", "alice@example.test"}},
		{"rbl error on submission", at("postfix/submission/smtpd[1]") + rblErr, want{RBLError, "rbl", "192.0.2.14", "zen.spamhaus.org"}},
		{"non-matching submission line", at("postfix/submission/smtpd[1]") + "connect from unknown[192.0.2.16]", want{out: NoMatch}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { check(t, m, c.line, c.want) })
	}

	// nil (ignore_services = []) ignores nothing; a list ignores only its
	// services
	none := newTestMatcher(t, func(c *MatcherConfig) { c.IgnoreServices = nil })
	check(t, none, at("postfix/submission/smtpd[1]")+unknown, want{Matched, "unknown_user", "192.0.2.11", "nosuchuser@example.test"})
	some := newTestMatcher(t, func(c *MatcherConfig) { c.IgnoreServices = []string{"smtp-25"} })
	check(t, some, at("postfix/smtps/smtpd[1]")+tooMany, want{Matched, "too_many_errors", "192.0.2.12", ""})
	check(t, some, at("postfix/smtp-25/smtpd[1]")+tooMany, want{IgnoredService, "too_many_errors", "192.0.2.12", ""})
	folded := newTestMatcher(t, func(c *MatcherConfig) { c.IgnoreServices = []string{"Submission"} })
	check(t, folded, at("postfix/submission/smtpd[1]")+tooMany, want{IgnoredService, "too_many_errors", "192.0.2.12", ""})

	// counted, not emitted, by Analyze
	in := at("postfix/submission/smtpd[1]") + unknown + "\n" + at("postfix/smtpd[1]") + unknown + "\n"
	var emitted int
	rep, err := Analyze(strings.NewReader(in), m, func(Match) { emitted++ })
	if err != nil {
		t.Fatal(err)
	}
	if rep.IgnoredService != 1 || rep.Matched != 1 || emitted != 1 {
		t.Errorf("Analyze: %d ignored, %d matched, %d emitted; want 1, 1, 1", rep.IgnoredService, rep.Matched, emitted)
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "matches from ignored services:  1") {
		t.Errorf("report text (%v):\n%s", err, text.String())
	}
}

func TestSyslogService(t *testing.T) {
	for prog, want := range map[string]string{
		"postfix/submission/smtpd":     "submission",
		"postfix/submissions/smtpd":    "submissions",
		"postfix/smtps/smtpd":          "smtps",
		"postfix-out/submission/smtpd": "submission",
		"postfix/a/b/smtpd":            "a/b",
		"postfix/smtpd":                "",
		"postfix-in/postscreen":        "",
		"postfix//smtpd":               "",
		"postfix":                      "",
		"postfixx/submission/smtpd":    "",
		"sendmail/submission/smtpd":    "",
		"/submission/smtpd":            "",
	} {
		s, ok := service([]byte(prog))
		if string(s) != want || ok != (want != "") {
			t.Errorf("service(%q) = %q, %v; want %q", prog, s, ok, want)
		}
	}
}

// TestMatchRecord: an entry split into identifier and message (as the
// journal delivers it) is classified as the syslog line it came from, for
// every line of testdata/maillog/sample.log (top level), with the built-in and with admin
// patterns; Line is rebuilt as "IDENTIFIER[PID]: MESSAGE", and an entry
// without a time has a bad timestamp.
func TestMatchRecord(t *testing.T) {
	data, err := os.ReadFile(testenv.Fixture(t, "maillog/sample.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	lines = append(lines, "Nov 24 10:00:00 mx postfix/submission/smtpd[3]: too many errors after RCPT from a[192.0.2.5]")
	matchers := map[string]*Matcher{
		"builtin": newTestMatcher(t, nil),
		"admin": newTestMatcher(t, func(c *MatcherConfig) {
			c.Builtin = nil
			c.Patterns = []Pattern{{Name: "conn", Regex: `^connect from \S+\[<HOST>\]`}}
		}),
	}
	for name, m := range matchers {
		t.Run(name, func(t *testing.T) {
			matched := 0
			for _, line := range lines {
				sl, ok := parseSyslog([]byte(line))
				if !ok {
					continue
				}
				ts, ok := parseTimestamp(sl.ts, testNow, time.UTC)
				if !ok {
					t.Fatalf("timestamp of %q", line)
				}
				want, wantOut := m.MatchLine([]byte(line))
				got, out := m.MatchRecord(&Record{Identifier: sl.prog, PID: 42, Time: ts, Message: sl.msg})
				if out != wantOut || got.Addr != want.Addr || got.Pattern != want.Pattern || got.Kind != want.Kind ||
					got.Key != want.Key || got.Weight != want.Weight || got.Reason != want.Reason || !got.Time.Equal(want.Time) || got.BadTime {
					t.Fatalf("split %+v (%d), line %+v (%d)\nline: %s", got, out, want, wantOut, line)
				}
				if out == NoMatch {
					continue
				}
				matched++
				if wl := string(sl.prog) + "[42]: " + string(sl.msg); got.Line != wl {
					t.Errorf("Line = %q, want %q", got.Line, wl)
				}
			}
			if matched == 0 {
				t.Fatal("nothing matched")
			}
		})
	}
	m := newTestMatcher(t, nil)
	got, out := m.MatchRecord(&Record{Identifier: []byte("postfix/smtpd"), Message: []byte("too many errors after RCPT from a[192.0.2.5]\n")})
	if out != Matched || !got.BadTime || !got.Time.Equal(testNow) || got.Line != "postfix/smtpd: too many errors after RCPT from a[192.0.2.5]" {
		t.Errorf("no time, no PID: %+v (%d)", got, out)
	}
	line := smtpd + "too many errors after RCPT from a[192.0.2.5]"
	if got, out := m.MatchRecord(&Record{Line: []byte(line)}); out != Matched || got.Line != line {
		t.Errorf("raw line: %+v (%d)", got, out)
	}
}
