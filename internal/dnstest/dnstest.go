// Package dnstest runs a real DNS server (github.com/miekg/dns, UDP and TCP)
// on a system-chosen loopback port for tests, in the manner of
// net/http/httptest: tests program answers, latency, failures and hostile
// replies per name and count the queries the server receives.
//
// Names are matched case-insensitively and may be given with or without the
// trailing dot. Answers set with Set belong to one exact name. Behaviour
// (NXDOMAIN authority, latency, SERVFAIL and other rcodes, drops, truncation,
// custom handlers) set on a name applies to that name and every name below
// it, unless a name closer to the query has behaviour of its own. A name with
// no answers and no behaviour gets NXDOMAIN with the default SOA (see
// SetDefaultSOA).
package dnstest

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Server is a DNS server on 127.0.0.1 answering UDP and TCP on one port.
type Server struct {
	addr string
	udp  *dns.Server
	tcp  *dns.Server

	total atomic.Int64

	mu         sync.Mutex
	answers    map[string]answer
	rules      map[string]*rule
	counts     map[string]int
	defaultSOA *dns.SOA
}

type answer struct {
	addrs []netip.Addr
	ttl   uint32
}

// rule is the behaviour for a name and the names below it.
type rule struct {
	latency  time.Duration
	drop     bool
	rcode    int // 0 = none set
	hasSOA   bool
	soa      *dns.SOA
	truncate bool
	handler  func(req *dns.Msg) *dns.Msg
}

// Start starts a server on 127.0.0.1 with a free port for UDP and TCP and
// stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{
		answers:    map[string]answer{},
		rules:      map[string]*rule{},
		counts:     map[string]int{},
		defaultSOA: SOA("test.", 5*time.Minute, 5*time.Minute),
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", s.serve)

	var (
		pc  net.PacketConn
		ln  net.Listener
		err error
	)
	// The UDP port is chosen by the kernel; the TCP port must be the same,
	// which can collide with another socket, so try a few times.
	for range 20 {
		pc, err = net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("dnstest: listen udp: %v", err)
		}
		ln, err = net.Listen("tcp", pc.LocalAddr().String())
		if err == nil {
			break
		}
		pc.Close()
	}
	if err != nil {
		t.Fatalf("dnstest: listen tcp on the udp port: %v", err)
	}
	s.addr = pc.LocalAddr().String()

	udpUp, tcpUp := make(chan struct{}), make(chan struct{})
	s.udp = &dns.Server{PacketConn: pc, Handler: mux, NotifyStartedFunc: func() { close(udpUp) }}
	s.tcp = &dns.Server{Listener: ln, Handler: mux, NotifyStartedFunc: func() { close(tcpUp) },
		ReadTimeout: 2 * time.Second, IdleTimeout: func() time.Duration { return 2 * time.Second }}
	errs := make(chan error, 2)
	go func() { errs <- s.udp.ActivateAndServe() }()
	go func() { errs <- s.tcp.ActivateAndServe() }()
	for _, up := range []chan struct{}{udpUp, tcpUp} {
		select {
		case <-up:
		case err := <-errs:
			t.Fatalf("dnstest: serve: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("dnstest: server did not start within 5s")
		}
	}
	t.Cleanup(func() {
		_ = s.udp.Shutdown()
		_ = s.tcp.Shutdown()
	})
	return s
}

// Addr is the server's "127.0.0.1:port" for both UDP and TCP.
func (s *Server) Addr() string { return s.addr }

// SOA returns an SOA record for zone with the given record TTL and MINIMUM
// field, for SetNXDOMAIN and SetDefaultSOA.
func SOA(zone string, ttl, minimum time.Duration) *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: canon(zone), Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: uint32(ttl / time.Second)},
		Ns:      "ns." + canon(zone),
		Mbox:    "hostmaster." + canon(zone),
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  uint32(minimum / time.Second),
	}
}

func canon(name string) string { return dns.CanonicalName(name) }

// Set makes the server answer A queries for exactly name with addrs and the
// given TTL (NOERROR, authoritative). Addresses that are not IPv4 are sent
// as AAAA records, which lets tests send wrong-type answers.
func (s *Server) Set(name string, addrs []netip.Addr, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[canon(name)] = answer{addrs: append([]netip.Addr(nil), addrs...), ttl: uint32(ttl / time.Second)}
}

// Delete removes the answers set for name and any behaviour set on it.
func (s *Server) Delete(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.answers, canon(name))
	delete(s.rules, canon(name))
}

func (s *Server) rule(name string) *rule {
	r := s.rules[canon(name)]
	if r == nil {
		r = &rule{}
		s.rules[canon(name)] = r
	}
	return r
}

// SetNXDOMAIN makes name and the names below it without answers of their
// own return NXDOMAIN, with soa in the authority section (nil: no SOA).
func (s *Server) SetNXDOMAIN(name string, soa *dns.SOA) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rule(name)
	r.hasSOA, r.soa = true, soa
}

// SetDefaultSOA sets the SOA sent with NXDOMAIN for names without any rule
// (nil: none).
func (s *Server) SetDefaultSOA(soa *dns.SOA) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.defaultSOA = soa
}

// SetLatency delays every reply for name and the names below it by d.
func (s *Server) SetLatency(name string, d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rule(name).latency = d
}

// SetServfail makes name and the names below it answer SERVFAIL.
func (s *Server) SetServfail(name string) { s.SetRcode(name, dns.RcodeServerFailure) }

// SetRcode makes name and the names below it answer with rcode and no
// records (0 removes the setting).
func (s *Server) SetRcode(name string, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rule(name).rcode = rcode
}

// Drop makes the server read queries for name and the names below it and
// never answer them, so clients time out (drop=false undoes it).
func (s *Server) Drop(name string, drop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rule(name).drop = drop
}

// SetTruncate makes UDP replies for name and the names below it come back
// empty with the TC bit set, so clients must retry over TCP.
func (s *Server) SetTruncate(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rule(name).truncate = on
}

// SetHandler makes fn build the reply for name and the names below it. The
// reply is written as fn returns it, without fixing the ID, question or size
// (nil: no reply), so tests can send hostile or malformed replies.
func (s *Server) SetHandler(name string, fn func(req *dns.Msg) *dns.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rule(name).handler = fn
}

// Queries counts the queries received for name and the names below it.
func (s *Server) Queries(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts[canon(name)]
}

// TotalQueries counts every query the server received.
func (s *Server) TotalQueries() int { return int(s.total.Load()) }

// ResetCounts sets all query counters to zero.
func (s *Server) ResetCounts() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.counts)
	s.total.Store(0)
}

// lookup finds the answers for qname and the closest rule at or above it,
// counting the query at every level.
func (s *Server) lookup(qname string) (answer, bool, rule, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, hasAnswer := s.answers[qname]
	var (
		found   rule
		hasRule bool
	)
	for name := qname; ; {
		s.counts[name]++
		if r, ok := s.rules[name]; ok && !hasRule {
			found, hasRule = *r, true
		}
		if name == "." {
			break
		}
		i := strings.IndexByte(name, '.')
		name = name[i+1:]
		if name == "" {
			name = "."
		}
	}
	if !hasRule {
		found = rule{hasSOA: true, soa: s.defaultSOA}
	}
	return a, hasAnswer, found, hasRule
}

func (s *Server) serve(w dns.ResponseWriter, req *dns.Msg) {
	s.total.Add(1)
	if len(req.Question) != 1 {
		m := new(dns.Msg)
		m.SetRcode(req, dns.RcodeFormatError)
		_ = w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	a, hasAnswer, r, _ := s.lookup(canon(q.Name))
	if r.latency > 0 {
		time.Sleep(r.latency)
	}
	if r.drop {
		return
	}
	if r.handler != nil {
		if m := r.handler(req); m != nil {
			_ = w.WriteMsg(m)
		}
		return
	}
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	m.Compress = true // as real servers do; large answers need it
	switch {
	case r.rcode != 0:
		m.Rcode = r.rcode
	case hasAnswer:
		if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
			for _, ad := range a.addrs {
				hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: a.ttl}
				if ad.Is4() {
					hdr.Rrtype = dns.TypeA
					m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: ad.AsSlice()})
				} else {
					hdr.Rrtype = dns.TypeAAAA
					m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr, AAAA: ad.AsSlice()})
				}
			}
		}
	default:
		m.Rcode = dns.RcodeNameError
		if r.hasSOA && r.soa != nil {
			m.Ns = []dns.RR{dns.Copy(r.soa)}
		}
	}
	if udp {
		if r.truncate {
			m.Truncated = true
			m.Answer, m.Ns, m.Extra = nil, nil, nil
		} else {
			size := dns.MinMsgSize
			if opt := req.IsEdns0(); opt != nil {
				size = int(opt.UDPSize())
			}
			m.Truncate(size)
		}
	}
	_ = w.WriteMsg(m)
}
