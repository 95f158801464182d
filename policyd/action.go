package policyd

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

// AppendReply appends the wire form of a reply, "action=<action>\n\n", to
// dst. It does not check action; see WireSafe and ValidAction.
func AppendReply(dst []byte, action string) []byte {
	dst = append(dst, "action="...)
	dst = append(dst, action...)
	return append(dst, '\n', '\n')
}

// WriteReply writes one reply to w in a single Write call. It refuses an
// action that would break the framing (see WireSafe).
func WriteReply(w io.Writer, action string) error {
	if err := WireSafe(action); err != nil {
		return err
	}
	_, err := w.Write(AppendReply(make([]byte, 0, len(action)+9), action))
	return err
}

// WireSafe reports whether action can be sent as is: it must be non-empty
// and free of control characters (a "\n" would end the reply early, and a
// "\r" or NUL would end up in the SMTP reply). It is the cheap check the
// server applies to every handler answer; ValidAction is the full one.
func WireSafe(action string) error {
	if action == "" {
		return errors.New("empty policy action")
	}
	for i := 0; i < len(action); i++ {
		if c := action[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("policy action %q: control character at byte %d", action, i)
		}
	}
	return nil
}

// Keyword actions of access(5), by whether they take text after them.
var (
	// actionsNoText must stand alone.
	actionsNoText = []string{"OK", "DUNNO"}
	// actionsOptText may be followed by free text.
	actionsOptText = []string{"REJECT", "DEFER", "DEFER_IF_REJECT", "DEFER_IF_PERMIT",
		"DISCARD", "HOLD", "INFO", "WARN"}
	// actionsNeedArg need an argument.
	actionsNeedArg = []string{"FILTER", "REDIRECT", "BCC", "PREPEND"}
	// restriction names Postfix accepts as an action, by prefix.
	restrictionPrefixes = []string{"permit_", "reject_", "defer_", "warn_if_", "check_"}
)

// ValidAction reports whether action is a Postfix access(5) action that
// smtpd will accept in a policy reply: OK, DUNNO, REJECT/DEFER/
// DEFER_IF_REJECT/DEFER_IF_PERMIT/DISCARD/HOLD/INFO/WARN [text],
// "4NN text", "5NN text" (an optional enhanced status code in the text must
// have the same class, e.g. "450 4.7.1 try later"), FILTER transport:dest,
// REDIRECT addr, BCC addr, PREPEND header: value, or an smtpd
// restriction name (permit_*, reject_*, defer_*, warn_if_*, check_*).
// Keywords are case-insensitive, as in Postfix.
//
// It is stricter than Postfix in three places, to catch configuration
// mistakes: OK and DUNNO take no text; a bare code like "450" (which
// Postfix would treat as an all-numerical OK) is refused; and unknown words
// (restriction class names) are refused.
func ValidAction(action string) error {
	if err := WireSafe(action); err != nil {
		return err
	}
	word, text, _ := strings.Cut(action, " ")
	text = strings.TrimLeft(text, " \t")
	if strings.TrimSpace(action) != action {
		return fmt.Errorf("policy action %q: leading or trailing white space", action)
	}
	for _, k := range actionsNoText {
		if strings.EqualFold(word, k) {
			if text != "" {
				return fmt.Errorf("policy action %q: %s takes no text", action, k)
			}
			return nil
		}
	}
	for _, k := range actionsOptText {
		if strings.EqualFold(word, k) {
			return nil
		}
	}
	for _, k := range actionsNeedArg {
		if strings.EqualFold(word, k) {
			if text == "" {
				return fmt.Errorf("policy action %q: %s needs an argument", action, k)
			}
			if strings.EqualFold(k, "FILTER") && !strings.Contains(text, ":") {
				return fmt.Errorf("policy action %q: FILTER needs transport:destination", action)
			}
			return nil
		}
	}
	if isDigits(word) {
		if len(word) != 3 || (word[0] != '4' && word[0] != '5') {
			return fmt.Errorf("policy action %q: numeric code must be 4NN or 5NN followed by text", action)
		}
		if text == "" {
			return fmt.Errorf("policy action %q: %s needs text (a bare number means OK to Postfix)", action, word)
		}
		if dsn, _, _ := strings.Cut(text, " "); looksLikeDSN(dsn) && dsn[0] != word[0] {
			return fmt.Errorf("policy action %q: status code %s does not match reply code %s", action, dsn, word)
		}
		return nil
	}
	for _, p := range restrictionPrefixes {
		if strings.HasPrefix(strings.ToLower(word), p) && len(word) > len(p) && isRestrictionName(word) {
			return nil
		}
	}
	return fmt.Errorf("policy action %q: unknown action %q (see access(5))", action, word)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// looksLikeDSN reports whether s has the shape of an RFC 3463 code, X.Y.Z.
func looksLikeDSN(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) != 3 {
		return false
	}
	for _, p := range parts {
		if !isDigits(p) || len(p) > 3 {
			return false
		}
	}
	return true
}

func isRestrictionName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i] | 0x20 // ASCII lower case
		if !(c >= 'a' && c <= 'z' || s[i] >= '0' && s[i] <= '9' || s[i] == '_') {
			return false
		}
	}
	return true
}
