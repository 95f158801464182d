// Package fleet shares one banner node's decisions (bans, unbans, forgets)
// and offender events with the other nodes of a fleet of MX hosts through
// Redis (or Valkey): a stream every node appends to and reads from its last
// saved ID, a sorted set of the live bans for nodes that need a full
// snapshot, and a bounded send queue that never blocks the caller.
//
// The package only carries messages: each node's engine decides what to do
// with what it hears (its own allowlist and networks still hold).
package fleet

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
	"unicode/utf8"

	"github.com/banner-mta/banner/banner"
)

// Version is the message format this build writes. A reader accepts every
// version: fields it does not know are ignored and operations it does not
// know are counted and skipped, so a fleet of mixed banner versions keeps
// working. A change that old readers would misread needs a new Op.
const Version = 1

// Op is what a message asks.
type Op string

// Operations.
const (
	OpBan      Op = "ban"       // ban Prefix from Since until Until
	OpUnban    Op = "unban"     // lift the ban of exactly Prefix
	OpForget   Op = "forget"    // drop scores and escalation history overlapping Prefix
	OpUnbanAll Op = "unban_all" // lift every ban
	OpEvent    Op = "event"     // one offender event (Event), for fleet-wide scores
)

// Limits of a message a reader accepts.
const (
	MaxMessageBytes = 4096
	MaxNodeBytes    = 64
	MaxReasonBytes  = 1024
	MaxKeyBytes     = 512
	MaxKindBytes    = 32
	MaxWeight       = 1e6
	MaxCount        = 1 << 20
)

// Errors of Decode. Every error wraps ErrMalformed.
var (
	ErrMalformed = errors.New("malformed fleet message")
	// ErrUnknownOp: a well-formed message of an operation this version
	// does not know (from a newer node). It wraps ErrMalformed.
	ErrUnknownOp = fmt.Errorf("unknown operation (%w)", ErrMalformed)
)

// Message is one entry of the fleet stream.
type Message struct {
	// V is the format version of the writer.
	V  int
	Op Op
	// Node is the node that wrote the message.
	Node string
	// Origin is the node that decided the ban (OpBan only), which differs
	// from Node when a node republishes the bans it knows after Redis lost
	// them. Empty means Node.
	Origin string
	// Time is when the writer made the decision or saw the event.
	Time time.Time
	// Prefix of OpBan, OpUnban, OpForget.
	Prefix netip.Prefix
	// OpBan: the ban.
	Since, Until time.Time
	Count        int
	Reason       string
	Kind         banner.Kind
	// Groups are the port groups the ban closes at the node that decided
	// it (an address banned for probing recipients and for guessing
	// passwords closes both); 0, as from nodes older than groups on the
	// wire, leaves the reader to route the ban by Kind.
	Groups banner.Groups
	// OpEvent: the event (its Source is the writer's; BanFor is not
	// shared: a ban travels as its own message).
	Event banner.Event
	// Replay is set by the reader for messages read to catch up (a replay
	// of the stream from a saved ID, or a snapshot), not while live.
	Replay bool
}

// OriginNode returns the node that decided the message's ban.
func (m Message) OriginNode() string {
	if m.Origin != "" {
		return m.Origin
	}
	return m.Node
}

// wire is the JSON form: short keys, times in Unix milliseconds.
type wire struct {
	V      int     `json:"v"`
	Op     Op      `json:"op"`
	Node   string  `json:"n"`
	Origin string  `json:"o,omitempty"`
	Time   int64   `json:"t"`
	Prefix string  `json:"p,omitempty"`
	Since  int64   `json:"s,omitempty"`
	Until  int64   `json:"u,omitempty"`
	Count  int     `json:"c,omitempty"`
	Reason string  `json:"r,omitempty"`
	Kind   string  `json:"k,omitempty"`
	Addr   string  `json:"a,omitempty"`
	Weight float64 `json:"w,omitempty"`
	Key    string  `json:"key,omitempty"`
	Source string  `json:"src,omitempty"`
	Groups uint8   `json:"g,omitempty"`
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// Encode returns m's wire form. Texts longer than the limits are cut so
// that every message Encode writes, Decode accepts.
func Encode(m Message) ([]byte, error) {
	w := wire{V: Version, Op: m.Op, Node: truncate(m.Node, MaxNodeBytes), Origin: truncate(m.Origin, MaxNodeBytes), Time: ms(m.Time)}
	switch m.Op {
	case OpBan:
		w.Prefix = m.Prefix.String()
		w.Since, w.Until, w.Count = ms(m.Since), ms(m.Until), m.Count
		w.Reason, w.Kind = truncate(m.Reason, MaxReasonBytes), truncate(string(m.Kind), MaxKindBytes)
		w.Groups = uint8(m.Groups & banner.AllGroups)
	case OpUnban, OpForget:
		w.Prefix = m.Prefix.String()
	case OpUnbanAll:
	case OpEvent:
		ev := m.Event
		w.Addr = ev.Addr.String()
		w.Kind = truncate(string(ev.Kind), MaxKindBytes)
		w.Weight = ev.Weight
		w.Key = truncate(ev.Key, MaxKeyBytes)
		w.Reason = truncate(ev.Reason, MaxReasonBytes)
		w.Source = truncate(string(ev.Source), MaxKindBytes)
		if !ev.Time.IsZero() {
			w.Time = ms(ev.Time)
		}
	default:
		return nil, fmt.Errorf("fleet: encoding unknown operation %q", m.Op)
	}
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("fleet: encoding %s: %w", m.Op, err)
	}
	return b, nil
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// Decode parses and checks one message. It never panics; a message larger
// than MaxMessageBytes, with a field over its limit, or with values that
// make no sense (an invalid prefix, a ban that ends before it starts, a
// negative weight) is refused with an error wrapping ErrMalformed.
func Decode(b []byte) (Message, error) {
	if len(b) > MaxMessageBytes {
		return Message{}, malformed("%d bytes, over the limit of %d", len(b), MaxMessageBytes)
	}
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return Message{}, malformed("%v", err)
	}
	if w.V < 1 {
		return Message{}, malformed("version %d", w.V)
	}
	if w.Node == "" || len(w.Node) > MaxNodeBytes || len(w.Origin) > MaxNodeBytes || !utf8.ValidString(w.Node) || !utf8.ValidString(w.Origin) {
		return Message{}, malformed("bad node name")
	}
	if len(w.Reason) > MaxReasonBytes || len(w.Key) > MaxKeyBytes || len(w.Kind) > MaxKindBytes || len(w.Source) > MaxKindBytes {
		return Message{}, malformed("text field over its limit")
	}
	if w.Time < 0 || w.Since < 0 || w.Until < 0 {
		return Message{}, malformed("negative time")
	}
	m := Message{V: w.V, Op: w.Op, Node: w.Node, Origin: w.Origin, Time: fromMS(w.Time)}
	prefix := func() error {
		p, err := netip.ParsePrefix(w.Prefix)
		if err != nil {
			return malformed("prefix %.60q: %v", w.Prefix, err)
		}
		p = banner.UnmapPrefix(p)
		if p.Masked() != p || p.Addr().Zone() != "" {
			return malformed("prefix %v has host bits set", p)
		}
		m.Prefix = p
		return nil
	}
	switch w.Op {
	case OpBan:
		if err := prefix(); err != nil {
			return Message{}, err
		}
		if w.Until == 0 || w.Until < w.Since {
			return Message{}, malformed("ban of %v ends before it starts", m.Prefix)
		}
		if w.Count < 0 || w.Count > MaxCount {
			return Message{}, malformed("ban count %d", w.Count)
		}
		m.Since, m.Until, m.Count = fromMS(w.Since), fromMS(w.Until), max(w.Count, 1)
		m.Reason, m.Kind = w.Reason, banner.Kind(w.Kind)
		m.Groups = banner.Groups(w.Groups) & banner.AllGroups // groups of a newer version dropped
	case OpUnban, OpForget:
		if err := prefix(); err != nil {
			return Message{}, err
		}
	case OpUnbanAll:
	case OpEvent:
		a, err := netip.ParseAddr(w.Addr)
		if err != nil || a.Zone() != "" {
			return Message{}, malformed("event address %.60q", w.Addr)
		}
		if w.Weight < 0 || w.Weight > MaxWeight || math.IsNaN(w.Weight) {
			return Message{}, malformed("event weight %v", w.Weight)
		}
		m.Event = banner.Event{Addr: a.Unmap(), Kind: banner.Kind(w.Kind), Weight: w.Weight, Time: m.Time,
			Source: banner.Source(w.Source), Key: w.Key, Reason: w.Reason}
	default:
		return Message{}, fmt.Errorf("%w %.32q", ErrUnknownOp, w.Op)
	}
	return m, nil
}
