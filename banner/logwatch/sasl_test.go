package logwatch

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banner-mta/banner/banner"
)

func saslMatcher(t testing.TB) *Matcher {
	return newTestMatcher(t, func(c *MatcherConfig) {
		c.Builtin = append(DefaultBuiltins(), PatternSASL, PatternSASLDisconnect)
	})
}

func TestSASLPatterns(t *testing.T) {
	m := saslMatcher(t)
	const smtpd = "Nov 24 10:00:00 mx postfix/smtpd[1234]: "
	const sub = "Nov 24 10:00:00 mx postfix/submission/smtpd[1234]: "
	for _, tc := range []struct {
		name, line, pattern, addr string // pattern "" = no match
	}{
		{"login base64", smtpd + "warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", PatternSASL, "192.0.2.1"},
		{"plain empty", smtpd + "warning: unknown[192.0.2.2]: SASL PLAIN authentication failed:", PatternSASL, "192.0.2.2"},
		{"cyrus", smtpd + "warning: host.example[192.0.2.3]: SASL LOGIN authentication failed: authentication failure", PatternSASL, "192.0.2.3"},
		{"port", smtpd + "warning: unknown[192.0.2.4]:55729: SASL LOGIN authentication failed: authentication failure", PatternSASL, "192.0.2.4"},
		{"ipv6", smtpd + "warning: unknown[2001:db8::5]: SASL CRAM-MD5 authentication failed: PDc3OTEwNTkyNTEyMzA2NDIuMTIyODI1MzA2MUBoZWw+", PatternSASL, "2001:db8::5"},
		{"username", smtpd + "warning: unknown[192.0.2.6]: SASL LOGIN authentication failed: (reason unavailable), sasl_username=admin", PatternSASL, "192.0.2.6"},
		{"submission counts", sub + "warning: unknown[192.0.2.7]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", PatternSASL, "192.0.2.7"},
		{"auth server down", smtpd + "warning: unknown[192.0.2.8]: SASL LOGIN authentication failed: Connection lost to authentication server", "", ""},
		{"bad mechanism", smtpd + "warning: host[192.0.2.9]: SASL CRAM-MD5 authentication failed: Invalid authentication mechanism", "", ""},
		{"forged name", smtpd + "warning: x[6.6.6.6]: SASL[192.0.2.10]: SASL LOGIN authentication failed:", "", ""},
		{"other warning", smtpd + "warning: unknown[192.0.2.11]: SASL LOGIN authentication aborted", "", ""},
		{"disconnect", smtpd + "disconnect from unknown[192.0.2.12] ehlo=1 auth=0/3 rset=1 quit=1 commands=3/6", PatternSASLDisconnect, "192.0.2.12"},
		{"disconnect port", smtpd + "disconnect from unknown[192.0.2.13]:4242 helo=1 auth=0/1 quit=1 commands=2/3", PatternSASLDisconnect, "192.0.2.13"},
		{"disconnect auth ok", smtpd + "disconnect from unknown[192.0.2.14] ehlo=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=6", "", ""},
		{"disconnect auth 1/2", smtpd + "disconnect from unknown[192.0.2.15] ehlo=1 auth=1/2 quit=1 commands=3/4", "", ""},
		{"disconnect no auth", smtpd + "disconnect from unknown[192.0.2.16] ehlo=1 quit=1 commands=2", "", ""},
		// Postfix 3.7.11 with Cyrus SASL (TestSASLBruteForceWithPostfix).
		{"postfix 3.7 cyrus", "Dec 02 16:02:25 mx postfix/smtpd[27034]: warning: unknown[198.51.100.30]: SASL PLAIN authentication failed: authentication failure, sasl_username=admin", PatternSASL, "198.51.100.30"},
		{"postfix 3.7 cyrus no client", "Dec 02 16:02:25 mx postfix/smtpd[27034]: warning: SASL authentication failure: Password verification failed", "", ""},
		{"postfix 3.7 disconnect", "Dec 02 16:02:25 mx postfix/smtpd[27034]: disconnect from unknown[198.51.100.30] ehlo=2 xclient=0/1 auth=0/2 quit=1 commands=3/6", PatternSASLDisconnect, "198.51.100.30"},
		{"disconnect auth=0/0", smtpd + "disconnect from unknown[192.0.2.17] auth=0/0 commands=0/0", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, out := m.MatchLine([]byte(tc.line))
			if tc.pattern == "" {
				if out == Matched && r.Kind == banner.KindSASL {
					t.Fatalf("matched %s %v, want no SASL match", r.Pattern, r.Addr)
				}
				return
			}
			if out != Matched || r.Pattern != tc.pattern || r.Kind != banner.KindSASL || r.Addr != netip.MustParseAddr(tc.addr) {
				t.Fatalf("got %v %+v, want %s %s", out, r, tc.pattern, tc.addr)
			}
		})
	}
	// Off by default.
	def := newTestMatcher(t, nil)
	if _, out := def.MatchLine([]byte(smtpd + "warning: unknown[192.0.2.1]: SASL LOGIN authentication failed: UGFzc3dvcmQ6")); out != NoMatch {
		t.Errorf("default matcher: %v, want NoMatch (sasl_auth is opt-in)", out)
	}
}

// TestSASLFail2banCorpus: fail2ban's postfix-sasl test lines (the "auth"
// mode section of its postfix corpus, and the historical postfix-sasl
// file) with match:true are matched by sasl_auth with fail2ban's host, the
// match:false ones are not; its ddos-mode "auth=0/N" disconnect lines are
// matched by sasl_disconnect.
func TestSASLFail2banCorpus(t *testing.T) {
	dir := findShared(t, "fail2ban-postfix-logs")
	if dir == "" {
		t.Skip("fail2ban corpus shared/fail2ban-postfix-logs/ not found above the package directory")
	}
	m := saslMatcher(t)
	auth, disc := 0, 0
	for _, file := range []string{"postfix", "historical/postfix-sasl"} {
		p := filepath.Join(dir, file)
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		for _, l := range parseFail2banLog(t, p) {
			isSASL := strings.Contains(l.line, "SASL ") && strings.Contains(l.line, "authentication failed")
			isDisc := strings.Contains(l.line, " auth=0/")
			if !isSASL && !isDisc {
				continue
			}
			r, out := m.MatchLine([]byte(l.line))
			got := out == Matched && r.Kind == banner.KindSASL
			// fail2ban's "auth" mode, and its aggressive one but for a
			// mechanism the server does not offer (no password guess).
			want := l.match && !strings.Contains(l.line, "Invalid authentication mechanism")
			if got != want {
				t.Errorf("%s:%d: matched %v (%s), fail2ban match %v modes %v:\n%s", file, l.lineNo, got, r.Pattern, l.match, keys(l.modes), l.line)
				continue
			}
			if got && r.Addr != netip.MustParseAddr(l.host) {
				t.Errorf("%s:%d: host %v, fail2ban %s", file, l.lineNo, r.Addr, l.host)
			}
			if got && isSASL {
				auth++
			} else if got {
				disc++
			}
		}
	}
	if auth < 10 || disc < 3 {
		t.Errorf("only %d SASL failure and %d disconnect lines matched", auth, disc)
	}
	t.Logf("fail2ban corpus: %d SASL failure lines, %d auth=0/N disconnect lines matched", auth, disc)
}
