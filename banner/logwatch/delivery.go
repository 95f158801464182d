package logwatch

import (
	"bytes"
	"net/netip"
	"strconv"
	"sync"

	"github.com/banner-mta/banner/banner"
)

// Deliveries: a client whose mail Postfix accepted is a good sender (see
// engine.Config.GoodSenderFor). Postfix logs an accepted message as
//
//	postfix/smtpd[6296]: 8B7E0984605: client=unknown[198.51.100.8]
//	postfix/cleanup[6299]: 8B7E0984605: message-id=<...>
//	postfix/qmgr[6293]: 8B7E0984605: from=<sender@example.net>, size=392, nrcpt=1 (queue active)
//
// smtpd writes client= when it opens the queue file (at the first
// accepted RCPT); a session that then ends without DATA, or whose message
// cleanup rejects, leaves no queue-active line. Only the pair counts. The
// address comes from the client= line alone, from the bracket right after
// "QUEUEID: client=NAME", a position no client text reaches: Postfix
// writes it before anything the client sent, NAME is a reverse name
// (hostname characters only), and a line whose queue ID is NOQUEUE never
// counts. The qmgr line gives only its queue ID and time: its sender text
// is the client's and is not read.

// PatternDelivered is the name of delivered matches (kind delivered).
const PatternDelivered = "delivered"

// DefaultMaxPendingDeliveries bounds the queue IDs waiting for their qmgr
// line.
const DefaultMaxPendingDeliveries = 10_000

var (
	sClient      = []byte("client=")
	sColonClient = []byte(": client=")
	sQueueActive = []byte(" (queue active)")
	sQmgrFrom    = []byte("from=<")
)

// Deliveries pairs smtpd client= lines with the qmgr queue-active lines of
// the same queue ID, in a bounded table (the oldest pending queue IDs are
// dropped first). It is safe for concurrent use.
type Deliveries struct {
	mu      sync.Mutex
	max     int
	pending map[deliveryKey]netip.Addr
	order   []deliveryKey // FIFO of pending keys, for the bound
	head    int
}

// deliveryKey is a queue ID within one Postfix instance (the syslog
// name's first component: "postfix", "postfix-out").
type deliveryKey struct {
	instance string
	qid      [32]byte // queueID reads at most 32 characters
	n        uint8
}

func newDeliveryKey(prog, qid []byte) deliveryKey {
	k := deliveryKey{instance: instance(prog)}
	k.n = uint8(copy(k.qid[:], qid))
	return k
}

// queueID returns the key's queue ID.
func (k deliveryKey) queueID() string { return string(k.qid[:k.n]) }

// NewDeliveries returns an empty table holding at most max pending queue
// IDs (DefaultMaxPendingDeliveries if max <= 0).
func NewDeliveries(max int) *Deliveries {
	if max <= 0 {
		max = DefaultMaxPendingDeliveries
	}
	return &Deliveries{max: max, pending: make(map[deliveryKey]netip.Addr)}
}

// Len returns how many queue IDs wait for their qmgr line.
func (d *Deliveries) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}

// Record looks at one entry that no pattern matched: it remembers a
// client= line, and for the queue-active line of a remembered queue ID it
// returns the delivered Match (Time and Line from the qmgr entry). Lines
// from services m ignores (submission) are not remembered.
func (d *Deliveries) Record(m *Matcher, rec *Record) (Match, bool) {
	var sl syslogLine
	if rec.Line != nil {
		line := trimEOL(rec.Line)
		if !maybeDelivery(line) {
			return Match{}, false
		}
		var ok bool
		if sl, ok = parseSyslog(line); !ok {
			return Match{}, false
		}
	}
	var op deliveryOp
	op.read(m, rec, sl)
	return d.apply(&op)
}

// deliveryOp is what one entry means to a Deliveries table, found without
// the table (so in parallel, by Analyze's workers): a client= line to
// remember, or a queue-active line to pair.
type deliveryOp struct {
	kind  deliveryKind
	key   deliveryKey
	addr  netip.Addr // opRemember: the client
	match Match      // opPair: the delivered Match but its Addr
}

type deliveryKind uint8

const (
	opNone deliveryKind = iota
	opRemember
	opPair
)

// read sets op from rec, an entry no pattern matched: a raw line, whose
// syslog split is sl (only then read), or an entry split already.
func (op *deliveryOp) read(m *Matcher, rec *Record, sl syslogLine) {
	op.kind = opNone
	if rec.Line == nil {
		sl = syslogLine{prog: rec.Identifier, msg: trimEOL(rec.Message)}
	}
	switch string(daemon(sl.prog)) {
	case "smtpd":
		// Most smtpd lines are not "QUEUEID: client=": the first colon
		// tells (a queue ID is letters and digits).
		if i := bytes.IndexByte(sl.msg, ':'); i < 1 || i > 32 || !bytes.HasPrefix(sl.msg[i:], sColonClient) {
			return
		}
		k, addr, ok := clientLine(sl)
		if !ok || m.ignored(sl.prog) {
			return
		}
		op.kind, op.key, op.addr = opRemember, k, addr
	case "qmgr":
		if !bytes.HasSuffix(sl.msg, sQueueActive) {
			return
		}
		k, ok := queueActiveLine(sl)
		if !ok {
			return
		}
		qid := k.queueID()
		r := Match{Pattern: PatternDelivered, Kind: banner.KindDelivered, Key: qid,
			Reason: "delivered, queue id " + qid}
		if rec.Line != nil {
			m.finish(&r, sl.ts, trimEOL(rec.Line))
		} else {
			r.Time = rec.Time
			if r.Time.IsZero() {
				r.Time, r.BadTime = m.now(), true
			}
			r.Line = string(rec.Identifier) + ": " + string(sl.msg)
		}
		op.kind, op.key, op.match = opPair, k, r
	}
}

// apply carries op out on d: for a queue-active line whose client= line
// is remembered, it returns the delivered Match.
func (d *Deliveries) apply(op *deliveryOp) (Match, bool) {
	switch op.kind {
	case opRemember:
		d.add(op.key, op.addr)
	case opPair:
		addr, ok := d.take(op.key)
		if !ok {
			return Match{}, false
		}
		r := op.match
		r.Addr = addr
		return r, true
	}
	return Match{}, false
}

var sTagEnd = []byte("]: ")

// maybeDelivery is a cheap test that rules out most lines before they are
// parsed: a queue-active line ends so, and a client= line has "QUEUEID:
// client=" right after the first "]", which ends TAG[PID] ("]: "); a line
// whose first "]" is not that (RFC 5424) is searched whole.
func maybeDelivery(line []byte) bool {
	if bytes.HasSuffix(line, sQueueActive) {
		return true
	}
	i := bytes.IndexByte(line, ']')
	if i < 0 || !bytes.HasPrefix(line[i:], sTagEnd) {
		return bytes.Contains(line, sClient)
	}
	rest := line[i+len(sTagEnd):]
	j := 0
	for j < len(rest) && j < 32 && (isDigit(rest[j]) || isLetter(rest[j])) {
		j++
	}
	rest = rest[j:]
	return len(rest) > 2 && rest[0] == ':' && rest[1] == ' ' && bytes.HasPrefix(rest[2:], sClient)
}

// instance returns the first component of a Postfix syslog name.
func instance(prog []byte) string {
	if i := bytes.IndexByte(prog, '/'); i >= 0 {
		prog = prog[:i]
	}
	if string(prog) == "postfix" { // the usual one, without an allocation
		return "postfix"
	}
	return string(prog)
}

// clientLine parses "QUEUEID: client=NAME[ADDR]" with an optional ":PORT"
// and then nothing or ", " and more (sasl_method=..., orig_client=...,
// which are not read).
func clientLine(sl syslogLine) (deliveryKey, netip.Addr, bool) {
	rest, ok := queueID(sl.msg)
	if !ok || !bytes.HasPrefix(rest, sClient) {
		return deliveryKey{}, netip.Addr{}, false
	}
	qid := sl.msg[:len(sl.msg)-len(rest)-2]
	if string(qid) == "NOQUEUE" {
		return deliveryKey{}, netip.Addr{}, false
	}
	addr, after, ok := client(rest[len(sClient):])
	if !ok || (len(after) > 0 && !bytes.HasPrefix(after, []byte(", "))) {
		return deliveryKey{}, netip.Addr{}, false
	}
	return newDeliveryKey(sl.prog, qid), addr, true
}

// queueActiveLine parses "QUEUEID: from=<...>, size=N, nrcpt=N (queue
// active)" and returns its queue ID.
func queueActiveLine(sl syslogLine) (deliveryKey, bool) {
	rest, ok := queueID(sl.msg)
	if !ok || !bytes.HasPrefix(rest, sQmgrFrom) || !bytes.HasSuffix(rest, sQueueActive) {
		return deliveryKey{}, false
	}
	qid := sl.msg[:len(sl.msg)-len(rest)-2]
	if string(qid) == "NOQUEUE" {
		return deliveryKey{}, false
	}
	return newDeliveryKey(sl.prog, qid), true
}

func (d *Deliveries) add(k deliveryKey, addr netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.pending[k]; !ok {
		for len(d.pending) >= d.max {
			d.dropOldest()
		}
		d.order = append(d.order, k)
	}
	d.pending[k] = addr
	if d.head > d.max || len(d.order)-d.head > 2*d.max {
		// Keys taken by their qmgr line linger in the FIFO: keep the
		// pending ones, in order.
		keep := d.order[:0]
		for _, k := range d.order[d.head:] {
			if _, ok := d.pending[k]; ok {
				keep = append(keep, k)
			}
		}
		clear(d.order[len(keep):])
		d.order, d.head = keep, 0
	}
}

// dropOldest forgets the oldest key still pending.
func (d *Deliveries) dropOldest() {
	for d.head < len(d.order) {
		k := d.order[d.head]
		d.head++
		if _, ok := d.pending[k]; ok {
			delete(d.pending, k)
			return
		}
	}
}

func (d *Deliveries) take(k deliveryKey) (netip.Addr, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	a, ok := d.pending[k]
	if ok {
		delete(d.pending, k)
	}
	return a, ok
}

// origin names where rec was read, for Match.Origin.
func origin(src Source, rec *Record) string {
	if rec.Line != nil {
		if fs, ok := src.(*fileSource); ok {
			return fs.path + ":" + strconv.FormatInt(rec.Position.Offset-int64(len(rec.Line))-1, 10)
		}
		return ""
	}
	if rec.Cursor != "" {
		return "journal cursor " + rec.Cursor
	}
	return ""
}
