package postfixtest

import (
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// sessionTimeout bounds one SMTP session (the policy service may take up
// to its 10s timeout per RCPT).
const sessionTimeout = 60 * time.Second

// Message is one SMTP transaction to send.
type Message struct {
	// ClientAddr is presented with XCLIENT ADDR=, so Postfix treats the
	// session as coming from it. The zero value skips XCLIENT: the client
	// is then 127.0.0.1.
	ClientAddr netip.Addr
	// ClientName is the XCLIENT NAME=; "" means [UNAVAILABLE] (Postfix
	// logs the client as unknown[ADDR]).
	ClientName string
	// Helo is the EHLO name; "" means client.example.net.
	Helo string
	// From is the envelope sender without angle brackets; "" is <>.
	From string
	// To are the envelope recipients, one RCPT TO each.
	To []string
	// Data is the message (headers and body, "\n" or "\r\n" line ends);
	// "" means a minimal message. It is sent only if a RCPT was accepted.
	Data string
}

// Reply is one SMTP server reply.
type Reply struct {
	// Code is the three-digit reply code; 0 if there was no reply.
	Code int
	// Text is the reply text without the code; lines of a multi-line
	// reply are joined with "\n".
	Text string
}

// String renders the reply as "CODE text".
func (r Reply) String() string {
	if r.Code == 0 {
		return "(no reply)"
	}
	return strconv.Itoa(r.Code) + " " + r.Text
}

// OK reports a 2xx or 3xx reply.
func (r Reply) OK() bool { return r.Code >= 200 && r.Code < 400 }

// Step is one command and the reply to it.
type Step struct {
	// Command as sent, without CRLF; "" for the greeting and for the
	// end-of-data dot is "." .
	Command string
	Reply   Reply
}

// SMTPResult is everything a session said.
type SMTPResult struct {
	// Steps are all commands and replies in order.
	Steps []Step
	// Greeting is the first 220 reply.
	Greeting Reply
	// XClient is the reply to XCLIENT (a new 220 greeting) if it was sent.
	XClient Reply
	// Mail is the reply to MAIL FROM.
	Mail Reply
	// Rcpt holds the reply to each RCPT TO, in the order of Message.To.
	Rcpt []Reply
	// Data is the reply to DATA (354), zero if no RCPT was accepted.
	Data Reply
	// Queued is the reply after the message ("250 2.0.0 Ok: queued as
	// ID"), zero if no message was sent.
	Queued Reply
	// QueueID is the queue id from Queued, if any.
	QueueID string
}

// String renders the whole dialogue, one step per line.
func (r SMTPResult) String() string {
	var b strings.Builder
	for _, s := range r.Steps {
		if s.Command != "" {
			fmt.Fprintf(&b, "C: %s\n", s.Command)
		}
		fmt.Fprintf(&b, "S: %s\n", strings.ReplaceAll(s.Reply.String(), "\n", "\nS:  "))
	}
	return b.String()
}

var queuedRE = regexp.MustCompile(`queued as ([0-9A-Za-z]+)`)

// Send runs one SMTP session against the instance: EHLO, XCLIENT ADDR=...
// NAME=... and EHLO again (if msg.ClientAddr is set), MAIL FROM, one RCPT TO
// per recipient, DATA and the message if any RCPT was accepted, QUIT. SMTP
// rejections are returned in the result; a transport error or a reply
// that breaks the dialogue (e.g. XCLIENT refused) fails the test.
func (in *Instance) Send(t testing.TB, msg Message) SMTPResult {
	t.Helper()
	res, err := in.SendMessage(msg)
	if err != nil {
		t.Fatalf("postfixtest: SMTP session to %s: %v\n%s", in.SMTPAddr, err, res)
	}
	return res
}

// SendMessage is Send without a testing.TB: it returns the dialogue so far
// and an error for transport failures or a reply that ends the dialogue.
func (in *Instance) SendMessage(msg Message) (SMTPResult, error) {
	return SendSMTP(in.SMTPAddr, msg)
}

// SendSMTP runs the session of Send against any SMTP server at addr.
func SendSMTP(addr string, msg Message) (res SMTPResult, err error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return res, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(sessionTimeout)); err != nil {
		return res, fmt.Errorf("setting deadline: %w", err)
	}
	tp := textproto.NewConn(conn)

	read := func(cmd string) (Reply, error) {
		code, text, err := tp.ReadResponse(0)
		r := Reply{Code: code, Text: text}
		if err != nil {
			if _, ok := err.(*textproto.Error); !ok {
				return r, fmt.Errorf("reading reply to %q: %w", cmd, err)
			}
		}
		res.Steps = append(res.Steps, Step{Command: cmd, Reply: r})
		return r, nil
	}
	cmd := func(format string, args ...any) (Reply, error) {
		line := fmt.Sprintf(format, args...)
		if err := tp.PrintfLine("%s", line); err != nil {
			return Reply{}, fmt.Errorf("sending %q: %w", line, err)
		}
		return read(line)
	}
	// must sends a command (or reads the greeting if line is "") and
	// requires a 2xx reply.
	must := func(line string) (Reply, error) {
		var r Reply
		var err error
		if line == "" {
			r, err = read("")
		} else {
			r, err = cmd("%s", line)
		}
		if err != nil {
			return r, err
		}
		if r.Code/100 != 2 {
			return r, fmt.Errorf("unexpected reply %s to %q", r, line)
		}
		return r, nil
	}
	quit := func() { cmd("QUIT") } //nolint:errcheck // the session is over either way

	helo := msg.Helo
	if helo == "" {
		helo = "client.example.net"
	}
	if res.Greeting, err = must(""); err != nil {
		return res, err
	}
	if _, err = must("EHLO " + helo); err != nil {
		return res, err
	}
	if msg.ClientAddr.IsValid() {
		name := msg.ClientName
		if name == "" {
			name = "[UNAVAILABLE]"
		}
		if res.XClient, err = must("XCLIENT ADDR=" + xtext(msg.ClientAddr.String()) + " NAME=" + xtext(name)); err != nil {
			return res, err
		}
		if _, err = must("EHLO " + helo); err != nil {
			return res, err
		}
	}
	if res.Mail, err = cmd("MAIL FROM:<%s>", msg.From); err != nil {
		return res, err
	}
	if !res.Mail.OK() {
		quit()
		return res, nil
	}
	accepted := 0
	for _, to := range msg.To {
		r, err := cmd("RCPT TO:<%s>", to)
		if err != nil {
			return res, err
		}
		res.Rcpt = append(res.Rcpt, r)
		if r.OK() {
			accepted++
		}
	}
	if accepted > 0 {
		if res.Data, err = cmd("DATA"); err != nil {
			return res, err
		}
		if res.Data.Code == 354 {
			body := msg.Data
			if body == "" {
				body = fmt.Sprintf("From: <%s>\nTo: <%s>\nSubject: postfixtest\n\ntest message\n", msg.From, strings.Join(msg.To, ">, <"))
			}
			w := tp.DotWriter()
			if _, err := w.Write([]byte(body)); err != nil {
				return res, fmt.Errorf("sending message: %w", err)
			}
			if err := w.Close(); err != nil {
				return res, fmt.Errorf("sending message: %w", err)
			}
			if res.Queued, err = read("."); err != nil {
				return res, err
			}
			if m := queuedRE.FindStringSubmatch(res.Queued.Text); m != nil {
				res.QueueID = m[1]
			}
		}
	}
	quit()
	return res, nil
}

// xtext encodes an XCLIENT attribute value (RFC 3461 xtext).
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '!' || c > '~' || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}
