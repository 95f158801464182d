// Package banner is the vocabulary every part of banner shares: the events
// that sources report (Event, Kind, Source), the bans the engine issues
// (Ban), the errors of ban operations, and the rules for the addresses and
// prefixes that can be banned. It imports no other package of the project.
package banner

import (
	"fmt"
	"net/netip"
	"slices"
	"time"
)

// Kind is the kind of offence an Event reports.
type Kind string

// Event kinds.
const (
	KindDNSBL         Kind = "dnsbl"
	KindRBLReject     Kind = "rbl_reject"
	KindUnknownUser   Kind = "unknown_user"
	KindPostscreen    Kind = "postscreen"
	KindTooManyErrors Kind = "too_many_errors"
	KindPattern       Kind = "pattern"
	KindManual        Kind = "manual"
	// KindDelivered is no offence: Postfix accepted mail from the client
	// (it becomes a good sender, see [ban] good_sender_days).
	KindDelivered Kind = "delivered"
	// KindSASL is a failed SMTP AUTH (password guessing). It is scored in
	// a window of its own, with its own maxretry and findtime ([ban.sasl]).
	KindSASL Kind = "sasl"
	// KindFeed is a ban from a [[feeds]] list.
	KindFeed Kind = "feed"
)

// NumKinds is how many kinds Kinds lists.
const NumKinds = len(kinds)

// kinds lists the known kinds in a fixed order.
var kinds = [...]Kind{KindDNSBL, KindRBLReject, KindUnknownUser, KindPostscreen, KindTooManyErrors, KindPattern, KindManual, KindSASL, KindFeed, KindDelivered}

// Kinds returns the known kinds in a fixed order.
func Kinds() []Kind { return slices.Clone(kinds[:]) }

// Index returns k's position in Kinds, or NumKinds for a kind not listed.
func (k Kind) Index() int {
	for i, x := range kinds {
		if x == k {
			return i
		}
	}
	return NumKinds
}

// Known reports whether k is one of Kinds.
func (k Kind) Known() bool { return k.Index() < NumKinds }

// Source is the component that observed an Event.
type Source string

// Event sources.
const (
	SourcePolicy Source = "policy"
	SourceLog    Source = "log"
	SourceCLI    Source = "cli"
	// SourceFile: a list banned by `banner ban -file` (through the CLI,
	// in bulk).
	SourceFile Source = "file"
	// SourceFleet: heard from another node of the fleet (banner/fleet).
	SourceFleet Source = "fleet"
	SourceFeed  Source = "feed"
)

// Event is one observation of a client misbehaving.
type Event struct {
	Addr netip.Addr
	Kind Kind
	// Weight is added to the client's score within findtime. 0 counts as 1;
	// negative weights are invalid and the event is dropped.
	Weight float64
	// Time is when it happened; zero means now. Events older than findtime
	// are ignored, events in the future count as now.
	Time   time.Time
	Source Source
	// Key de-duplicates echoes: e.g. the recipient address.
	Key string
	// Reason is human text for logs and `banner list`.
	Reason string
	// BanFor > 0 bans at once for max(BanFor, the escalated ban time),
	// capped at maxtime.
	BanFor time.Duration
	// Origin says where the event was seen, for `banner explain`: the log
	// file and the offset of the line's end ("/var/log/mail.log:12345"),
	// or the policy request's protocol state ("policy RCPT").
	Origin string
}

// Ban is an active ban.
type Ban struct {
	Prefix netip.Prefix `json:"prefix"`
	Since  time.Time    `json:"since"`
	Until  time.Time    `json:"until"`
	// Count is n for the n-th ban of Prefix (its escalation level).
	Count  int    `json:"count"`
	Reason string `json:"reason"`
	Source Source `json:"source"`
	Kind   Kind   `json:"kind"`
	// Groups are the port groups the ban closes (KindGroups of the kinds
	// that banned it); 0 means GroupMain.
	Groups Groups `json:"groups,omitempty"`
	// Node is the fleet node that decided the ban; empty for this node's
	// own.
	Node string `json:"node,omitempty"`
}

// Groups is a set of firewall port groups: which ports a ban closes. A
// ban of kind sasl closes [ban.sasl] ports (GroupSASL), any other ban
// [firewall] ports (GroupMain); an address banned for both is dropped on
// the union. The zero value, as in bans stored before groups existed,
// means GroupMain (see OrMain).
type Groups uint8

// Port groups.
const (
	// GroupMain is [firewall] ports.
	GroupMain Groups = 1 << iota
	// GroupSASL is [ban.sasl] ports.
	GroupSASL
	// AllGroups is every group.
	AllGroups = GroupMain | GroupSASL
)

// KindGroups returns the port group a ban of kind k closes.
func KindGroups(k Kind) Groups {
	if k == KindSASL {
		return GroupSASL
	}
	return GroupMain
}

// OrMain returns g, or GroupMain for the zero value.
func (g Groups) OrMain() Groups {
	if g&AllGroups == 0 {
		return GroupMain
	}
	return g & AllGroups
}

// Has reports whether g holds every group of h.
func (g Groups) Has(h Groups) bool { return g&h == h }

// String names the groups: "main", "sasl", "main+sasl" ("main" for the
// zero value).
func (g Groups) String() string {
	switch g.OrMain() {
	case GroupSASL:
		return "sasl"
	case AllGroups:
		return "main+sasl"
	default:
		return "main"
	}
}

// MarshalText writes g as String does.
func (g Groups) MarshalText() ([]byte, error) { return []byte(g.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (g *Groups) UnmarshalText(b []byte) error {
	switch string(b) {
	case "main", "":
		*g = GroupMain
	case "sasl":
		*g = GroupSASL
	case "main+sasl":
		*g = AllGroups
	default:
		return fmt.Errorf("unknown port group %q (want main, sasl or main+sasl)", b)
	}
	return nil
}
