package logwatch

import (
	"fmt"
	"regexp/syntax"
	"strings"
)

// clientFields are the keys Postfix logs before client-supplied text:
// HELO name, envelope sender and recipient, SASL names. A <HOST> after one
// of them is an address the client wrote.
var clientFields = []string{"helo=", "from=", "to=", "orig_to=", "sasl_username=", "sasl_sender="}

// maxRiskyRepeat is the longest bounded repetition PatternRisk lets pass of
// an expression that can match a space.
const maxRiskyRepeat = 8

// PatternRisk reports why regex, an admin pattern, could match text a
// client controls, or "" if it finds no reason. Patterns are anchored at
// the start of the message, which Postfix writes; a client's text (HELO
// name, sender, recipient, SASL user name) comes later in the line, after
// several words of Postfix's own. So a pattern can only reach that text:
//
//   - through a repetition, before <HOST>, of something that matches a
//     space (".*", "[^]]+", "\s*", "(\w+ )+", or a bounded repetition
//     longer than 8): it can skip Postfix's words up to the client's text;
//   - or through a literal client field key before <HOST> ("helo=",
//     "from=", "to=", "orig_to=", "sasl_username=", "sasl_sender="): what
//     follows is the client's.
//
// A pattern written word by word up to <HOST> (the SASL sample:
// "warning: [-._\w]+\[<HOST>\]...", whose repetition matches no space)
// passes. The rule is a heuristic: it can flag a safe pattern, and says
// nothing of text after <HOST>.
func PatternRisk(regex string) string {
	before, _, ok := strings.Cut(regex, "<HOST>")
	if !ok {
		return ""
	}
	low := strings.ToLower(before)
	for _, k := range clientFields {
		if i := strings.Index(low, k); i >= 0 && (i == 0 || !isWordByte(low[i-1])) {
			return fmt.Sprintf("<HOST> comes after %q: what Postfix logs there is text the client sends", k)
		}
	}
	re, err := syntax.Parse(strings.Replace(regex, "<HOST>", "(?P<host>x)", 1), syntax.Perl)
	if err != nil {
		return ""
	}
	if r := riskBefore(re); r != nil {
		return fmt.Sprintf("%q before <HOST> can match any run of words, up to text the client sends (HELO name, sender, recipient): spell out the words Postfix logs before the address", exprText(r))
	}
	return ""
}

// riskBefore returns a repetition that matches a space and can run before
// the host group in re, or nil.
func riskBefore(re *syntax.Regexp) *syntax.Regexp {
	switch re.Op {
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			if hasHost(sub) {
				return riskBefore(sub)
			}
			if r := riskyRepeat(sub); r != nil {
				return r
			}
		}
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			if hasHost(sub) {
				if r := riskBefore(sub); r != nil {
					return r
				}
			}
		}
	case syntax.OpCapture:
		if re.Name == "host" {
			return nil
		}
		return riskBefore(re.Sub[0])
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		// an earlier round of the repetition runs before the host
		if re.Op != syntax.OpQuest && repeatMax(re) > 1 {
			if r := riskyRepeat(re.Sub[0]); r != nil {
				return r
			}
		}
		return riskBefore(re.Sub[0])
	}
	return nil
}

// riskyRepeat returns a long repetition within re of something that can
// match a space, or nil.
func riskyRepeat(re *syntax.Regexp) *syntax.Regexp {
	switch re.Op {
	case syntax.OpStar, syntax.OpPlus, syntax.OpRepeat:
		if m := repeatMax(re); (m < 0 || m > maxRiskyRepeat) && matchesSpace(re.Sub[0]) {
			return re
		}
	}
	for _, sub := range re.Sub {
		if r := riskyRepeat(sub); r != nil {
			return r
		}
	}
	return nil
}

// repeatMax is the most rounds re, a repetition, runs; -1 = unbounded.
func repeatMax(re *syntax.Regexp) int {
	if re.Op == syntax.OpRepeat {
		return re.Max
	}
	if re.Op == syntax.OpQuest {
		return 1
	}
	return -1
}

// matchesSpace reports whether re can match a string holding a space.
func matchesSpace(re *syntax.Regexp) bool {
	switch re.Op {
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return true
	case syntax.OpCharClass:
		for i := 0; i+1 < len(re.Rune); i += 2 {
			if re.Rune[i] <= ' ' && ' ' <= re.Rune[i+1] {
				return true
			}
		}
		return false
	case syntax.OpLiteral:
		return strings.ContainsRune(string(re.Rune), ' ')
	}
	for _, sub := range re.Sub {
		if matchesSpace(sub) {
			return true
		}
	}
	return false
}

func hasHost(re *syntax.Regexp) bool {
	if re.Op == syntax.OpCapture && re.Name == "host" {
		return true
	}
	for _, sub := range re.Sub {
		if hasHost(sub) {
			return true
		}
	}
	return false
}

func isWordByte(c byte) bool { return c == '_' || isDigit(c) || isLetter(c) }

// exprText is re as an admin would write it ("(?-s:.*)" is ".*").
func exprText(re *syntax.Regexp) string {
	t := re.String()
	if s, ok := strings.CutPrefix(t, "(?-s:"); ok && strings.HasSuffix(s, ")") {
		return strings.TrimSuffix(s, ")")
	}
	return t
}
