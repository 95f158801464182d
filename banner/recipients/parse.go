package recipients

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxLineLength is the longest line a table file may have; a longer line
// makes the load fail rather than be silently cut.
const MaxLineLength = 64 << 10

// maxAddressLength bounds an address key (RFC 5321 path limit is 256).
const maxAddressLength = 1024

// keyKind says what a table line declares.
type keyKind int

const (
	keyNone     keyKind = iota // blank, comment or continuation line
	keyAddress                 // local@domain
	keyBare                    // local part only: valid in every protected domain
	keyCatchAll                // @domain: every address in domain
)

// entry is the parsed first field of a table line, normalised.
type entry struct {
	kind   keyKind
	local  string // lower case, unquoted; empty for keyCatchAll
	domain string // lower case, no trailing dot; empty for keyBare
}

// errNotSupported marks keys of table types this package cannot evaluate.
var errNotSupported = errors.New("regexp/pcre table syntax is not supported: list plain addresses")

// parseLine parses one line of a Postfix text table (virtual(5),
// aliases(5), access(5)-style "key value" or a plain list of addresses).
// Only the first field (the lookup key) matters. Blank lines, comment
// lines (first non-blank character '#') and continuation lines (starting
// with white space) yield keyNone.
func parseLine(line string) (entry, error) {
	line = strings.TrimSuffix(line, "\r")
	if strings.IndexByte(line, 0) >= 0 {
		return entry{}, errors.New("NUL byte in line")
	}
	if line == "" || line[0] == ' ' || line[0] == '\t' || line[0] == '#' {
		return entry{}, nil
	}
	if line[0] == '/' {
		return entry{}, errNotSupported
	}
	key, err := firstField(line)
	if err != nil {
		return entry{}, err
	}
	return parseKey(key)
}

// firstField returns the lookup key: everything up to the first white
// space, or, in aliases(5) style, up to a ':' that ends the field. A
// double-quoted part may contain white space, ':' and '@', an address
// literal ("[IPv6:...]") may contain ':'; the quotes are kept for parseKey.
func firstField(line string) (string, error) {
	inQuote, inBracket := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inQuote && c == '\\':
			i++ // skip the escaped character
		case c == '"':
			inQuote = !inQuote
		case inQuote:
		case c == ' ' || c == '\t':
			return line[:i], nil
		case c == '[':
			inBracket = true
		case c == ']':
			inBracket = false
		case c == ':' && !inBracket:
			// "name: value" (aliases) and "name:value".
			return line[:i], nil
		}
	}
	if inQuote {
		return "", errors.New("unterminated quote")
	}
	return line, nil
}

// parseKey normalises a table key.
func parseKey(key string) (entry, error) {
	if len(key) > maxAddressLength {
		return entry{}, fmt.Errorf("key longer than %d bytes", maxAddressLength)
	}
	if strings.HasPrefix(key, "<") && strings.HasSuffix(key, ">") && len(key) >= 2 {
		key = key[1 : len(key)-1]
	}
	if key == "" {
		return entry{}, errors.New("empty key")
	}
	at := lastAt(key)
	if at < 0 {
		local, err := normalizeLocal(key)
		if err != nil {
			return entry{}, fmt.Errorf("key %q: %w", key, err)
		}
		return entry{kind: keyBare, local: local}, nil
	}
	domain, err := normalizeDomain(key[at+1:])
	if err != nil {
		return entry{}, fmt.Errorf("key %q: %w", key, err)
	}
	if at == 0 {
		return entry{kind: keyCatchAll, domain: domain}, nil
	}
	local, err := normalizeLocal(key[:at])
	if err != nil {
		return entry{}, fmt.Errorf("key %q: %w", key, err)
	}
	return entry{kind: keyAddress, local: local, domain: domain}, nil
}

// lastAt is the index of the last '@' outside double quotes, or -1.
func lastAt(s string) int {
	inQuote, at := false, -1
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inQuote && c == '\\':
			i++
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == '@':
			at = i
		}
	}
	return at
}

// normalizeLocal unquotes a local part (`"a b"` -> `a b`, `\"` -> `"`), as
// Postfix does for table lookups (internal form), and lowers its case.
func normalizeLocal(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty local part")
	}
	if !utf8.ValidString(s) {
		return "", errors.New("local part is not valid UTF-8")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return "", fmt.Errorf("control character %q in local part", s[i])
		}
	}
	if strings.IndexByte(s, '"') < 0 && strings.IndexByte(s, '\\') < 0 {
		if strings.ContainsAny(s, " \t\r\n<>") {
			return "", errors.New("invalid character in local part")
		}
		return strings.ToLower(s), nil
	}
	var b strings.Builder
	inQuote := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			if i+1 >= len(s) {
				return "", errors.New("trailing backslash in local part")
			}
			i++
			b.WriteByte(s[i])
		case c == '"':
			inQuote = !inQuote
		case !inQuote && (c == ' ' || c == '\t' || c == '<' || c == '>'):
			return "", errors.New("invalid character in local part")
		default:
			b.WriteByte(c)
		}
	}
	if inQuote {
		return "", errors.New("unterminated quote in local part")
	}
	if b.Len() == 0 {
		return "", errors.New("empty local part")
	}
	return strings.ToLower(b.String()), nil
}

// normalizeDomain lowers the case of a domain and drops one trailing dot.
// It accepts letters, digits, '-', '.', '_' and non-ASCII (UTF-8 IDN)
// bytes, and address literals in brackets.
func normalizeDomain(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return "", errors.New("empty domain")
	}
	if len(s) > 255 {
		return "", errors.New("domain longer than 255 bytes")
	}
	if !utf8.ValidString(s) {
		// Lower-casing would turn each bad byte into U+FFFD, so the
		// table's key and a lookup of it would no longer agree.
		return "", errors.New("domain is not valid UTF-8")
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if strings.ContainsAny(s[1:len(s)-1], "[] \t\"@") {
			return "", fmt.Errorf("invalid address literal %q", s)
		}
		return strings.ToLower(s), nil
	}
	if s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return "", fmt.Errorf("invalid domain %q", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 0x80 || c == '-' || c == '.' || c == '_' ||
			(c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
		if !ok {
			return "", fmt.Errorf("invalid character %q in domain %q", c, s)
		}
	}
	return strings.ToLower(s), nil
}

// plainRecipient is parseRecipient's fast path for the common address:
// lower-case ASCII letters, digits and ".-_+" with one "@" between a
// local part and a domain that neither starts nor ends with a dot nor
// holds "..". Such an address is its own normal form, so local and domain
// are substrings of rcpt and local+"@"+domain is rcpt. ok is false for
// anything else, which parseRecipient then handles.
func plainRecipient(rcpt string) (local, domain string, ok bool) {
	at := -1
	for i := 0; i < len(rcpt); i++ {
		c := rcpt[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		case c == '.':
			if at >= 0 && (i == at+1 || rcpt[i-1] == '.') {
				return "", "", false // domain starting with "." or holding ".."
			}
		case c == '+':
			if at >= 0 {
				return "", "", false
			}
		case c == '@':
			if at >= 0 {
				return "", "", false
			}
			at = i
		default:
			return "", "", false
		}
	}
	if at <= 0 || at == len(rcpt)-1 || rcpt[len(rcpt)-1] == '.' || len(rcpt) > maxAddressLength {
		return "", "", false
	}
	return rcpt[:at], rcpt[at+1:], true
}

// parseRecipient splits and normalises an address to check. ok is false
// for empty or malformed addresses and for the null sender.
func parseRecipient(rcpt string) (local, domain string, ok bool) {
	rcpt = strings.Trim(rcpt, " \t\r\n") // ASCII white space only, as in the tables (parseLine); a U+00A0 is part of the address
	if strings.HasPrefix(rcpt, "<") && strings.HasSuffix(rcpt, ">") && len(rcpt) >= 2 {
		rcpt = rcpt[1 : len(rcpt)-1]
	}
	if rcpt == "" || len(rcpt) > maxAddressLength || strings.IndexByte(rcpt, 0) >= 0 {
		return "", "", false
	}
	at := lastAt(rcpt)
	if at <= 0 {
		return "", "", false
	}
	d, err := normalizeDomain(rcpt[at+1:])
	if err != nil {
		return "", "", false
	}
	l, err := normalizeLocal(rcpt[:at])
	if err != nil {
		return "", "", false
	}
	return l, d, true
}
