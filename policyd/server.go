// Package policyd is a server for the Postfix SMTPD access policy delegation
// protocol (SMTPD_POLICY_README): it reads name=value requests from
// persistent connections, asks a Handler for an access(5) action, and writes
// "action=...". It knows nothing about what the answer means.
package policyd

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Handler answers policy requests. HandlePolicy returns an access(5) action
// such as "DUNNO", "OK" or "450 4.7.1 try again later" (without "action=").
//
// ctx carries the per-request deadline (Config.RequestTimeout). When it
// passes, the server sends Config.FailAction at once, cancels ctx, goes on
// serving the connection on another goroutine and discards the late answer.
// Handlers should still honour ctx, or their goroutines pile up. req must
// not be used after HandlePolicy returns, but the strings it yields may be
// kept.
// An action that is empty or holds control characters is replaced by
// FailAction. A panic closes the connection and is logged; the server keeps
// serving.
type Handler interface {
	HandlePolicy(ctx context.Context, req *Request) string
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) string

// HandlePolicy calls f(ctx, req).
func (f HandlerFunc) HandlePolicy(ctx context.Context, req *Request) string { return f(ctx, req) }

// Stats are the server's counters since New.
type Stats struct {
	Accepted uint64 `json:"accepted"` // connections accepted from all listeners
	Current  int64  `json:"current"`  // connections being served now
	Refused  uint64 `json:"refused"`  // closed at once: peer not in AllowPeers
	Rejected uint64 `json:"rejected"` // closed at once: MaxConns reached
	// RefusedPeerUser counts connections closed at once because the peer
	// socket's owner is not in PeerUsers, or could not be found.
	RefusedPeerUser uint64 `json:"refused_peer_user"`
	// RefusedUserCap counts connections closed at once because their user
	// had MaxConnsPerUser open.
	RefusedUserCap uint64 `json:"refused_user_cap"`
	Requests       uint64 `json:"requests"`      // requests read and handed to the Handler
	Timeouts       uint64 `json:"timeouts"`      // handler missed RequestTimeout; FailAction sent
	IdleTimeouts   uint64 `json:"idle_timeouts"` // connections closed after IdleTimeout without a request
	// Errors counts connections closed because of trouble, by reason
	// (protocol errors, read timeouts, failed writes, handler panics) and
	// handler answers replaced by FailAction (ReasonBadAction). Every
	// Reason is present, zero or not.
	Errors map[Reason]uint64 `json:"errors"`
}

// Server serves the policy protocol on any number of listeners.
type Server struct {
	uid, gid int // owner of unix sockets; -1: unchanged
	cfg      Config
	peers    peerUsers
	diag     sockDiag
	perUser  userConns
	h        Handler
	log      *slog.Logger
	lim      Limits

	mu        sync.Mutex
	listeners []*listener
	conns     map[*conn]struct{}
	serving   bool
	cancel    context.CancelFunc // cancels handler contexts; set by Serve
	closed    bool

	shuttingDown atomic.Bool
	connWG       sync.WaitGroup

	accepted, refused, rejected, requests, timeouts, idleTimeouts atomic.Uint64
	refusedUser, refusedUserCap                                   atomic.Uint64
	current                                                       atomic.Int64
	errCounts                                                     [len(reasons)]atomic.Uint64

	refusedLog, limitLog, timeoutLog, errorLog, userLog, userCapLog logLimiter
}

type listener struct {
	net.Listener
	desc string
}

// New checks cfg and returns a Server that answers with h. Call Listen
// (or ListenAndServe) and Serve.
func New(cfg Config, h Handler) (*Server, error) {
	if h == nil {
		return nil, errors.New("policyd: nil Handler")
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("policyd config: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	uid, gid, _ := cfg.socketOwner() // checked by Validate
	peers, _ := resolvePeerUsers(cfg.PeerUsers)
	log = log.With("component", "policyd")
	for _, name := range peers.missing {
		log.Warn("peer_users: user does not exist on this machine; connections are accepted from the other peer_users only",
			"user", name, "peer_users", cfg.PeerUsers)
	}
	return &Server{
		cfg:        cfg,
		peers:      peers,
		uid:        uid,
		gid:        gid,
		h:          h,
		log:        log,
		lim:        Limits{MaxLineBytes: cfg.MaxLineBytes, MaxAttrs: cfg.MaxAttrs, MaxRequestBytes: cfg.MaxRequestBytes},
		conns:      make(map[*conn]struct{}),
		refusedLog: logLimiter{perSecond: 1},
		limitLog:   logLimiter{perSecond: 1},
		timeoutLog: logLimiter{perSecond: 1},
		errorLog:   logLimiter{perSecond: 10},
		userLog:    logLimiter{perSecond: 1},
		userCapLog: logLimiter{perSecond: 1},
	}, nil
}

// parseListenAddr splits "inet:host:port", "host:port", "[v6]:port" or
// "unix:/path" into a network and an address. Hosts must be IP literals.
func parseListenAddr(s string) (network, addr string, err error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if path == "" {
			return "", "", fmt.Errorf("listen address %q: empty socket path", s)
		}
		return "unix", path, nil
	}
	hp := strings.TrimPrefix(s, "inet:")
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", "", fmt.Errorf("listen address %q: %w", s, err)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Zone() != "" {
		return "", "", fmt.Errorf("listen address %q: host %q is not an IP address", s, host)
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return "", "", fmt.Errorf("listen address %q: %w", s, err)
	}
	return "tcp", net.JoinHostPort(ip.String(), port), nil
}

// Listen opens a listener for each address (see Config.Listen for the
// forms). A unix socket path left over from a dead process is removed first,
// but only if it is a socket nobody listens on. On error, listeners opened by
// this call are closed again.
func (s *Server) Listen(addrs ...string) error {
	var opened []*listener
	fail := func(err error) error {
		for _, l := range opened {
			l.Close()
		}
		return err
	}
	for _, a := range addrs {
		network, addr, err := parseListenAddr(a)
		if err != nil {
			return fail(err)
		}
		var l *listener
		if network == "unix" {
			l, err = listenUnix(addr, s.cfg.SocketMode, s.uid, s.gid)
		} else {
			var ln net.Listener
			ln, err = net.Listen(network, addr)
			if err == nil {
				l = &listener{Listener: ln, desc: "inet:" + ln.Addr().String()}
			}
		}
		if err != nil {
			return fail(fmt.Errorf("policyd listen %q: %w", a, err))
		}
		opened = append(opened, l)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fail(fmt.Errorf("policyd listen: %w", net.ErrClosed))
	}
	s.listeners = append(s.listeners, opened...)
	return nil
}

// Addrs returns the addresses of the open listeners.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]net.Addr, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.Addr()
	}
	return out
}

// Listeners describes the open listeners for status output, e.g.
// "inet:127.0.0.1:10040" or "unix:/run/banner/policy.sock".
func (s *Server) Listeners() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, len(s.listeners))
	for i, l := range s.listeners {
		out[i] = l.desc
	}
	return out
}

// ListenAndServe listens on Config.Listen and serves until ctx is cancelled.
func (s *Server) ListenAndServe(ctx context.Context) error {
	if err := s.Listen(s.cfg.Listen...); err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Serve accepts connections on every listener until ctx is cancelled or
// Shutdown is called, and returns nil then. Cancelling ctx is a hard stop:
// listeners and connections are closed at once and handler contexts are
// cancelled; Serve returns when the connection goroutines are gone. After
// Shutdown, Serve returns as soon as the listeners are closed and Shutdown
// waits for the connections. Serve returns an error if there is no
// listener, or if an accept fails for good (it then stops everything as a
// cancelled ctx does).
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	switch {
	case s.closed:
		s.mu.Unlock()
		return nil
	case s.serving:
		s.mu.Unlock()
		return errors.New("policyd: Serve called twice")
	case len(s.listeners) == 0:
		s.mu.Unlock()
		return errors.New("policyd: Serve without listeners")
	}
	s.serving = true
	baseCtx, cancel := context.WithCancel(ctx)
	s.cancel = cancel
	lns := append([]*listener(nil), s.listeners...)
	s.mu.Unlock()
	// baseCtx is cancelled by hardClose or at the end of Shutdown, not when
	// Serve returns: a graceful Shutdown lets handlers in flight finish.
	stop := context.AfterFunc(ctx, s.hardClose)
	defer stop()

	go s.watchdog(baseCtx)
	errc := make(chan error, len(lns))
	for _, l := range lns {
		go func() { errc <- s.acceptLoop(baseCtx, l) }()
	}
	var first error
	for range lns {
		if err := <-errc; err != nil && first == nil {
			first = err
			s.hardClose() // one listener failed for good: stop everything
		}
	}
	if ctx.Err() != nil || first != nil {
		s.connWG.Wait()
	}
	return first
}

func (s *Server) acceptLoop(ctx context.Context, l *listener) error {
	var backoff time.Duration
	_, isTCP := l.Listener.(*net.TCPListener)
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "listener", l.desc, "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("policyd accept on %s: %w", l.desc, err)
		}
		backoff = 0
		s.accepted.Add(1)
		if isTCP {
			peer := addrOf(c.RemoteAddr())
			if !s.allowed(peer) {
				s.refused.Add(1)
				if ok, n := s.refusedLog.allow(); ok {
					s.log.Warn("connection refused: peer not in allow_peers", "peer", peer, "listener", l.desc, "suppressed", n)
				}
				c.Close()
				continue
			}
		}
		uid, slot, ok := s.checkPeerUser(c, l)
		if !ok {
			c.Close()
			continue
		}
		if s.current.Add(1) > int64(s.cfg.MaxConns) {
			s.current.Add(-1)
			if slot {
				s.perUser.release(uid)
			}
			s.rejected.Add(1)
			if ok, n := s.limitLog.allow(); ok {
				s.log.Warn("connection rejected: max_connections reached", "peer", c.RemoteAddr().String(),
					"max_connections", s.cfg.MaxConns, "suppressed", n)
			}
			c.Close()
			continue
		}
		cs := &conn{Conn: c, peer: c.RemoteAddr().String(), uid: uid, userSlot: slot}
		if cs.peer == "" || cs.peer == "@" {
			cs.peer = l.desc
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			s.current.Add(-1)
			if slot {
				s.perUser.release(uid)
			}
			c.Close()
			return nil
		}
		s.conns[cs] = struct{}{}
		s.connWG.Add(1)
		s.mu.Unlock()
		// A context per connection keeps the per-request WithTimeout from
		// contending on the server-wide context's lock.
		cs.ctx, cs.cancel = context.WithCancel(ctx)
		go s.serveConn(cs.ctx, cs)
	}
}

// checkPeerUser applies PeerUsers and MaxConnsPerUser to a new connection.
// ok false: refuse it (counted and logged here). slot: a MaxConnsPerUser
// slot of uid was taken and must be given back when c ends.
func (s *Server) checkPeerUser(c net.Conn, l *listener) (uid uint32, slot, ok bool) {
	if s.peers.any {
		return 0, false, true
	}
	uid, check, err := peerUID(c, &s.diag)
	if err != nil {
		s.refusedUser.Add(1)
		if ok, n := s.userLog.allow(); ok {
			s.log.Warn("connection refused: cannot tell which user owns the peer socket", "peer", c.RemoteAddr().String(),
				"listener", l.desc, "err", err, "suppressed", n)
		}
		return 0, false, false
	}
	if !check {
		return 0, false, true // not loopback: allow_peers decided
	}
	if !s.peers.allows(uid) {
		s.refusedUser.Add(1)
		if ok, n := s.userLog.allow(); ok {
			s.log.Warn("connection refused: peer user not in peer_users", "peer", c.RemoteAddr().String(),
				"uid", uid, "listener", l.desc, "suppressed", n)
		}
		return uid, false, false
	}
	if !s.peers.capped(uid) {
		return uid, false, true
	}
	if !s.perUser.acquire(uid, s.cfg.MaxConnsPerUser) {
		s.refusedUserCap.Add(1)
		if ok, n := s.userCapLog.allow(); ok {
			s.log.Warn("connection refused: max_connections_per_user reached", "peer", c.RemoteAddr().String(),
				"uid", uid, "max_connections_per_user", s.cfg.MaxConnsPerUser, "listener", l.desc, "suppressed", n)
		}
		return uid, false, false
	}
	return uid, true, true
}

func isTemporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}

func addrOf(a net.Addr) netip.Addr {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

func (s *Server) allowed(a netip.Addr) bool {
	for _, p := range s.cfg.AllowPeers {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// hardClose closes listeners and connections and cancels handler contexts.
func (s *Server) hardClose() {
	s.shuttingDown.Store(true)
	s.mu.Lock()
	s.closed = true
	for _, l := range s.listeners {
		l.Close()
	}
	type inflight struct {
		c   *conn
		seq uint64
	}
	var busy []inflight
	for c := range s.conns {
		c.Close()
		c.mu.Lock()
		if c.rctx != nil && !c.answered {
			busy = append(busy, inflight{c, c.seq})
		}
		c.mu.Unlock()
	}
	s.mu.Unlock()
	// Connections whose handler is still running are released here; the
	// handler's goroutine quits when it returns.
	for _, b := range busy {
		s.deadlinePassed(b.c, b.seq, true)
	}
	s.cancelHandlers()
}

// cancelHandlers cancels the context handlers run under.
func (s *Server) cancelHandlers() {
	s.mu.Lock()
	cancel := s.cancel
	s.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// Shutdown stops the server gracefully: it closes the listeners, closes
// connections waiting for a request, lets requests in flight get their
// reply and then closes those connections too. If ctx ends first, the rest
// are closed at once and ctx.Err() is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shuttingDown.Store(true)
	s.mu.Lock()
	s.closed = true
	for _, l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.connWG.Wait(); close(done) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		s.wakeIdle()
		select {
		case <-done:
			s.cancelHandlers()
			return nil
		case <-ctx.Done():
			s.hardClose()
			<-done
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// wakeIdle makes connections blocked between requests return at once.
func (s *Server) wakeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.mu.Lock()
		if c.idle {
			c.SetReadDeadline(time.Now())
		}
		c.mu.Unlock()
	}
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	st := Stats{
		Accepted:        s.accepted.Load(),
		Current:         s.current.Load(),
		Refused:         s.refused.Load(),
		Rejected:        s.rejected.Load(),
		RefusedPeerUser: s.refusedUser.Load(),
		RefusedUserCap:  s.refusedUserCap.Load(),
		Requests:        s.requests.Load(),
		Timeouts:        s.timeouts.Load(),
		IdleTimeouts:    s.idleTimeouts.Load(),
		Errors:          make(map[Reason]uint64, len(reasons)),
	}
	for i, r := range reasons {
		st.Errors[r] = s.errCounts[i].Load()
	}
	return st
}

func (s *Server) countErr(r Reason) {
	for i, x := range reasons {
		if x == r {
			s.errCounts[i].Add(1)
			return
		}
	}
}

// conn is one client connection. It is served by one goroutine at a time,
// its owner. The handler runs on the owner's goroutine (no hand-off on the
// fast path); if it misses the per-request deadline, the context.AfterFunc
// goroutine sends the fail action and becomes the new owner, and the old
// goroutine quits when the handler finally returns.
type conn struct {
	net.Conn
	peer     string
	uid      uint32             // owner of the peer socket, when known
	userSlot bool               // counted against MaxConnsPerUser for uid
	ctx      context.Context    // the connection's context, parent of handler contexts
	cancel   context.CancelFunc // cancels ctx
	br       *bufio.Reader
	wbuf     []byte // reply buffer; used only by whoever answers the current request
	// Deadlines last set on the socket; used only by the owner.
	rdl, wdl time.Time

	mu       sync.Mutex
	idle     bool      // blocked waiting for the first byte of a request
	seq      uint64    // number of the current request
	answered bool      // the current request has been answered (or given up)
	rctx     *reqCtx   // context of the handler call in progress, nil if none
	replied  time.Time // when the last reply was written (zero before the first)
}

// serveConn serves c until it ends, then releases it.
func (s *Server) serveConn(ctx context.Context, c *conn) {
	if c.br == nil {
		c.br = bufio.NewReaderSize(c, 4096)
		c.wbuf = make([]byte, 0, 256)
	}
	if s.connLoop(ctx, c) {
		return // handed over to the goroutine that sent the fail action
	}
	s.release(c)
}

// release closes c and forgets it; exactly one owner calls it.
func (s *Server) release(c *conn) {
	c.cancel()
	c.Close()
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	if c.userSlot {
		s.perUser.release(c.uid)
	}
	s.current.Add(-1)
	s.connWG.Done()
}

// connLoop reads requests and answers them until the connection ends
// (false) or ownership passed to a deadline goroutine (true).
func (s *Server) connLoop(ctx context.Context, c *conn) (handedOver bool) {
	req := new(Request)
	for {
		// Between requests: wait for a byte, for up to IdleTimeout. The
		// time of the last reply, just taken, stands for now: a clock
		// read costs as much as a tenth of parsing the request.
		idleSince := c.replied
		if idleSince.IsZero() {
			idleSince = time.Now()
		}
		now := idleSince
		for {
			c.mu.Lock()
			if s.shuttingDown.Load() {
				c.mu.Unlock()
				return false
			}
			if c.br.Buffered() == 0 {
				s.armRead(c, now, min(s.cfg.ReadTimeout, s.cfg.IdleTimeout))
			}
			c.idle = true
			c.mu.Unlock()

			_, err := c.br.Peek(1)

			c.mu.Lock()
			c.idle = false
			if s.shuttingDown.Load() {
				c.mu.Unlock()
				return false
			}
			if err == nil {
				break // a request has started; c.mu stays locked
			}
			c.mu.Unlock()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if now = time.Now(); now.Sub(idleSince) < s.cfg.IdleTimeout {
					continue
				}
				s.idleTimeouts.Add(1)
				s.log.Debug("closing idle connection", "peer", c.peer, "idle_timeout", s.cfg.IdleTimeout)
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("connection read failed", "peer", c.peer, "err", err)
			}
			return false
		}
		// A request has started: the read timeout applies, and the
		// request's time runs from now (one clock read for both).
		started := time.Now()
		s.armRead(c, started, s.cfg.ReadTimeout)
		c.seq++
		c.answered = false
		c.mu.Unlock()

		if err := ReadRequest(c.br, req, s.lim); err != nil {
			s.readFailed(c, err)
			return false
		}
		s.requests.Add(1)

		rctx := &reqCtx{parent: ctx, deadline: started.Add(s.cfg.RequestTimeout)}
		c.mu.Lock()
		c.rctx = rctx
		c.mu.Unlock()
		action, panicked := s.callHandler(rctx, c, req)

		c.mu.Lock()
		if c.answered {
			c.mu.Unlock()
			return true // the deadline goroutine answered and owns c now
		}
		c.answered = true
		c.rctx = nil
		c.mu.Unlock()
		rctx.cancel(context.Canceled) // as a WithTimeout's cancel would on return

		if panicked {
			s.countErr(ReasonHandlerPanic)
			return false
		}
		if err := WireSafe(action); err != nil {
			s.countErr(ReasonBadAction)
			s.logErr("handler returned an unusable action; sending fail_action", c, ReasonBadAction, err)
			action = s.cfg.FailAction
		}
		if !s.reply(c, action) {
			return false
		}
	}
}

// armRead makes sure the read deadline is between 90% and 100% of d away.
// Moving a deadline is a runtime timer operation, so it is done only when
// the current one is too near, not once per request: under load, about once
// per d/10. So a started request gets at least 90% of ReadTimeout, and an
// idle connection is closed between IdleTimeout and IdleTimeout plus
// min(ReadTimeout, IdleTimeout).
func (s *Server) armRead(c *conn, now time.Time, d time.Duration) {
	if left := c.rdl.Sub(now); left < d-d/10 || left > d {
		c.rdl = now.Add(d)
		c.SetReadDeadline(c.rdl)
	}
}

// reply writes one reply; false means the connection is finished.
func (s *Server) reply(c *conn, action string) bool {
	c.wbuf = AppendReply(c.wbuf[:0], action)
	now := time.Now()
	c.replied = now
	if c.wdl.Sub(now) < s.cfg.WriteTimeout-s.cfg.WriteTimeout/10 {
		c.wdl = now.Add(s.cfg.WriteTimeout)
		c.SetWriteDeadline(c.wdl)
	}
	if _, err := c.Write(c.wbuf); err != nil {
		if !s.shuttingDown.Load() {
			s.countErr(ReasonWriteFailed)
			s.logErr("closing connection: writing reply failed", c, ReasonWriteFailed, err)
		}
		return false
	}
	return true
}

// deadlinePassed runs on its own goroutine when request seq on c is still
// unanswered at its deadline (called by the watchdog), or when the server
// stops hard (stopping). Unless the handler answered meanwhile, it cancels
// the handler's context and takes the connection over: it sends the fail
// action and goes on serving, or releases c if the server stops.
func (s *Server) deadlinePassed(c *conn, seq uint64, stopping bool) {
	c.mu.Lock()
	if c.seq != seq || c.answered || c.rctx == nil {
		c.mu.Unlock()
		return
	}
	c.answered = true
	rctx := c.rctx
	c.rctx = nil
	c.mu.Unlock()
	if stopping {
		rctx.cancel(context.Canceled)
		s.release(c)
		return
	}
	rctx.cancel(context.DeadlineExceeded)
	s.timeouts.Add(1)
	if ok, n := s.timeoutLog.allow(); ok {
		s.log.Warn("handler missed request_timeout; sending fail_action", "peer", c.peer,
			"request_timeout", s.cfg.RequestTimeout, "fail_action", s.cfg.FailAction, "suppressed", n)
	}
	if !s.reply(c, s.cfg.FailAction) {
		s.release(c)
		return
	}
	s.serveConn(c.ctx, c)
}

// watchdog enforces RequestTimeout. One ticker for the whole server costs
// far less than a timer per request (adding a timer wakes the runtime's
// network poller thread); the price is that the fail action goes out up to
// one tick, RequestTimeout/20, late.
func (s *Server) watchdog(ctx context.Context) {
	t := time.NewTicker(max(s.cfg.RequestTimeout/20, time.Millisecond))
	defer t.Stop()
	type late struct {
		c   *conn
		seq uint64
	}
	var lates []late
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			lates = lates[:0]
			s.mu.Lock()
			for c := range s.conns {
				c.mu.Lock()
				if c.rctx != nil && !c.answered && !now.Before(c.rctx.deadline) {
					lates = append(lates, late{c, c.seq})
				}
				c.mu.Unlock()
			}
			s.mu.Unlock()
			for _, l := range lates {
				go s.deadlinePassed(l.c, l.seq, false)
			}
		}
	}
}

// reqCtx is the handler's context: it has the request's deadline, is
// cancelled by the watchdog when that passes, by a hard stop, or when the
// handler returned, and carries the values of the server's context. Its
// Done channel is made only if asked for.
type reqCtx struct {
	parent   context.Context
	deadline time.Time

	mu   sync.Mutex
	done chan struct{}
	err  error
}

// Deadline implements context.Context.
func (r *reqCtx) Deadline() (time.Time, bool) { return r.deadline, true }

// Value implements context.Context.
func (r *reqCtx) Value(key any) any { return r.parent.Value(key) }

// Done implements context.Context.
func (r *reqCtx) Done() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		r.done = make(chan struct{})
		if r.err != nil {
			close(r.done)
		}
	}
	return r.done
}

// Err implements context.Context.
func (r *reqCtx) Err() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

func (r *reqCtx) cancel(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return
	}
	r.err = err
	if r.done != nil {
		close(r.done)
	}
}

func (r *reqCtx) String() string { return "policyd.requestContext" }

// callHandler calls the handler and turns a panic into panicked=true.
func (s *Server) callHandler(ctx context.Context, c *conn, req *Request) (action string, panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("policy handler panicked", "peer", c.peer,
				"reason", string(ReasonHandlerPanic), "panic", p, "stack", string(debug.Stack()))
			panicked = true
		}
	}()
	return s.h.HandlePolicy(ctx, req), false
}

func (s *Server) readFailed(c *conn, err error) {
	if s.shuttingDown.Load() && errors.Is(err, net.ErrClosed) {
		return
	}
	var pe *ProtocolError
	var ne net.Error
	switch {
	case errors.As(err, &pe):
		s.countErr(pe.Reason)
		s.logErr("closing connection: bad request", c, pe.Reason, err)
	case errors.As(err, &ne) && ne.Timeout():
		s.countErr(ReasonReadTimeout)
		s.logErr("closing connection: request not complete in time", c, ReasonReadTimeout,
			fmt.Errorf("read_timeout %v: %w", s.cfg.ReadTimeout, err))
	default:
		s.log.Debug("connection read failed", "peer", c.peer, "err", err)
	}
}

func (s *Server) logErr(msg string, c *conn, r Reason, err error) {
	if ok, n := s.errorLog.allow(); ok {
		s.log.Warn(msg, "peer", c.peer, "reason", string(r), "err", err, "suppressed", n)
	}
}

// logLimiter lets through at most perSecond log lines per second and counts
// the ones it held back, so a flood of bad connections cannot flood the log.
type logLimiter struct {
	perSecond int

	mu         sync.Mutex
	window     time.Time
	n          int
	suppressed int
}

// allow reports whether to log now, and how many lines were suppressed
// since the last one that was let through.
func (l *logLimiter) allow() (bool, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.window) >= time.Second {
		l.window, l.n = now, 0
	}
	if l.n >= l.perSecond {
		l.suppressed++
		return false, 0
	}
	l.n++
	n := l.suppressed
	l.suppressed = 0
	return true, n
}
