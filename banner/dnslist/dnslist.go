// Package dnslist serves banner's verdicts as a DNS list (a DNSBL, RFC
// 5782): a banned address answers 127.0.0.2 with a TXT giving the reason
// and the ban's end, a scored one optionally 127.0.0.3, so that postscreen,
// rspamd or another MX without banner can use them.
package dnslist

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"github.com/banner-mta/banner/banner"
)

// Verdicts is what the server asks about an address. Both methods are
// called on every query from the DNS goroutines, so they must be cheap,
// safe for concurrent use and never wait for the engine's loop (the
// engine's are a read lock and a map probe or two).
type Verdicts interface {
	// Banned returns the ban in force covering addr, if any.
	Banned(addr netip.Addr) (banner.Ban, bool)
	// Scored returns addr's score if it has one within findtime.
	Scored(addr netip.Addr) (float64, bool)
}

// Answers of the list.
var (
	// AddrBanned is the answer for a banned address and the RFC 5782
	// test point 127.0.0.2.
	AddrBanned = netip.MustParseAddr("127.0.0.2")
	// AddrScored is the answer for a scored, not banned address when
	// ListScored is set.
	AddrScored = netip.MustParseAddr("127.0.0.3")
)

// Stats counts the queries answered, by answer.
type Stats struct {
	Queries   uint64 `json:"queries"`
	Banned    uint64 `json:"banned"`
	Scored    uint64 `json:"scored"`
	NotListed uint64 `json:"not_listed"`
	TestPoint uint64 `json:"test_point"`
	Refused   uint64 `json:"refused"`
	Malformed uint64 `json:"malformed"`
}

// Server answers DNS list queries over UDP and TCP on one address.
type Server struct {
	cfg  Config
	zone string // canonical, with trailing dot
	v    Verdicts
	log  *slog.Logger
	now  func() time.Time

	mu  sync.Mutex
	udp *dns.Server
	tcp *dns.Server
	pc  net.PacketConn
	ln  net.Listener

	queries, banned, scored, notListed, testPoint, refused, malformed atomic.Uint64
}

// New returns a server over v. Call Listen, then Serve.
func New(cfg Config, v Verdicts) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("dnslist: %w", err)
	}
	if v == nil {
		return nil, errors.New("dnslist: no verdicts")
	}
	return &Server{cfg: cfg, zone: dns.CanonicalName(cfg.Zone), v: v, log: cfg.logger(), now: time.Now}, nil
}

// Listen opens the UDP and TCP sockets on addr (Config.Listen if addr is
// ""). With port 0, both get the same free port.
func (s *Server) Listen(addr string) error {
	if addr == "" {
		addr = s.cfg.Listen
	}
	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	for range 20 {
		if pc, err = net.ListenPacket("udp", addr); err != nil {
			return fmt.Errorf("dnslist listen udp %s: %w", addr, err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if _, port, _ := net.SplitHostPort(addr); port != "0" {
			return fmt.Errorf("dnslist listen tcp %s: %w", addr, err)
		}
	}
	if err != nil {
		return fmt.Errorf("dnslist listen tcp %s: %w", addr, err)
	}
	s.mu.Lock()
	s.pc, s.ln = pc, ln
	s.mu.Unlock()
	return nil
}

// LocalAddr is the address served, "host:port", or "" before Listen.
func (s *Server) LocalAddr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pc == nil {
		return ""
	}
	return s.pc.LocalAddr().String()
}

// Serve answers queries until ctx ends, then closes the sockets. It
// returns nil then, or the error that stopped a listener.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.pc == nil {
		s.mu.Unlock()
		return errors.New("dnslist: Serve before Listen")
	}
	h := dns.HandlerFunc(s.serveDNS)
	s.udp = &dns.Server{PacketConn: s.pc, Handler: h}
	s.tcp = &dns.Server{Listener: s.ln, Handler: h, ReadTimeout: 5 * time.Second,
		IdleTimeout: func() time.Duration { return 5 * time.Second }}
	udp, tcp := s.udp, s.tcp
	s.mu.Unlock()
	s.log.Info("DNS list serving", "listen", s.pc.LocalAddr().String(), "zone", s.zone, "list_scored", s.cfg.ListScored)
	errc := make(chan error, 2)
	go func() { errc <- udp.ActivateAndServe() }()
	go func() { errc <- tcp.ActivateAndServe() }()
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = udp.ShutdownContext(sctx)
	_ = tcp.ShutdownContext(sctx)
	if first != nil && !errors.Is(first, net.ErrClosed) {
		return fmt.Errorf("dnslist: %w", first)
	}
	return nil
}

// Close closes the sockets of a server that Listen opened but Serve never
// ran.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.udp == nil && s.pc != nil {
		s.pc.Close()
		s.ln.Close()
	}
}

// Stats returns the query counters.
func (s *Server) Stats() Stats {
	return Stats{
		Queries: s.queries.Load(), Banned: s.banned.Load(), Scored: s.scored.Load(),
		NotListed: s.notListed.Load(), TestPoint: s.testPoint.Load(),
		Refused: s.refused.Load(), Malformed: s.malformed.Load(),
	}
}

// verdict is the answer for one address.
type verdict struct {
	addr netip.Addr // zero: not listed
	txt  string
	ttl  uint32
}

// testPoint1 is RFC 5782's address that must never be listed.
var testPoint1 = netip.MustParseAddr("127.0.0.1")

// lookup decides the answer for addr at now.
func (s *Server) lookup(addr netip.Addr, now time.Time) verdict {
	ttl := uint32(s.cfg.TTL / time.Second)
	switch addr {
	case AddrBanned:
		s.testPoint.Add(1)
		return verdict{addr: AddrBanned, txt: "RFC 5782 test point", ttl: ttl}
	case testPoint1:
		s.testPoint.Add(1)
		return verdict{}
	}
	if b, ok := s.v.Banned(addr); ok {
		s.banned.Add(1)
		left := b.Until.Sub(now)
		if l := uint32((left + time.Second - 1) / time.Second); l < ttl {
			ttl = max(l, 1)
		}
		return verdict{addr: AddrBanned, ttl: ttl, txt: txt(fmt.Sprintf("banned until %s (%s, ban %d): %s",
			b.Until.UTC().Format(time.RFC3339), kindOf(b), b.Count, b.Reason))}
	}
	if s.cfg.ListScored {
		if sc, ok := s.v.Scored(addr); ok {
			s.scored.Add(1)
			return verdict{addr: AddrScored, ttl: ttl, txt: "scored " + strconv.FormatFloat(sc, 'g', 4, 64) + ", not banned"}
		}
	}
	s.notListed.Add(1)
	return verdict{}
}

func kindOf(b banner.Ban) string {
	if b.Kind == "" {
		return string(b.Source)
	}
	return string(b.Kind)
}

// maxTXT is the length of one TXT character-string.
const maxTXT = 255

// txt makes s a TXT string: printable ASCII only (a reason may hold
// client-supplied text), at most 255 bytes.
func txt(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r < 0x20 || r > 0x7e || r == '\\' { // miekg/dns reads \ as an escape
			r = '?'
		}
		if b.Len() >= maxTXT {
			break
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (s *Server) soa() *dns.SOA {
	ttl := uint32(s.cfg.TTL / time.Second)
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: s.zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      s.zone,
		Mbox:    "hostmaster." + s.zone,
		Serial:  1,
		Refresh: 3600, Retry: 600, Expire: 86400,
		Minttl: ttl,
	}
}

// clientAllowed reports whether the query's source may be answered.
func (s *Server) clientAllowed(w dns.ResponseWriter) bool {
	var ip net.IP
	switch a := w.RemoteAddr().(type) {
	case *net.UDPAddr:
		ip = a.IP
	case *net.TCPAddr:
		ip = a.IP
	default:
		return false
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return false
	}
	addr = addr.Unmap()
	for _, p := range s.cfg.AllowClients {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

func (s *Server) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	s.queries.Add(1)
	m := s.answer(req, s.clientAllowed(w), s.now())
	if m == nil {
		return
	}
	if _, udp := w.RemoteAddr().(*net.UDPAddr); udp {
		size := dns.MinMsgSize
		if o := req.IsEdns0(); o != nil {
			size = max(int(o.UDPSize()), dns.MinMsgSize)
		}
		m.Truncate(size)
	}
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("DNS list reply not sent", "err", err)
	}
}

// answer builds the reply to req; allowed says whether its client may be
// answered. It returns nil for a message not worth a reply (a response).
func (s *Server) answer(req *dns.Msg, allowed bool, now time.Time) *dns.Msg {
	if req.Response {
		s.malformed.Add(1)
		return nil
	}
	m := new(dns.Msg)
	if !allowed {
		s.refused.Add(1)
		return m.SetRcode(req, dns.RcodeRefused)
	}
	if req.Opcode != dns.OpcodeQuery {
		s.malformed.Add(1)
		return m.SetRcode(req, dns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		s.malformed.Add(1)
		return m.SetRcode(req, dns.RcodeFormatError)
	}
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = false
	if o := req.IsEdns0(); o != nil {
		m.SetEdns0(4096, false)
	}
	q := req.Question[0]
	name := dns.CanonicalName(q.Name)
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		s.refused.Add(1)
		m.Rcode = dns.RcodeRefused
		return m
	}
	if name == s.zone {
		switch q.Qtype {
		case dns.TypeSOA, dns.TypeANY:
			m.Answer = append(m.Answer, s.soa())
		case dns.TypeNS:
			m.Answer = append(m.Answer, &dns.NS{Hdr: dns.RR_Header{Name: s.zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: s.soa().Minttl}, Ns: s.zone})
		default:
			m.Ns = append(m.Ns, s.soa())
		}
		return m
	}
	addr, err := ParseName(name, s.zone)
	if errors.Is(err, ErrNotInZone) {
		s.refused.Add(1)
		m.Authoritative = false
		m.Rcode = dns.RcodeRefused
		return m
	}
	if err != nil {
		s.malformed.Add(1)
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, s.soa())
		return m
	}
	v := s.lookup(addr, now)
	if !v.addr.IsValid() {
		m.Rcode = dns.RcodeNameError
		m.Ns = append(m.Ns, s.soa())
		return m
	}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: q.Name, Rrtype: t, Class: dns.ClassINET, Ttl: v.ttl}
	}
	if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: v.addr.AsSlice()})
	}
	if q.Qtype == dns.TypeTXT || q.Qtype == dns.TypeANY {
		m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr(dns.TypeTXT), Txt: []string{v.txt}})
	}
	if len(m.Answer) == 0 {
		m.Ns = append(m.Ns, s.soa()) // NODATA: the name exists, not this type
	}
	return m
}
