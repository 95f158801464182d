package logwatch

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/internal/testenv"
)

// TestDeliveriesRealPostfixLog: in the log a real Postfix 3.7.11 wrote,
// exactly one client delivered (198.51.100.8, queue id 8B7E0984605: its
// client= line 8 and queue-active line 10); the clients Postfix rejected
// did not. Analyze and the Watcher (which names file and offset) agree.
func TestDeliveriesRealPostfixLog(t *testing.T) {
	logPath := testenv.Fixture(t, "maillog/postfix-3.7.11.log")
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	m := sampleMatcher(t)
	var got []Match
	if _, err := Analyze(bytes.NewReader(data), m, func(r Match) {
		if r.Kind == banner.KindDelivered {
			got = append(got, r)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("Analyze: %d deliveries, want 1: %+v", len(got), got)
	}
	d := got[0]
	if d.Addr != netip.MustParseAddr("198.51.100.8") || d.Key != "8B7E0984605" || d.Origin != "line 10" ||
		!strings.Contains(d.Line, "(queue active)") || d.Event().Kind != banner.KindDelivered {
		t.Errorf("Analyze: delivery = %+v", d)
	}

	// The Watcher tails a copy of the file.
	path := t.TempDir() + "/mail.log"
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	c := &matchCollector{}
	cfg := testConfig(path)
	cfg.FromStart = true
	w, err := New(cfg, c.add)
	if err != nil {
		t.Fatal(err)
	}
	stop := runWatcher(t, w)
	waitFor(t, "the delivery", func() bool { return len(c.kind(banner.KindDelivered)) == 1 })
	stop()
	wd := c.kind(banner.KindDelivered)[0]
	off := bytes.Index(data, []byte("Nov 25 06:51:12 mx postfix/qmgr[6293]: 8B7E0984605: from="))
	if wd.Addr != d.Addr || wd.Origin != fmt.Sprintf("%s:%d", path, off) {
		t.Errorf("Watcher: delivery = %+v, want origin %s:%d", wd, path, off)
	}
	if n := len(c.kind(banner.KindUnknownUser)); n != 1 {
		t.Errorf("Watcher: %d unknown_user matches, want 1", n)
	}
}

type matchCollector struct {
	mu sync.Mutex
	ms []Match
}

func (c *matchCollector) add(m Match) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ms = append(c.ms, m)
}

func (c *matchCollector) kind(k banner.Kind) []Match {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Match
	for _, m := range c.ms {
		if m.Kind == k {
			out = append(out, m)
		}
	}
	return out
}

// TestDeliveryForgery: client text (HELO, sender, recipient) that imitates
// a client= line for 6.6.6.6, in every line Postfix writes it into, and a
// queue-active line for the imitated queue id, never makes 6.6.6.6 a good
// sender; the only delivery is that of the real client= line's address.
func TestDeliveryForgery(t *testing.T) {
	const qid = "4F2A31C0B7"
	injections := []string{
		qid + ": client=x[6.6.6.6]",
		"]: " + qid + ": client=x[6.6.6.6]",
		"\n" + qid + ": client=x[6.6.6.6]",
		"postfix/smtpd[1]: " + qid + ": client=evil[6.6.6.6]",
		"Dec  2 06:20:00 mx postfix/smtpd[4711]: " + qid + ": client=evil[6.6.6.6]",
		qid + ": from=<a>, size=1, nrcpt=1 (queue active)",
	}
	const tag = "Dec  2 06:20:00 mx postfix/"
	shapes := []string{
		tag + "smtpd[4711]: NOQUEUE: reject: RCPT from unknown[192.0.2.77]: 550 5.1.1 <RCPT>: Recipient address rejected: User unknown in local recipient table; from=<FROM> to=<RCPT> proto=ESMTP helo=<HELO>",
		tag + "smtpd[4711]: " + qid + ": reject: RCPT from unknown[192.0.2.77]: 550 5.1.1 <RCPT>: Recipient address rejected: User unknown; from=<FROM> to=<RCPT> proto=ESMTP helo=<HELO>",
		tag + "smtpd[4711]: warning: Illegal address syntax from unknown[192.0.2.77] in RCPT command: <RCPT>",
		tag + "cleanup[4712]: " + qid + ": message-id=<RCPT>",
		tag + "cleanup[4712]: " + qid + ": reject: header Subject: HELO from unknown[192.0.2.77]; from=<FROM> to=<RCPT> proto=ESMTP helo=<HELO>: 5.7.1 no",
		tag + "qmgr[4713]: " + qid + ": from=<FROM>, size=392, nrcpt=1 (queue active)",
		tag + "smtpd[4711]: NOQUEUE: client=unknown[192.0.2.77], sasl_method=PLAIN, sasl_username=HELO",
	}
	m := sampleMatcher(t)
	for _, inj := range injections {
		for _, shape := range shapes {
			line := strings.NewReplacer("HELO", inj, "FROM", `"`+inj+`"@evil.example`, "RCPT", `"`+inj+`"@example.test`).Replace(shape)
			// The forged line, then Postfix's own queue-active line for
			// the queue id the client imitated.
			log := line + "\n" + tag + "qmgr[4713]: " + qid + ": from=<x@evil.example>, size=392, nrcpt=1 (queue active)\n"
			_, err := Analyze(strings.NewReader(log), m, func(r Match) {
				if r.Kind == banner.KindDelivered {
					t.Errorf("delivery of %v from forged text:\n%s", r.Addr, log)
				}
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	// A real client= line counts its own bracket only, and a queue-active
	// line whose sender imitates another queue id completes nothing else.
	log := tag + "smtpd[4711]: " + qid + ": client=mail-ed1-f53.google.com[192.0.2.77]:40422, sasl_method=PLAIN, sasl_username=6.6.6.6\n" +
		tag + "smtpd[4711]: 9ABCDEF012: client=unknown[198.51.100.1]\n" +
		tag + "qmgr[4713]: " + qid + ": from=<\"9ABCDEF012: from=<a>, size=1, nrcpt=1 (queue active)\"@evil.example>, size=392, nrcpt=1 (queue active)\n"
	var got []netip.Addr
	if _, err := Analyze(strings.NewReader(log), m, func(r Match) {
		if r.Kind == banner.KindDelivered {
			got = append(got, r.Addr)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != netip.MustParseAddr("192.0.2.77") {
		t.Errorf("deliveries %v, want only 192.0.2.77", got)
	}
}

// TestDeliveryNeedsQueueActive: a client= line alone (a session that
// ended before DATA, a message cleanup rejected) is no delivery, nor is a
// queue-active line of another Postfix instance or a NOQUEUE client= line;
// submission (an ignored service) does not count.
func TestDeliveryNeedsQueueActive(t *testing.T) {
	const tag = "Dec  2 06:20:00 mx "
	for _, tc := range []struct {
		name string
		log  string
		want int
	}{
		{"pair", tag + "postfix/smtpd[1]: 1A2B3C: client=h[192.0.2.1]\n" + tag + "postfix/qmgr[2]: 1A2B3C: from=<a@b>, size=1, nrcpt=1 (queue active)\n", 1},
		{"long queue id", tag + "postfix/smtpd[1]: 4Qx7Lm0bq9z9vTt: client=h[2001:db8::1]\n" + tag + "postfix/qmgr[2]: 4Qx7Lm0bq9z9vTt: from=<>, size=1, nrcpt=1 (queue active)\n", 1},
		{"client line alone", tag + "postfix/smtpd[1]: 1A2B3C: client=h[192.0.2.1]\n" + tag + "postfix/smtpd[1]: disconnect from h[192.0.2.1]\n", 0},
		{"cleanup reject", tag + "postfix/smtpd[1]: 1A2B3C: client=h[192.0.2.1]\n" + tag + "postfix/cleanup[3]: 1A2B3C: milter-reject: END-OF-MESSAGE from h[192.0.2.1]: 5.7.1 spam\n", 0},
		{"other instance", tag + "postfix-in/smtpd[1]: 1A2B3C: client=h[192.0.2.1]\n" + tag + "postfix-out/qmgr[2]: 1A2B3C: from=<a@b>, size=1, nrcpt=1 (queue active)\n", 0},
		{"NOQUEUE", tag + "postfix/smtpd[1]: NOQUEUE: client=h[192.0.2.1]\n" + tag + "postfix/qmgr[2]: NOQUEUE: from=<a@b>, size=1, nrcpt=1 (queue active)\n", 0},
		{"submission", tag + "postfix/submission/smtpd[1]: 1A2B3C: client=h[192.0.2.1]\n" + tag + "postfix/qmgr[2]: 1A2B3C: from=<a@b>, size=1, nrcpt=1 (queue active)\n", 0},
		{"bracket in name", tag + "postfix/smtpd[1]: 1A2B3C: client=h[6.6.6.6][192.0.2.1]\n" + tag + "postfix/qmgr[2]: 1A2B3C: from=<a@b>, size=1, nrcpt=1 (queue active)\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := 0
			if _, err := Analyze(strings.NewReader(tc.log), sampleMatcher(t), func(r Match) {
				if r.Kind == banner.KindDelivered {
					n++
				}
			}); err != nil {
				t.Fatal(err)
			}
			if n != tc.want {
				t.Errorf("%d deliveries, want %d", n, tc.want)
			}
		})
	}
}

// TestDeliveriesBounded: queue ids whose queue-active line never comes are
// dropped oldest first, and the table and its FIFO stay bounded.
func TestDeliveriesBounded(t *testing.T) {
	d := NewDeliveries(8)
	m := sampleMatcher(t)
	now := time.Now().Format(time.Stamp)
	for i := range 10_000 {
		line := fmt.Sprintf("%s mx postfix/smtpd[1]: %X: client=h[192.0.2.1]", now, 0x100000+i)
		d.Record(m, &Record{Line: []byte(line)})
		if i%3 == 0 { // some complete
			d.Record(m, &Record{Line: fmt.Appendf(nil, "%s mx postfix/qmgr[2]: %X: from=<>, size=1, nrcpt=1 (queue active)", now, 0x100000+i)})
		}
	}
	if n := d.Len(); n > 8 {
		t.Errorf("%d pending, bound 8", n)
	}
	if n := len(d.order); n > 3*8+1 {
		t.Errorf("FIFO holds %d keys, bound %d", n, 3*8+1)
	}
	_, ok := d.Record(m, &Record{Line: fmt.Appendf(nil, "%s mx postfix/qmgr[2]: %X: from=<>, size=1, nrcpt=1 (queue active)", now, 0x100000+9_998)}) // 9,999 completed
	if !ok {
		t.Error("the newest pending queue id was dropped")
	}
}

// FuzzDeliveries: no pair of lines crashes the table, and a delivery's
// address is always the bracket of a client= line fed to it.
func FuzzDeliveries(f *testing.F) {
	f.Add("Nov 25 06:51:12 mx postfix/smtpd[6296]: 8B7E0984605: client=unknown[198.51.100.8]",
		"Nov 25 06:51:12 mx postfix/qmgr[6293]: 8B7E0984605: from=<sender@example.net>, size=392, nrcpt=1 (queue active)")
	f.Add("Nov 25 06:51:12 mx postfix/smtpd[1]: 4Qx7Lm0bq9z9vTt: client=h[2001:db8::1]:25, orig_client=x[1.2.3.4]",
		"Nov 25 06:51:12 mx postfix/qmgr[2]: 4Qx7Lm0bq9z9vTt: from=<>, size=1, nrcpt=1 (queue active)")
	m, err := NewMatcher(DefaultMatcherConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		d := NewDeliveries(4)
		d.Record(m, &Record{Line: []byte(a)})
		r, ok := d.Record(m, &Record{Line: []byte(b)})
		if !ok {
			return
		}
		// The address must be the text of a bracket after client= (in any
		// spelling netip accepts: "[::01]" is ::1).
		_, after, found := strings.Cut(a, "client=")
		fromLine := false
		for found && !fromLine {
			var inner string
			_, after, found = strings.Cut(after, "[")
			inner, _, _ = strings.Cut(after, "]")
			if p, err := netip.ParseAddr(inner); err == nil && p.Unmap() == r.Addr.Unmap() {
				fromLine = true
			}
		}
		if !fromLine {
			t.Errorf("delivery of %v not from the client= line %q", r.Addr, a)
		}
	})
}

// BenchmarkDeliveries: what pairing deliveries adds per line, on
// testdata/maillog/sample.log, beside the matcher alone (its floor),
// interleaved in one run: "matcher" is MatchLine over every line,
// "matcher+deliveries" also hands each unmatched line to Deliveries.Record
// as the Watcher does.
func BenchmarkDeliveries(b *testing.B) {
	data, err := os.ReadFile(testenv.Fixture(b, "maillog/sample.log"))
	if err != nil {
		b.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	m := sampleMatcher(b)
	for _, withDeliveries := range []bool{false, true} {
		name := "matcher"
		if withDeliveries {
			name = "matcher+deliveries"
		}
		b.Run(name, func(b *testing.B) {
			d := NewDeliveries(0)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				for _, l := range lines {
					if _, out := m.MatchLine(l); out == NoMatch && withDeliveries {
						if _, ok := d.Record(m, &Record{Line: l}); ok {
							n++
						}
					}
				}
			}
			b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}

// TestDeliveriesJournalEntries: entries already split (the journal's
// identifier and message) pair as raw lines do.
func TestDeliveriesJournalEntries(t *testing.T) {
	m := sampleMatcher(t)
	d := NewDeliveries(0)
	at := time.Date(2026, 12, 2, 6, 20, 0, 0, time.UTC)
	if _, ok := d.Record(m, &Record{Identifier: []byte("postfix/smtpd"), PID: 1, Time: at, Message: []byte("4Qx7Lm0bq9z9vTt: client=mail.example.net[2001:db8::25]")}); ok {
		t.Fatal("a client= entry alone is a delivery")
	}
	r, ok := d.Record(m, &Record{Identifier: []byte("postfix/qmgr"), PID: 2, Time: at, Message: []byte("4Qx7Lm0bq9z9vTt: from=<a@example.net>, size=1, nrcpt=1 (queue active)")})
	if !ok || r.Addr != netip.MustParseAddr("2001:db8::25") || !r.Time.Equal(at) || r.Key != "4Qx7Lm0bq9z9vTt" {
		t.Errorf("journal delivery = %+v, %v", r, ok)
	}
}
