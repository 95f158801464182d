package logwatch

import (
	"os"
	"regexp"
	"testing"
	"time"
)

// TestSampleSASLPattern keeps the SASL example in conf/banner.toml honest:
// against fail2ban's own SASL test lines (fail2ban/tests/files/logs/postfix,
// "match: true" ones, normal mode) it finds the same host, and it leaves
// alone the failures that are no evidence of password guessing.
func TestSampleSASLPattern(t *testing.T) {
	conf, err := os.ReadFile("../../conf/banner.toml")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^# name = "sasl"\n# regex = '(.*)'$`).FindSubmatch(conf)
	if m == nil {
		t.Fatal(`conf/banner.toml has no commented [[logwatch.pattern]] named "sasl" with a regex line after it`)
	}
	matcher, err := NewMatcher(MatcherConfig{
		Patterns: []Pattern{{Name: "sasl", Regex: string(m[1])}},
		Location: time.UTC,
		Now:      func() time.Time { return time.Date(2005, 8, 14, 0, 0, 0, 0, time.UTC) },
	})
	if err != nil {
		t.Fatalf("the sample pattern does not compile: %v", err)
	}
	for _, tc := range []struct {
		line string
		host string // "" = no match
	}{
		{"Dec  2 22:24:22 hel postfix/smtpd[7676]: warning: 114-44-142-233.dynamic.hinet.net[114.44.142.233]: SASL CRAM-MD5 authentication failed: PDc3OTEwNTkyNTEyMzA2NDIuMTIyODI1MzA2MUBoZWw+", "114.44.142.233"},
		{"Mar 10 13:33:30 gandalf postfix/smtpd[3937]: warning: HOSTNAME[1.1.1.1]: SASL LOGIN authentication failed: authentication failure", "1.1.1.1"},
		{"Sep  6 00:44:56 trianon postfix/submission/smtpd[11538]: warning: unknown[82.221.106.233]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", "82.221.106.233"},
		{"Sep  6 00:44:57 trianon postfix/submission/smtpd[11538]: warning: unknown[82.221.106.233]: SASL login authentication failed: UGFzc3dvcmQ6", "82.221.106.233"},
		{"Jan 29 08:11:45 mail postfix/smtpd[10752]: warning: unknown[1.1.1.1]: SASL LOGIN authentication failed: Password:", "1.1.1.1"},
		{"Jan 29 08:11:45 mail postfix-incoming/smtpd[10752]: warning: unknown[1.1.1.1]: SASL LOGIN authentication failed: Password:", "1.1.1.1"},
		{"Apr 12 02:24:11 xxx postfix/smtps/smtpd[42]: warning: astra4139.startdedicated.de[62.138.2.143]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", "62.138.2.143"},
		{"Aug 3 15:30:49 ksusha postfix/smtpd[17041]: warning: mail.foldsandwalker.com[98.191.84.74]: SASL Plain authentication failed:", "98.191.84.74"},
		{"Aug 4 16:47:52 mail3 postfix/smtpd[31152]: warning: unknown[192.0.2.237]:55729: SASL LOGIN authentication failed: authentication failure", "192.0.2.237"},
		{"Nov  4 09:11:01 mail postfix/submission/smtpd[27133]: warning: unknown[192.0.2.150]: SASL PLAIN authentication failed:", "192.0.2.150"},
		{"Nov  4 09:11:01 mail postfix/submission/smtpd[27133]: warning: unknown[192.0.2.152]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=admin", "192.0.2.152"},
		{"Aug  1 10:00:00 mail postfix/smtpd[1]: warning: unknown[2001:db8::5]: SASL DIGEST-MD5 authentication failed: authentication failure", "2001:db8::5"},
		// fail2ban "match: false": the auth server is down, or (normal
		// mode) a client trying a mechanism the server does not offer.
		{"Feb  3 08:29:28 mail postfix/smtpd[21022]: warning: unknown[1.1.1.1]: SASL LOGIN authentication failed: Connection lost to authentication server", ""},
		{"Jan 14 16:18:16 xxx postfix/smtpd[14933]: warning: host[192.0.2.5]: SASL CRAM-MD5 authentication failed: Invalid authentication mechanism", ""},
		// A name in the brackets is never a host; nor is text after it.
		{"Aug  1 10:00:00 mail postfix/smtpd[1]: warning: unknown[example.com]: SASL LOGIN authentication failed: authentication failure", ""},
		{"Aug  1 10:00:00 mail postfix/smtpd[1]: warning: unknown[192.0.2.9]: SASL LOGIN authentication failed: authentication failure; 6.6.6.6", ""},
	} {
		got, outcome := matcher.MatchLine([]byte(tc.line))
		switch {
		case tc.host == "" && outcome == Matched:
			t.Errorf("matched %v, want no match:\n%s", got.Addr, tc.line)
		case tc.host != "" && (outcome != Matched || got.Addr.String() != tc.host):
			t.Errorf("outcome %v, host %v; want %s:\n%s", outcome, got.Addr, tc.host, tc.line)
		}
	}
}
