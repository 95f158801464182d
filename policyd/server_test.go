package policyd

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/testenv"
)

// testServer runs a Server on 127.0.0.1:0 (plus any extra addresses) until
// the test ends. edit may change the config first.
func testServer(t testing.TB, h Handler, edit func(*Config), extra ...string) (*Server, string, *testenv.SyncBuffer) {
	t.Helper()
	logs := new(testenv.SyncBuffer)
	cfg := DefaultConfig()
	cfg.Listen = nil
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(append([]string{"127.0.0.1:0"}, extra...)...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if testing.Verbose() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return s, s.Addrs()[0].String(), logs
}

// echoHandler answers "WARN <seq>" so replies can be matched to requests,
// or DUNNO without a seq attribute.
var echoHandler = HandlerFunc(func(_ context.Context, req *Request) string {
	if v := req.Get("seq"); v != "" {
		return "WARN " + v
	}
	return "DUNNO"
})

func request(seq int, extra string) string {
	return fmt.Sprintf("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.7\n"+
		"sender=SRS0=ab=cd=example.org=x@fwd.example\nrecipient=u%d@example.test\nseq=%d\n%s\n", seq, seq, extra)
}

type client struct {
	net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, network, addr string) *client {
	t.Helper()
	c, err := net.Dial(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{c, bufio.NewReader(c)}
}

// readReply reads one "action=...\n\n" reply and returns the action.
func (c *client) readReply() (string, error) {
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := c.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	blank, err := c.br.ReadString('\n')
	if err != nil {
		return "", err
	}
	action, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "action=")
	if !ok || blank != "\n" {
		return "", fmt.Errorf("malformed reply %q %q", line, blank)
	}
	return action, nil
}

func (c *client) roundTrip(t testing.TB, req string) string {
	t.Helper()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	a, err := c.readReply()
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// expectClosed asserts the server closes c without sending anything.
func expectClosed(t testing.TB, c net.Conn, within time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	b, err := io.ReadAll(c)
	if len(b) > 0 {
		t.Errorf("server sent %q before closing", b)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("connection still open after %v", within)
	}
}

func TestPipelined1000(t *testing.T) {
	s, addr, _ := testServer(t, echoHandler, nil)
	c := dial(t, "tcp", addr)
	const n = 1000
	var all strings.Builder
	for i := range n {
		all.WriteString(request(i, ""))
	}
	werr := make(chan error, 1)
	go func() { _, err := io.WriteString(c, all.String()); werr <- err }()
	for i := range n {
		a, err := c.readReply()
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if want := fmt.Sprintf("WARN %d", i); a != want {
			t.Fatalf("reply %d = %q, want %q", i, a, want)
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if got := s.Stats().Requests; got != n {
		t.Errorf("Stats().Requests = %d, want %d", got, n)
	}
}

func TestConcurrent200(t *testing.T) {
	s, addr, _ := testServer(t, echoHandler, nil)
	const conns, reqs = 200, 20
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			cl := &client{c, bufio.NewReader(c)}
			for j := range reqs {
				seq := i*1000 + j
				if _, err := io.WriteString(c, request(seq, "")); err != nil {
					errs <- err
					return
				}
				a, err := cl.readReply()
				if err != nil || a != fmt.Sprintf("WARN %d", seq) {
					errs <- fmt.Errorf("conn %d req %d: %q %v", i, j, a, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	st := s.Stats()
	if st.Requests != conns*reqs || st.Accepted != conns {
		t.Errorf("Stats = %+v, want %d requests on %d connections", st, conns*reqs, conns)
	}
}

// TestHostileClientsDoNotStallOthers runs a slowloris, a 10 MB line,
// garbage, idle connections and a peer outside allow_peers against one
// server, and checks that a normal client keeps getting fast answers.
// allow_peers is 127.0.0.1/32; the refused peer dials from 127.0.0.2.
func TestHostileClientsDoNotStallOthers(t *testing.T) {
	s, addr, logs := testServer(t, echoHandler, func(c *Config) {
		c.AllowPeers = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.ReadTimeout = 2 * time.Second
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()

	// Slowloris: one byte a second, never finishing a request.
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := dial(t, "tcp", addr)
		for _, b := range []byte("request=smtpd_access_policy\n") {
			if _, err := c.Write([]byte{b}); err != nil {
				return // closed by the server: expected after read_timeout
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
	// A 10 MB line.
	wg.Add(1)
	go func() {
		defer wg.Done()
		c := dial(t, "tcp", addr)
		line := append([]byte("sender="), bytes.Repeat([]byte("A"), 10<<20)...)
		c.Write(line) // fails once the server closes: expected
		expectClosed(t, c, 3*time.Second)
	}()
	// Garbage bytes: a TLS ClientHello start, an HTTP request and a
	// request with a NUL byte in a value.
	for _, junk := range []string{"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\n\n", "GET / HTTP/1.0\r\n\r\n", "request=smtpd_access_policy\nsender=a\x00b@example.com\n\n"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := dial(t, "tcp", addr)
			c.Write([]byte(junk))
			expectClosed(t, c, 3*time.Second)
		}()
	}
	// Idle connections that never send anything.
	for range 20 {
		dial(t, "tcp", addr)
	}
	// A peer outside allow_peers: closed at once.
	wg.Add(1)
	go func() {
		defer wg.Done()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		c.Write([]byte(request(1, "")))
		expectClosed(t, c, time.Second)
	}()

	// Meanwhile, a normal client.
	c := dial(t, "tcp", addr)
	var worst time.Duration
	n := 0
	for ctx.Err() == nil {
		start := time.Now()
		if a := c.roundTrip(t, request(n, "")); a != fmt.Sprintf("WARN %d", n) {
			t.Fatalf("reply %q", a)
		}
		worst = max(worst, time.Since(start))
		n++
		time.Sleep(2 * time.Millisecond)
	}
	wg.Wait()
	t.Logf("normal client: %d requests, worst latency %v", n, worst)
	if worst > 250*time.Millisecond {
		t.Errorf("worst latency %v while under attack, want < 250ms", worst)
	}
	st := s.Stats()
	for _, r := range []Reason{ReasonLineTooLong, ReasonMissingEquals, ReasonNULByte, ReasonReadTimeout} {
		if st.Errors[r] < 1 {
			t.Errorf("Stats().Errors[%s] = 0, want >= 1", r)
		}
	}
	if st.Refused < 1 {
		t.Errorf("Stats().Refused = 0, want >= 1")
	}
	for _, want := range []string{"reason=line_too_long", "reason=missing_equals", "reason=nul_byte", "reason=read_timeout",
		"peer not in allow_peers", "peer=127.0.0.2"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func TestRequestDeadline(t *testing.T) {
	var lateErr atomic.Value
	waited := make(chan time.Duration, 1)
	h := HandlerFunc(func(ctx context.Context, req *Request) string {
		if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > 150*time.Millisecond {
			return "REJECT bad deadline"
		}
		if req.Recipient() == "polite@example.test" {
			start := time.Now()
			<-ctx.Done() // a handler that honours ctx is woken at the deadline
			waited <- time.Since(start)
			return "REJECT too late"
		}
		if req.Recipient() == "slow@example.test" {
			time.Sleep(600 * time.Millisecond) // ignores ctx on purpose: the worst case
			lateErr.Store(fmt.Sprint(ctx.Err()))
			return "REJECT too late"
		}
		return "OK"
	})
	s, addr, logs := testServer(t, h, func(c *Config) {
		c.RequestTimeout = 150 * time.Millisecond
		c.FailAction = "DEFER_IF_PERMIT try again"
	})
	c := dial(t, "tcp", addr)
	start := time.Now()
	if a := c.roundTrip(t, "recipient=slow@example.test\n\n"); a != "DEFER_IF_PERMIT try again" {
		t.Fatalf("slow request answered %q, want the fail action", a)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 500*time.Millisecond {
		t.Errorf("fail action after %v, want about 150ms", d)
	}
	// The same connection keeps working while the late handler still runs.
	for range 3 {
		if a := c.roundTrip(t, "recipient=fast@example.test\n\n"); a != "OK" {
			t.Fatalf("next request answered %q, want OK", a)
		}
	}
	time.Sleep(700 * time.Millisecond) // let the late answer arrive; it must be dropped
	if a := c.roundTrip(t, "recipient=fast@example.test\n\n"); a != "OK" {
		t.Fatalf("request after late answer got %q, want OK", a)
	}
	if a := c.roundTrip(t, "recipient=polite@example.test\n\n"); a != "DEFER_IF_PERMIT try again" {
		t.Fatalf("polite slow request answered %q, want the fail action", a)
	}
	if d := <-waited; d < 140*time.Millisecond || d > 500*time.Millisecond {
		t.Errorf("ctx.Done() closed after %v, want about 150ms", d)
	}
	if a := c.roundTrip(t, "recipient=fast@example.test\n\n"); a != "OK" {
		t.Fatalf("after polite timeout got %q, want OK", a)
	}
	if got := lateErr.Load(); got != context.DeadlineExceeded.Error() {
		t.Errorf("slow handler saw ctx.Err() = %v, want deadline exceeded", got)
	}
	if st := s.Stats(); st.Timeouts != 2 {
		t.Errorf("Stats().Timeouts = %d, want 2", st.Timeouts)
	}
	if !strings.Contains(logs.String(), "missed request_timeout") {
		t.Error("timeout not logged")
	}
}

func TestHandlerPanic(t *testing.T) {
	h := HandlerFunc(func(_ context.Context, req *Request) string {
		if req.Recipient() == "boom@example.test" {
			panic("boom")
		}
		return "DUNNO"
	})
	s, addr, logs := testServer(t, h, nil)
	c := dial(t, "tcp", addr)
	io.WriteString(c, "recipient=boom@example.test\n\n")
	expectClosed(t, c, 2*time.Second)
	c2 := dial(t, "tcp", addr)
	if a := c2.roundTrip(t, "recipient=ok@example.test\n\n"); a != "DUNNO" {
		t.Fatalf("after panic: %q", a)
	}
	if got := s.Stats().Errors[ReasonHandlerPanic]; got != 1 {
		t.Errorf("Errors[handler_panic] = %d, want 1", got)
	}
	if !strings.Contains(logs.String(), "panicked") {
		t.Error("panic not logged")
	}
}

func TestBadHandlerAction(t *testing.T) {
	h := HandlerFunc(func(_ context.Context, req *Request) string {
		switch req.Get("answer") {
		case "inject":
			return "OK\n\naction=REJECT" // would smuggle a second reply
		case "empty":
			return ""
		}
		return "REJECT"
	})
	s, addr, _ := testServer(t, h, nil)
	c := dial(t, "tcp", addr)
	for _, ans := range []string{"inject", "empty", "plain"} {
		want := "DUNNO"
		if ans == "plain" {
			want = "REJECT"
		}
		if a := c.roundTrip(t, "answer="+ans+"\n\n"); a != want {
			t.Errorf("answer=%s: got %q, want %q", ans, a, want)
		}
	}
	if got := s.Stats().Errors[ReasonBadAction]; got != 2 {
		t.Errorf("Errors[bad_action] = %d, want 2", got)
	}
}

func TestUnixSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.sock")

	// A stale socket left by a dead process is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	s, _, _ := testServer(t, echoHandler, nil, "unix:"+path)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket mode = %v, want socket 0660", fi.Mode())
	}
	c := dial(t, "unix", path)
	if a := c.roundTrip(t, request(7, "")); a != "WARN 7" {
		t.Errorf("reply %q", a)
	}
	if got := s.Listeners(); len(got) != 2 || got[1] != "unix:"+path || !strings.HasPrefix(got[0], "inet:127.0.0.1:") {
		t.Errorf("Listeners() = %q", got)
	}

	// A live socket and a non-socket file are left alone.
	other, err := New(DefaultConfig(), echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Listen("unix:" + path); err == nil || !strings.Contains(err.Error(), "another process") {
		t.Errorf("Listen on live socket: %v, want 'another process' error", err)
	}
	plain := filepath.Join(dir, "plain")
	os.WriteFile(plain, []byte("keep me"), 0o600)
	if err := other.Listen("unix:" + plain); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen on regular file: %v, want 'not a socket' error", err)
	}
	if b, _ := os.ReadFile(plain); string(b) != "keep me" {
		t.Error("regular file was touched")
	}
}

func TestIPv6Listener(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	ln.Close()
	s, _, _ := testServer(t, echoHandler, nil, "inet:[::1]:0")
	c := dial(t, "tcp", s.Addrs()[1].String())
	if a := c.roundTrip(t, request(3, "")); a != "WARN 3" {
		t.Errorf("reply %q", a)
	}
}

func TestMaxConns(t *testing.T) {
	s, addr, logs := testServer(t, echoHandler, func(c *Config) { c.MaxConns = 2 })
	for i := range 2 {
		c := dial(t, "tcp", addr)
		c.roundTrip(t, request(i, ""))
	}
	c := dial(t, "tcp", addr)
	expectClosed(t, c, time.Second)
	if st := s.Stats(); st.Rejected != 1 || st.Current != 2 {
		t.Errorf("Stats = %+v, want Rejected 1, Current 2", st)
	}
	if !strings.Contains(logs.String(), "max_connections reached") {
		t.Error("rejection not logged")
	}
}

func TestIdleTimeout(t *testing.T) {
	s, addr, _ := testServer(t, echoHandler, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
	c := dial(t, "tcp", addr)
	c.roundTrip(t, request(1, ""))
	expectClosed(t, c, 2*time.Second)
	if got := s.Stats().IdleTimeouts; got != 1 {
		t.Errorf("IdleTimeouts = %d, want 1", got)
	}
}

func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, req *Request) string {
		if req.Recipient() == "slow@example.test" {
			<-release
			return "OK"
		}
		return "DUNNO"
	})
	cfg := DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	s, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background()) }()
	addr := s.Addrs()[0].String()

	idle := dial(t, "tcp", addr)
	idle.roundTrip(t, request(1, ""))
	busy := dial(t, "tcp", addr)
	io.WriteString(busy, "recipient=slow@example.test\n\n")
	time.Sleep(100 * time.Millisecond) // let the request reach the handler

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	expectClosed(t, idle, 2*time.Second)
	if err := <-served; err != nil {
		t.Errorf("Serve after Shutdown = %v, want nil", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still accepting after Shutdown")
	}
	close(release)
	if a, err := busy.readReply(); err != nil || a != "OK" {
		t.Errorf("in-flight request got %q, %v; want OK", a, err)
	}
	expectClosed(t, busy, 2*time.Second)
	if err := <-shut; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}

func TestShutdownDeadline(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	cancelled := make(chan error, 1)
	h := HandlerFunc(func(ctx context.Context, _ *Request) string {
		<-ctx.Done()
		cancelled <- ctx.Err()
		<-block // and then ignore it for a while
		return "OK"
	})
	s, addr, _ := testServer(t, h, func(c *Config) { c.RequestTimeout = time.Minute })
	c := dial(t, "tcp", addr)
	io.WriteString(c, request(1, ""))
	time.Sleep(50 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want deadline exceeded", err)
	}
	expectClosed(t, c, time.Second)
	if err := <-cancelled; !errors.Is(err, context.Canceled) {
		t.Errorf("handler ctx.Err() = %v, want context.Canceled", err)
	}
}

func TestServeErrors(t *testing.T) {
	s, err := New(DefaultConfig(), echoHandler)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background()); err == nil {
		t.Error("Serve without listeners succeeded")
	}
	if _, err := New(DefaultConfig(), nil); err == nil {
		t.Error("New with nil handler succeeded")
	}
	bad := DefaultConfig()
	bad.FailAction = "MAYBE"
	if _, err := New(bad, echoHandler); err == nil || !strings.Contains(err.Error(), "fail_action") {
		t.Errorf("New with bad fail_action: %v", err)
	}
}

func TestParseListenAddr(t *testing.T) {
	tests := []struct{ in, network, addr string }{
		{"inet:127.0.0.1:10040", "tcp", "127.0.0.1:10040"},
		{"127.0.0.1:10040", "tcp", "127.0.0.1:10040"},
		{"[::1]:10040", "tcp", "[::1]:10040"},
		{"inet:[::1]:0", "tcp", "[::1]:0"},
		{"unix:/run/banner/policy.sock", "unix", "/run/banner/policy.sock"},
		{"localhost:10040", "", ""},
		{"127.0.0.1", "", ""},
		{"unix:", "", ""},
		{"127.0.0.1:99999", "", ""},
		{"[fe80::1%eth0]:1", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			n, a, err := parseListenAddr(tt.in)
			if tt.network == "" {
				if err == nil {
					t.Errorf("parseListenAddr(%q) = %s %s, want error", tt.in, n, a)
				}
				return
			}
			if err != nil || n != tt.network || a != tt.addr {
				t.Errorf("parseListenAddr(%q) = %q %q %v, want %q %q", tt.in, n, a, err, tt.network, tt.addr)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want string // "" = valid
	}{
		{"default", func(*Config) {}, ""},
		{"zero max line", func(c *Config) { c.MaxLineBytes = 0 }, "max_line_bytes: must be > 0"},
		{"zero attrs", func(c *Config) { c.MaxAttrs = 0 }, "max_attributes"},
		{"request below line", func(c *Config) { c.MaxRequestBytes = 100 }, "max_request_bytes"},
		{"negative timeout", func(c *Config) { c.RequestTimeout = -1 }, "request_timeout"},
		{"zero idle", func(c *Config) { c.IdleTimeout = 0 }, "idle_timeout"},
		{"zero conns", func(c *Config) { c.MaxConns = 0 }, "max_connections"},
		{"bad fail action", func(c *Config) { c.FailAction = "450" }, "fail_action"},
		{"bad listen", func(c *Config) { c.Listen = []string{"example.org:25"} }, "listen"},
		{"listen without port", func(c *Config) { c.Listen = []string{"inet:127.0.0.1:"} }, `listen: listen address "inet:127.0.0.1:": no port`},
		{"listen port 0", func(c *Config) { c.Listen = []string{"inet:127.0.0.1:0"} }, "port 0 would be a random port"},
		{"listen v6 port 0", func(c *Config) { c.Listen = []string{"[::1]:0"} }, "port 0 would be a random port"},
		{"listen port 00", func(c *Config) { c.Listen = []string{"127.0.0.1:00"} }, "port 0 would be a random port"},
		{"listen fixed port", func(c *Config) { c.Listen = []string{"inet:[::1]:10040", "unix:/run/banner/policy.sock"} }, ""},
		{"bad prefix", func(c *Config) { c.AllowPeers = []netip.Prefix{{}} }, "allow_peers"},
		{"bad mode", func(c *Config) { c.SocketMode = os.ModeDir | 0o660 }, "socket_mode"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Errorf("Validate = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate = %v, want error containing %q", err, tt.want)
			}
		})
	}
}

// bareEcho is the baseline for the benchmarks: read until a blank line,
// answer DUNNO, no limits, no deadlines, no handler goroutine.
func bareEcho(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				reply := []byte("action=DUNNO\n\n")
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(line) == 1 {
						if _, err := c.Write(reply); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func benchRoundTrip(b *testing.B, addr string) {
	wire := loadCaptures(b)[1]
	c := dial(b, "tcp", addr)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := io.WriteString(c, wire); err != nil {
			b.Fatal(err)
		}
		if _, err := c.readReply(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRoundTrip measures one persistent connection on loopback
// against policyd with a handler that answers at once. Allocations include
// the client's.
func BenchmarkRoundTrip(b *testing.B) {
	_, addr, _ := testServer(b, HandlerFunc(func(context.Context, *Request) string { return "DUNNO" }), nil)
	benchRoundTrip(b, addr)
}

// BenchmarkRoundTripBareEcho is the same against the bare echo server.
func BenchmarkRoundTripBareEcho(b *testing.B) {
	benchRoundTrip(b, bareEcho(b))
}
