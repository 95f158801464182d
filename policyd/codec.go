package policyd

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/netip"
	"strconv"
)

// Limits bounds what ReadRequest accepts. A zero field means "no limit";
// Config.Validate makes sure the server never runs with zero limits.
type Limits struct {
	MaxLineBytes    int // longest line, without its "\n"
	MaxAttrs        int // most name=value lines in one request
	MaxRequestBytes int // most bytes in one request, newlines included
}

// Reason names one kind of protocol error. The values are stable: they are
// the keys of Stats.ProtocolErrors and appear in logs.
type Reason string

// Protocol error reasons.
const (
	ReasonLineTooLong     Reason = "line_too_long"
	ReasonTooManyAttrs    Reason = "too_many_attributes"
	ReasonRequestTooLarge Reason = "request_too_large"
	ReasonNULByte         Reason = "nul_byte"
	ReasonMissingEquals   Reason = "missing_equals"
	ReasonEmptyName       Reason = "empty_name"
	ReasonEmptyRequest    Reason = "empty_request"
	ReasonTruncated       Reason = "truncated"     // peer closed the connection inside a request
	ReasonReadTimeout     Reason = "read_timeout"  // request not complete within ReadTimeout
	ReasonWriteFailed     Reason = "write_failed"  // reply could not be written
	ReasonHandlerPanic    Reason = "handler_panic" // the Handler panicked
	ReasonBadAction       Reason = "bad_action"    // the Handler returned an action unfit for the wire
)

// reasons lists every Reason, in the order used for counters.
var reasons = [...]Reason{
	ReasonLineTooLong, ReasonTooManyAttrs, ReasonRequestTooLarge, ReasonNULByte,
	ReasonMissingEquals, ReasonEmptyName, ReasonEmptyRequest, ReasonTruncated,
	ReasonReadTimeout, ReasonWriteFailed, ReasonHandlerPanic, ReasonBadAction,
}

// ProtocolError reports malformed input from the policy client. The server
// logs it and closes the connection without a reply, as SMTPD_POLICY_README
// asks ("in case of trouble ... log a warning and disconnect").
type ProtocolError struct {
	Reason Reason
	Line   int    // 1-based line number within the request, 0 if not tied to a line
	Detail string // human text, e.g. the limit that was exceeded
}

func (e *ProtocolError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("policy protocol error: %s at line %d: %s", e.Reason, e.Line, e.Detail)
	}
	return fmt.Sprintf("policy protocol error: %s: %s", e.Reason, e.Detail)
}

// Attr is one name=value attribute of a request.
type Attr struct {
	Name, Value string
}

// Request is one parsed policy request. Names and values are substrings of a
// single string made per request (the only allocation of a parse, once the
// Request's buffers have grown), so reading them does not allocate and they
// stay valid after the handler returns.
//
// Duplicate attributes are all kept, in wire order, in All and Attr; Get and Lookup
// return the last one (Postfix allows first- or last-wins).
type Request struct {
	s     string // the request's lines; names and values are substrings
	spans []span // where each attribute sits in s (and in buf while reading)
	buf   []byte // raw lines of the request being read
}

// Get returns the value of the last attribute called name, or "" if absent.
func (r *Request) Get(name string) string {
	v, _ := r.Lookup(name)
	return v
}

// Lookup returns the value of the last attribute called name and whether it
// was present at all (Postfix sends "name=" for some unavailable values).
func (r *Request) Lookup(name string) (string, bool) {
	for i := len(r.spans) - 1; i >= 0; i-- {
		sp := r.spans[i]
		if int(sp.nameEnd-sp.nameStart) == len(name) && r.s[sp.nameStart:sp.nameEnd] == name {
			return r.s[sp.nameEnd+1 : sp.valueEnd], true
		}
	}
	return "", false
}

// Len returns the number of attribute lines, duplicates included.
func (r *Request) Len() int { return len(r.spans) }

// Attr returns the i-th attribute in wire order, 0 <= i < Len().
func (r *Request) Attr(i int) Attr {
	sp := r.spans[i]
	return Attr{Name: r.s[sp.nameStart:sp.nameEnd], Value: r.s[sp.nameEnd+1 : sp.valueEnd]}
}

// All yields every attribute in wire order, duplicates included.
func (r *Request) All() iter.Seq2[string, string] {
	return func(yield func(string, string) bool) {
		for i := range r.spans {
			a := r.Attr(i)
			if !yield(a.Name, a.Value) {
				return
			}
		}
	}
}

// Type returns the "request" attribute; Postfix always sends
// "smtpd_access_policy".
func (r *Request) Type() string { return r.Get("request") }

// ProtocolState returns the SMTP stage: CONNECT, EHLO, HELO, MAIL, RCPT,
// DATA, END-OF-MESSAGE, VRFY or ETRN.
func (r *Request) ProtocolState() string { return r.Get("protocol_state") }

// ClientAddr parses the "client_address" attribute.
func (r *Request) ClientAddr() (netip.Addr, error) {
	return parseAddrAttr(r, "client_address")
}

// ServerAddr parses the "server_address" attribute (Postfix 3.2 and later).
func (r *Request) ServerAddr() (netip.Addr, error) {
	return parseAddrAttr(r, "server_address")
}

func parseAddrAttr(r *Request, name string) (netip.Addr, error) {
	v := r.Get(name)
	a, err := netip.ParseAddr(v)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("policy attribute %s=%q: %w", name, v, err)
	}
	return a.Unmap(), nil
}

// ClientName returns the verified client hostname, or "unknown".
func (r *Request) ClientName() string { return r.Get("client_name") }

// ReverseClientName returns the unverified reverse DNS name, or "unknown".
func (r *Request) ReverseClientName() string { return r.Get("reverse_client_name") }

// HeloName returns the HELO/EHLO argument.
func (r *Request) HeloName() string { return r.Get("helo_name") }

// Sender returns the envelope sender ("" for the null sender).
func (r *Request) Sender() string { return r.Get("sender") }

// Recipient returns the envelope recipient (set in the RCPT stage, and in
// DATA and END-OF-MESSAGE only if there was exactly one recipient).
func (r *Request) Recipient() string { return r.Get("recipient") }

// RecipientCount parses "recipient_count" (non-zero only in DATA and
// END-OF-MESSAGE). An absent or empty attribute counts as 0.
func (r *Request) RecipientCount() (int, error) {
	v := r.Get("recipient_count")
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("policy attribute recipient_count=%q: %w", v, err)
	}
	return n, nil
}

// SASLUsername returns the SASL login name of an authenticated client, or "".
func (r *Request) SASLUsername() string { return r.Get("sasl_username") }

// SASLMethod returns the SASL mechanism of an authenticated client, or "".
func (r *Request) SASLMethod() string { return r.Get("sasl_method") }

// QueueID returns the queue ID, or "" before Postfix assigned one.
func (r *Request) QueueID() string { return r.Get("queue_id") }

// Instance returns the per-message instance identifier.
func (r *Request) Instance() string { return r.Get("instance") }

// PolicyContext returns the policy_context set on the Postfix side (3.1+).
func (r *Request) PolicyContext() string { return r.Get("policy_context") }

// reset empties r for reuse, keeping its storage.
func (r *Request) reset() {
	r.s = ""
	r.spans = r.spans[:0]
	r.buf = r.buf[:0]
}

// ReadRequest reads one request from br into req, reusing req's storage.
// It returns io.EOF if br ends before the first byte of a request (a clean
// close between requests), a *ProtocolError for malformed input or a limit
// exceeded (ReasonTruncated if br ends inside a request), or the reader's
// own error (e.g. a timeout).
//
// Lines end in "\n". One "\r" before the "\n" is stripped, so a request
// typed in telnet works; Postfix itself sends "\n" only. A line is split on
// its first "=", so values may contain "=" (SRS and VERP senders). Values
// may be empty; names may not. NUL bytes are refused anywhere.
func ReadRequest(br *bufio.Reader, req *Request, lim Limits) error {
	req.reset()
	if readBuffered(br, req, lim) {
		return nil
	}
	req.reset()
	return readLines(br, req, lim)
}

// readBuffered is ReadRequest's fast path: when br already holds a whole
// well-formed request within lim (a request from Postfix arrives in one
// read), it parses it in place, makes its string and consumes it. It
// reports false, having consumed nothing, for anything else (incomplete,
// malformed, over a limit): readLines then reads it and finds the error
// exactly as before. The result is the same as readLines'.
func readBuffered(br *bufio.Reader, req *Request, lim Limits) bool {
	buf, _ := br.Peek(br.Buffered())
	if lim.MaxRequestBytes > 0 && len(buf) > lim.MaxRequestBytes {
		buf = buf[:lim.MaxRequestBytes]
	}
	pos := 0
	for {
		nl := bytes.IndexByte(buf[pos:], '\n')
		if nl < 0 {
			return false // incomplete here; readLines reads on
		}
		line := buf[pos : pos+nl]
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			if len(req.spans) == 0 {
				return false
			}
			break
		}
		if lim.MaxLineBytes > 0 && len(line) > lim.MaxLineBytes {
			return false
		}
		if lim.MaxAttrs > 0 && len(req.spans) >= lim.MaxAttrs {
			return false
		}
		eq := bytes.IndexByte(line, '=')
		if eq <= 0 {
			return false
		}
		req.spans = append(req.spans, span{uint32(pos), uint32(pos + eq), uint32(pos + len(line))})
		pos += nl + 1
	}
	body := buf[:pos]
	if bytes.IndexByte(body, 0) >= 0 {
		return false
	}
	end := pos + 1 // the blank line's "\n"
	if buf[pos] == '\r' {
		end++
	}
	req.s = string(body)
	br.Discard(end)
	return true
}

// readLines is ReadRequest reading line by line, for requests not (yet)
// wholly buffered and for every error.
func readLines(br *bufio.Reader, req *Request, lim Limits) error {
	lineNo := 0
	total := 0
	for {
		lineNo++
		start := len(req.buf)
		for {
			frag, err := br.ReadSlice('\n')
			total += len(frag)
			req.buf = append(req.buf, frag...)
			lineLen := len(req.buf) - start
			if len(frag) > 0 && frag[len(frag)-1] == '\n' {
				lineLen--
			}
			// One byte over the limit is tolerated here: it may be the "\r" of
			// a "\r\n" whose "\n" has not arrived yet. The exact check follows.
			if lim.MaxLineBytes > 0 && lineLen > lim.MaxLineBytes+1 {
				return &ProtocolError{ReasonLineTooLong, lineNo,
					fmt.Sprintf("line longer than %d bytes", lim.MaxLineBytes)}
			}
			if lim.MaxRequestBytes > 0 && total > lim.MaxRequestBytes {
				return &ProtocolError{ReasonRequestTooLarge, lineNo,
					fmt.Sprintf("request larger than %d bytes", lim.MaxRequestBytes)}
			}
			if err == nil {
				break
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if errors.Is(err, io.EOF) {
				if total == 0 {
					return io.EOF
				}
				return &ProtocolError{ReasonTruncated, lineNo, "connection closed inside a request"}
			}
			return err
		}
		line := req.buf[start : len(req.buf)-1] // without "\n"
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if lim.MaxLineBytes > 0 && len(line) > lim.MaxLineBytes {
			return &ProtocolError{ReasonLineTooLong, lineNo,
				fmt.Sprintf("line longer than %d bytes", lim.MaxLineBytes)}
		}
		if len(line) == 0 {
			if len(req.spans) == 0 {
				return &ProtocolError{ReasonEmptyRequest, lineNo, "empty line without attributes"}
			}
			req.buf = req.buf[:start]
			break
		}
		eq := bytes.IndexByte(line, '=')
		switch {
		case eq < 0:
			return &ProtocolError{ReasonMissingEquals, lineNo, fmt.Sprintf("no '=' in %q", clip(line))}
		case eq == 0:
			return &ProtocolError{ReasonEmptyName, lineNo, fmt.Sprintf("empty attribute name in %q", clip(line))}
		}
		if lim.MaxAttrs > 0 && len(req.spans) >= lim.MaxAttrs {
			return &ProtocolError{ReasonTooManyAttrs, lineNo,
				fmt.Sprintf("more than %d attributes", lim.MaxAttrs)}
		}
		// Record offsets now; the strings are cut once the request is complete.
		req.spans = append(req.spans, span{uint32(start), uint32(start + eq), uint32(start + len(line))})
	}
	// NUL bytes are looked for once in the whole request rather than line
	// by line: a scan per line costs more than the scan itself.
	if i := bytes.IndexByte(req.buf, 0); i >= 0 {
		return &ProtocolError{ReasonNULByte, 1 + bytes.Count(req.buf[:i], []byte{'\n'}), "NUL byte in line"}
	}
	// One string for the whole request; every name and value is a substring.
	req.s = string(req.buf)
	return nil
}

// span is the [start:end) byte range of a name or value in Request.buf.
type span struct{ nameStart, nameEnd, valueEnd uint32 }

// clip shortens hostile input for log messages.
func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}
