package logwatch

import (
	"bytes"

	"github.com/banner-mta/banner/banner"
)

var (
	sWarning    = []byte("warning: ")
	sDisconnect = []byte("disconnect from ")
	sSASL       = []byte(": SASL ")
	sAuthFailed = []byte(" authentication failed:")
	sAuthStat   = []byte("auth=0/")
	sSASLUser   = []byte(", sasl_username=")
)

// saslFailed matches what follows "warning: ":
// "NAME[IP][:PORT]: SASL MECH authentication failed:[ REASON]". Only
// reasons that mean a wrong password count; "Connection lost to
// authentication server" (Dovecot or saslauthd down: every user fails) and
// "Invalid authentication mechanism" do not.
func (m *Matcher) saslFailed(b []byte) (Match, Outcome) {
	if !m.enabled[bSASL] {
		return Match{}, NoMatch
	}
	addr, rest, ok := client(b)
	if !ok || !bytes.HasPrefix(rest, sSASL) {
		return Match{}, NoMatch
	}
	rest = rest[len(sSASL):]
	i := 0
	for i < len(rest) && i < 32 && (isLetter(rest[i]) || isDigit(rest[i]) || rest[i] == '-' || rest[i] == '_') {
		i++
	}
	mech := rest[:i]
	if i == 0 || !bytes.HasPrefix(rest[i:], sAuthFailed) {
		return Match{}, NoMatch
	}
	if !wrongPassword(rest[i+len(sAuthFailed):]) {
		return Match{}, NoMatch
	}
	return Match{Addr: addr, Pattern: PatternSASL, Kind: banner.KindSASL, Weight: m.weight[bSASL],
		Reason: "SASL " + string(bytes.ToUpper(mech)) + " authentication failed"}, Matched
}

// wrongPassword reports whether the reason of a SASL failure (after
// "failed:") is one a wrong password gives: none, "authentication
// failure", "Password:", "(reason unavailable)" or a base64 challenge,
// each optionally followed by ", sasl_username=NAME".
func wrongPassword(r []byte) bool {
	if i := bytes.Index(r, sSASLUser); i >= 0 {
		r = r[:i]
	}
	if len(r) == 0 {
		return true
	}
	if r[0] != ' ' {
		return false
	}
	r = r[1:]
	switch string(r) {
	case "", "authentication failure", "Password:", "(reason unavailable)":
		return true
	}
	// A base64 challenge such as UGFzc3dvcmQ6 ("Password:").
	n := 0
	for n < len(r) && (isLetter(r[n]) || isDigit(r[n]) || r[n] == '+' || r[n] == '/') {
		n++
	}
	pad := n
	for pad < len(r) && r[pad] == '=' && pad-n < 2 {
		pad++
	}
	return n > 0 && pad == len(r)
}

// saslDisconnect matches what follows "disconnect from ":
// "NAME[IP][:PORT] CMD=N[/M] ..." with "auth=0/N", N >= 1: a session whose
// every AUTH failed.
func (m *Matcher) saslDisconnect(b []byte) (Match, Outcome) {
	if !m.enabled[bSASLDisconnect] {
		return Match{}, NoMatch
	}
	addr, rest, ok := client(b)
	if !ok {
		return Match{}, NoMatch
	}
	for _, f := range bytes.Fields(rest) {
		if !bytes.HasPrefix(f, sAuthStat) {
			continue
		}
		n := f[len(sAuthStat):]
		if len(n) == 0 || len(n) > 6 || (n[0] == '0') {
			return Match{}, NoMatch
		}
		for _, c := range n {
			if !isDigit(c) {
				return Match{}, NoMatch
			}
		}
		return Match{Addr: addr, Pattern: PatternSASLDisconnect, Kind: banner.KindSASL, Weight: m.weight[bSASLDisconnect],
			Reason: "SMTP session with " + string(n) + " failed AUTH"}, Matched
	}
	return Match{}, NoMatch
}
