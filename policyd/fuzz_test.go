package policyd

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
)

// FuzzParseRequest feeds arbitrary bytes to ReadRequest. Whatever it
// accepts must re-encode to a stream that parses to the same attributes,
// and no name or value may carry a byte the protocol forbids.
func FuzzParseRequest(f *testing.F) {
	for _, c := range loadCaptures(f) {
		f.Add([]byte(c))
	}
	for _, s := range []string{
		"sender=SRS0=HHH=TT=example.org=alice@forwarder.example\n\n",
		"a=1\na=2\n\n", "a=\n\n", "=x\n\n", "x\n\n", "\n", "a=b\r\n\r\n", "a=b\x00\n\n",
		"a=b", "a=b\n", "a=b\n\na=c\n\n", "\r\n", "a=b\r\r\n\n",
		"recipient=a@x\nrecipient=b@x\n\n", "sender=\nsender=s\nclient_address=1\n\nclient_address=2\n\n",
	} {
		f.Add([]byte(s))
	}
	lim := Limits{MaxLineBytes: 64, MaxAttrs: 8, MaxRequestBytes: 256}
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(data), 16)
		req := new(Request)
		for {
			err := ReadRequest(br, req, lim)
			if err != nil {
				var pe *ProtocolError
				if !errors.Is(err, io.EOF) && !errors.As(err, &pe) {
					t.Fatalf("unexpected error type %T: %v", err, err)
				}
				return
			}
			if req.Len() == 0 || req.Len() > lim.MaxAttrs {
				t.Fatalf("accepted request with %d attributes", req.Len())
			}
			var wire strings.Builder
			var attrs []Attr
			for n, v := range req.All() {
				if n == "" || strings.ContainsAny(n, "=\n\x00") || strings.ContainsAny(v, "\n\x00") {
					t.Fatalf("bad attribute %q=%q", n, v)
				}
				if len(n)+1+len(v) > lim.MaxLineBytes {
					t.Fatalf("attribute longer than limit: %d", len(n)+1+len(v))
				}
				attrs = append(attrs, Attr{n, v})
				wire.WriteString(n + "=" + v + "\n")
			}
			wire.WriteString("\n")
			again := new(Request)
			if err := ReadRequest(bufio.NewReader(strings.NewReader(wire.String())), again, lim); err != nil {
				// A value ending in "\r" loses it on re-read: that is the
				// documented CRLF tolerance, not a bug.
				if strings.HasSuffix(attrs[len(attrs)-1].Value, "\r") {
					continue
				}
				t.Fatalf("re-encoded request %q does not parse: %v", wire.String(), err)
			}
			i := 0
			for n, v := range again.All() {
				if attrs[i] != (Attr{n, v}) && !strings.HasSuffix(attrs[i].Value, "\r") {
					t.Fatalf("round trip changed attribute %d: %q -> %q", i, attrs[i], Attr{n, v})
				}
				i++
			}
			for _, a := range attrs {
				if got, _ := req.Lookup(a.Name); got != lastValue(attrs, a.Name) {
					t.Fatalf("Lookup(%q) = %q, want last value", a.Name, got)
				}
			}
		}
	})
}

func lastValue(attrs []Attr, name string) string {
	v := ""
	for _, a := range attrs {
		if a.Name == name {
			v = a.Value
		}
	}
	return v
}

// FuzzReadBuffered checks ReadRequest's fast path (a request wholly in
// the reader's buffer, parsed in place) against reading line by line: the
// same stream read through a large buffer and one byte at a time must give
// the same requests and the same error.
func FuzzReadBuffered(f *testing.F) {
	for _, c := range loadCaptures(f) {
		f.Add([]byte(c + c))
	}
	for _, s := range []string{
		"a=1\na=2\n\n", "a=\n\n", "=x\n\n", "x\n\n", "\n", "a=b\r\n\r\n", "a=b\x00\n\n",
		"a=b", "a=b\n", "a=b\n\na=c\n\n", "\r\n", "a=b\r\r\n\n", "a=b\n\r\n", "a=b\nc=d\n\n\n",
	} {
		f.Add([]byte(s))
	}
	lim := Limits{MaxLineBytes: 64, MaxAttrs: 8, MaxRequestBytes: 256}
	read := func(r io.Reader) []string {
		br := bufio.NewReaderSize(r, 4096)
		req := new(Request)
		var out []string
		for {
			br.Peek(1) // as the server does before reading a request
			if err := ReadRequest(br, req, lim); err != nil {
				return append(out, "error: "+err.Error())
			}
			var b strings.Builder
			for n, v := range req.All() {
				b.WriteString(n + "=" + v + "\n")
			}
			out = append(out, b.String())
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fast := read(bytes.NewReader(data))
		slow := read(iotest.OneByteReader(bytes.NewReader(data)))
		if !slices.Equal(fast, slow) {
			t.Fatalf("buffered %q\nline by line %q", fast, slow)
		}
	})
}
