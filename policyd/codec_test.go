package policyd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/banner-mta/banner/internal/testenv"
)

var testLimits = Limits{MaxLineBytes: DefaultMaxLineBytes, MaxAttrs: DefaultMaxAttrs, MaxRequestBytes: DefaultMaxRequestBytes}

// loadCaptures returns the real Postfix 3.7 requests in testdata, each in
// wire form (attribute lines plus the terminating empty line).
func loadCaptures(t testing.TB) []string {
	t.Helper()
	data, err := os.ReadFile(testenv.Fixture(t, "postfix/policy-requests-3.7.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	var cur strings.Builder
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if strings.HasPrefix(line, "--- ") || line == "" {
			if cur.Len() > 0 {
				out = append(out, cur.String()+"\n")
				cur.Reset()
			}
			continue
		}
		cur.WriteString(line)
	}
	if len(out) == 0 {
		t.Fatal("no requests in capture file")
	}
	return out
}

func parse(t testing.TB, wire string) (*Request, error) {
	t.Helper()
	req := new(Request)
	err := ReadRequest(bufio.NewReader(strings.NewReader(wire)), req, testLimits)
	return req, err
}

func TestReadRequestPostfixCaptures(t *testing.T) {
	caps := loadCaptures(t)
	want := []struct {
		state, recipient, queueID, instance string
		rcptCount                           int
	}{
		{"RCPT", "alice@example.test", "", "6b29.6b05eb8e.b8ce6.0", 0},
		{"RCPT", "carol@example.test", "BB59DBE20B", "6b29.6b05eb8e.b8ce6.0", 0},
		{"RCPT", "nobody@example.test", "BB59DBE20B", "6b29.6b05eb8e.b8ce6.0", 0},
		{"DATA", "", "BB59DBE20B", "6b29.6b05eb8e.b8ce6.0", 3},
		{"END-OF-MESSAGE", "", "BB59DBE20B", "6b29.6b05eb8e.b8ce6.0", 3},
		{"RCPT", "alice@example.test", "", "6e59.6b05ebb4.996d8.0", 0},
		{"RCPT", "alice@example.test", "", "6fc6.6b05ebd1.1ce29.0", 0},
		{"RCPT", "alice@example.test", "", "6fc6.6b05ebd1.3ac6a.0", 0},
	}
	if len(caps) != len(want) {
		t.Fatalf("got %d captures, want %d", len(caps), len(want))
	}
	for i, w := range want {
		t.Run(fmt.Sprintf("%d_%s", i+1, w.state), func(t *testing.T) {
			req, err := parse(t, caps[i])
			if err != nil {
				t.Fatalf("ReadRequest: %v", err)
			}
			if req.Len() != 29 {
				t.Errorf("Len = %d, want 29", req.Len())
			}
			addr, err := req.ClientAddr()
			if err != nil || addr != netip.MustParseAddr("127.0.0.1") {
				t.Errorf("ClientAddr = %v, %v", addr, err)
			}
			n, err := req.RecipientCount()
			if err != nil || n != w.rcptCount {
				t.Errorf("RecipientCount = %d, %v; want %d", n, err, w.rcptCount)
			}
			checks := []struct{ name, got, want string }{
				{"Type", req.Type(), "smtpd_access_policy"},
				{"ProtocolState", req.ProtocolState(), w.state},
				{"Recipient", req.Recipient(), w.recipient},
				{"QueueID", req.QueueID(), w.queueID},
				{"Instance", req.Instance(), w.instance},
				{"Sender", req.Sender(), "normal@sender.example"},
				{"HeloName", req.HeloName(), "client.example.net"},
				{"ClientName", req.ClientName(), "unknown"},
				{"SASLUsername", req.SASLUsername(), ""},
				{"PolicyContext", req.PolicyContext(), ""},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %q, want %q", c.name, c.got, c.want)
				}
			}
			if v, ok := req.Lookup("ccert_subject"); !ok || v != "" {
				t.Errorf(`Lookup("ccert_subject") = %q, %v; want "", true`, v, ok)
			}
			if _, ok := req.Lookup("no_such_attr"); ok {
				t.Error("Lookup of absent attribute reported present")
			}
		})
	}
}

// TestReadRequestPipelined reads all captures from one stream with one
// Request, as a connection does, and checks reuse does not corrupt values
// handed out earlier.
func TestReadRequestPipelined(t *testing.T) {
	caps := loadCaptures(t)
	br := bufio.NewReaderSize(strings.NewReader(strings.Join(caps, "")), 16) // tiny buffer: fragment path
	req := new(Request)
	var recipients []string
	for range caps {
		if err := ReadRequest(br, req, testLimits); err != nil {
			t.Fatal(err)
		}
		recipients = append(recipients, req.Recipient())
	}
	if err := ReadRequest(br, req, testLimits); !errors.Is(err, io.EOF) {
		t.Fatalf("after last request: err = %v, want io.EOF", err)
	}
	want := "alice carol nobody   alice alice alice"
	var got []string
	for _, r := range recipients {
		got = append(got, strings.TrimSuffix(r, "@example.test"))
	}
	if g := strings.Join(got, " "); g != want {
		t.Errorf("recipients = %q, want %q", g, want)
	}
}

func TestReadRequestCases(t *testing.T) {
	long := strings.Repeat("x", DefaultMaxLineBytes)
	tests := []struct {
		name   string
		wire   string
		lim    *Limits
		attrs  []Attr // wanted attributes in wire order (nil: don't check)
		get    map[string]string
		reason Reason // wanted protocol error, "" for success
		err    error  // other wanted error
	}{
		{name: "srs sender", wire: "request=smtpd_access_policy\nsender=SRS0=HHH=TT=example.org=alice@forwarder.example\n\n",
			get: map[string]string{"sender": "SRS0=HHH=TT=example.org=alice@forwarder.example"}},
		{name: "verp sender", wire: "sender=list-bounces+bob=example.com@lists.example\n\n",
			get: map[string]string{"sender": "list-bounces+bob=example.com@lists.example"}},
		{name: "value is only equals", wire: "a==\nb=\n\n", attrs: []Attr{{"a", "="}, {"b", ""}}},
		{name: "empty values", wire: "queue_id=\nsasl_username=\nsize=0\n\n",
			attrs: []Attr{{"queue_id", ""}, {"sasl_username", ""}, {"size", "0"}}},
		{name: "duplicates last wins", wire: "recipient=a@x\nrecipient=b@x\nrecipient=c@x\n\n",
			attrs: []Attr{{"recipient", "a@x"}, {"recipient", "b@x"}, {"recipient", "c@x"}},
			get:   map[string]string{"recipient": "c@x"}},
		{name: "unknown attributes kept", wire: "future_attr=1\nrequest=smtpd_access_policy\n\n",
			get: map[string]string{"future_attr": "1", "request": "smtpd_access_policy"}},
		{name: "crlf tolerated", wire: "request=smtpd_access_policy\r\nclient_address=::1\r\n\r\n",
			get: map[string]string{"request": "smtpd_access_policy", "client_address": "::1"}},
		{name: "inner cr kept", wire: "helo_name=a\rb\n\n", get: map[string]string{"helo_name": "a\rb"}},
		{name: "8bit value", wire: "recipient=jörg@exämple.test\n\n", get: map[string]string{"recipient": "jörg@exämple.test"}},
		{name: "spaces kept", wire: "ccert_subject= CN=a b \n\n", get: map[string]string{"ccert_subject": " CN=a b "}},
		{name: "line at limit", wire: "a=" + long[2:] + "\n\n", get: map[string]string{"a": long[2:]}},
		{name: "line at limit with cr", wire: "a=" + long[2:] + "\r\n\n", get: map[string]string{"a": long[2:]}},

		{name: "eof at start", wire: "", err: io.EOF},
		{name: "line over limit", wire: "a=" + long[1:] + "\n\n", reason: ReasonLineTooLong},
		{name: "10MB line", wire: "a=" + strings.Repeat("y", 10<<20) + "\n\n", reason: ReasonLineTooLong},
		{name: "too many attributes", wire: strings.Repeat("a=b\n", DefaultMaxAttrs+1) + "\n", reason: ReasonTooManyAttrs},
		{name: "max attributes ok", wire: strings.Repeat("a=b\n", DefaultMaxAttrs) + "\n", get: map[string]string{"a": "b"}},
		{name: "request too large", wire: strings.Repeat("a="+strings.Repeat("v", 98)+"\n", 11) + "\n",
			lim: &Limits{MaxLineBytes: 200, MaxAttrs: 100, MaxRequestBytes: 1000}, reason: ReasonRequestTooLarge},
		{name: "nul in value", wire: "a=b\x00c\n\n", reason: ReasonNULByte},
		{name: "nul in name", wire: "\x00=b\n\n", reason: ReasonNULByte},
		{name: "missing equals", wire: "request smtpd_access_policy\n\n", reason: ReasonMissingEquals},
		{name: "empty name", wire: "=value\n\n", reason: ReasonEmptyName},
		{name: "empty request", wire: "\n", reason: ReasonEmptyRequest},
		{name: "empty request crlf", wire: "\r\n", reason: ReasonEmptyRequest},
		{name: "truncated mid line", wire: "request=smtpd_acc", reason: ReasonTruncated},
		{name: "truncated before blank", wire: "request=smtpd_access_policy\n", reason: ReasonTruncated},
		{name: "garbage", wire: "\xff\xfe\x01\x02GET / HTTP/1.1\r\n\r\n", reason: ReasonMissingEquals},
		{name: "http request", wire: "GET / HTTP/1.1\r\nHost: x\r\n\r\n", reason: ReasonMissingEquals},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lim := testLimits
			if tt.lim != nil {
				lim = *tt.lim
			}
			req := new(Request)
			err := ReadRequest(bufio.NewReader(strings.NewReader(tt.wire)), req, lim)
			var pe *ProtocolError
			switch {
			case tt.reason != "":
				if !errors.As(err, &pe) || pe.Reason != tt.reason {
					t.Fatalf("err = %v, want protocol error %s", err, tt.reason)
				}
				return
			case tt.err != nil:
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			case err != nil:
				t.Fatalf("ReadRequest: %v", err)
			}
			if tt.attrs != nil {
				var got []Attr
				for n, v := range req.All() {
					got = append(got, Attr{n, v})
				}
				if len(got) != len(tt.attrs) {
					t.Fatalf("attrs = %q, want %q", got, tt.attrs)
				}
				for i := range got {
					if got[i] != tt.attrs[i] {
						t.Errorf("attr %d = %q, want %q", i, got[i], tt.attrs[i])
					}
				}
			}
			for k, v := range tt.get {
				if g := req.Get(k); g != v {
					t.Errorf("Get(%q) = %q, want %q", k, clip([]byte(g)), clip([]byte(v)))
				}
			}
		})
	}
}

func TestTypedAccessors(t *testing.T) {
	tests := []struct {
		wire    string
		addr    string // "" = error wanted
		count   int
		countOK bool
	}{
		{"client_address=2001:db8::7\nrecipient_count=3\n\n", "2001:db8::7", 3, true},
		{"client_address=::ffff:192.0.2.1\n\n", "192.0.2.1", 0, true},
		{"client_address=unknown\nrecipient_count=x\n\n", "", 0, false},
		{"recipient_count=\n\n", "", 0, true},
	}
	for _, tt := range tests {
		t.Run(strings.SplitN(tt.wire, "\n", 2)[0], func(t *testing.T) {
			req, err := parse(t, tt.wire)
			if err != nil {
				t.Fatal(err)
			}
			a, err := req.ClientAddr()
			if tt.addr == "" && err == nil || tt.addr != "" && (err != nil || a.String() != tt.addr) {
				t.Errorf("ClientAddr = %v, %v; want %q", a, err, tt.addr)
			}
			n, err := req.RecipientCount()
			if (err == nil) != tt.countOK || n != tt.count {
				t.Errorf("RecipientCount = %d, %v; want %d ok=%v", n, err, tt.count, tt.countOK)
			}
		})
	}
}

func TestWriteReply(t *testing.T) {
	tests := []struct {
		action, wire string
		ok           bool
	}{
		{"DUNNO", "action=DUNNO\n\n", true},
		{"450 4.7.1 Service unavailable; try later", "action=450 4.7.1 Service unavailable; try later\n\n", true},
		{"", "", false},
		{"DUNNO\n\naction=OK", "", false},
		{"REJECT a\rb", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			var b bytes.Buffer
			err := WriteReply(&b, tt.action)
			if (err == nil) != tt.ok || b.String() != tt.wire {
				t.Errorf("WriteReply(%q) wrote %q, err %v; want %q ok=%v", tt.action, b.String(), err, tt.wire, tt.ok)
			}
		})
	}
}

func TestValidAction(t *testing.T) {
	good := []string{"DUNNO", "dunno", "OK", "REJECT", "REJECT go away", "reject spam",
		"DEFER", "DEFER_IF_PERMIT Service temporarily unavailable", "DEFER_IF_REJECT x",
		"450 4.7.1 Client host rejected: listed", "554 5.7.1 no", "421 closing", "550 go away",
		"DISCARD", "HOLD spam?", "INFO note", "WARN hmm", "FILTER smtp:[127.0.0.1]:10025",
		"REDIRECT abuse@example.test", "BCC archive@example.test", "PREPEND X-Banner: listed",
		"reject_unauth_destination", "permit_mynetworks", "defer_if_permit_x"}
	bad := []string{"", "DUNNO please", "OK fine", "450", "4.7.1", "250 ok", "45 short", "6000 x",
		"450 5.7.1 class mismatch", "554 4.7.1 class mismatch", "FILTER", "FILTER nocolon",
		"REDIRECT", "BCC", "PREPEND", " DUNNO", "DUNNO ", "DUNNO\n", "REJECT a\x00b",
		"ACCEPT", "permit_", "my_class", "123456", "REJECT\ttab"}
	for _, a := range good {
		t.Run("good/"+a, func(t *testing.T) {
			if err := ValidAction(a); err != nil {
				t.Errorf("ValidAction(%q) = %v", a, err)
			}
		})
	}
	for _, a := range bad {
		t.Run("bad/"+a, func(t *testing.T) {
			if err := ValidAction(a); err == nil {
				t.Errorf("ValidAction(%q) = nil, want error", a)
			}
		})
	}
}

// BenchmarkParseRequest reads a real 576-byte Postfix request as the
// server does, the request already in the reader's buffer (buffered: the
// fast path), and line by line (the path of requests that arrive in
// pieces, and of the code before the fast path). 1 allocation, the
// request's string.
func BenchmarkParseRequest(b *testing.B) {
	wire := loadCaptures(b)[1]
	for _, bc := range []struct {
		name string
		read func(*bufio.Reader, *Request, Limits) error
	}{
		{"buffered", ReadRequest},
		{"lines", func(br *bufio.Reader, req *Request, lim Limits) error { req.reset(); return readLines(br, req, lim) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			sr := strings.NewReader(wire)
			br := bufio.NewReader(sr)
			req := new(Request)
			b.SetBytes(int64(len(wire)))
			b.ReportAllocs()
			for b.Loop() {
				sr.Reset(wire)
				br.Reset(sr)
				br.Peek(1)
				if err := bc.read(br, req, testLimits); err != nil {
					b.Fatal(err)
				}
				if req.Get("client_address") == "" {
					b.Fatal("no client_address")
				}
			}
		})
	}
}
