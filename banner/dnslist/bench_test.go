package dnslist_test

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startFloor runs a bare miekg/dns server on loopback that answers every
// query with one fixed A record: the floor of a DNS list query.
func startFloor(b *testing.B) string {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	a := net.ParseIP("127.0.0.2")
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: a}}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	b.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

// BenchmarkQuery: one UDP query and its answer over loopback, for a banned
// and a not listed address, with the real engine holding 100,000 bans,
// against the floor (a bare miekg/dns server with a fixed answer), in the
// same run:
//
//	go test -run '^$' -bench Query ./banner/dnslist/
func BenchmarkQuery(b *testing.B) {
	e := startEngine(b)
	ps := make([]netip.Prefix, 100000)
	for i := range ps {
		ps[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	if _, err := e.BanMany(context.Background(), ps, time.Hour, "bench"); err != nil {
		b.Fatal(err)
	}
	s := startServer(b, e, nil)
	floor := startFloor(b)
	c := &dns.Client{Timeout: 2 * time.Second}
	for _, bc := range []struct{ name, addr, qname string }{
		{"banned", s.LocalAddr(), "5.0.0.10.banner.local."},
		{"not-listed", s.LocalAddr(), "5.0.0.11.banner.local."},
		{"floor", floor, "5.0.0.10.banner.local."},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m := new(dns.Msg)
			m.SetQuestion(bc.qname, dns.TypeA)
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := c.Exchange(m, bc.addr); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
