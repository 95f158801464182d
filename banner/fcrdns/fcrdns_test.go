package fcrdns

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/dnstest"
	"github.com/miekg/dns"
)

// ptr makes the server answer the PTR query of addr with names.
func ptr(s *dnstest.Server, addr string, names ...string) {
	rev, _ := dns.ReverseAddr(addr)
	s.SetHandler(rev, func(req *dns.Msg) *dns.Msg {
		m := new(dns.Msg)
		m.SetReply(req)
		for _, n := range names {
			m.Answer = append(m.Answer, &dns.PTR{Hdr: dns.RR_Header{Name: rev, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 300}, Ptr: dns.Fqdn(n)})
		}
		return m
	})
}

// TestForwardConfirmed runs the lookups against a real DNS server on
// loopback (internal/dnstest): only a PTR name in a configured suffix that
// resolves back to the address allowlists it.
func TestForwardConfirmed(t *testing.T) {
	srv := dnstest.Start(t)
	srv.SetDefaultSOA(dnstest.SOA("example", time.Hour, time.Minute))
	ptr(srv, "192.0.2.1", "mail-ed1-f53.google.com")
	srv.Set("mail-ed1-f53.google.com", []netip.Addr{netip.MustParseAddr("192.0.2.1")}, time.Hour)
	ptr(srv, "192.0.2.2", "mail.google.com.evil.example") // suffix not at the end
	srv.Set("mail.google.com.evil.example", []netip.Addr{netip.MustParseAddr("192.0.2.2")}, time.Hour)
	ptr(srv, "192.0.2.3", "fake.google.com") // forward name points elsewhere
	srv.Set("fake.google.com", []netip.Addr{netip.MustParseAddr("192.0.2.99")}, time.Hour)
	ptr(srv, "192.0.2.4", "x.evil.example", "out.outlook.com") // the second name confirms
	srv.Set("out.outlook.com", []netip.Addr{netip.MustParseAddr("192.0.2.4")}, time.Hour)
	ptr(srv, "192.0.2.5", "notgoogle.com") // ".google.com" is a label boundary
	srv.Set("notgoogle.com", []netip.Addr{netip.MustParseAddr("192.0.2.5")}, time.Hour)
	srv.SetServfail("6.2.0.192.in-addr.arpa")

	cfg := DefaultConfig()
	cfg.Suffixes = []string{".google.com", "outlook.com"}
	cfg.Resolvers = []string{srv.Addr()}
	cfg.Timeout = time.Second
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr, name string
		ok, err    bool
	}{
		{"192.0.2.1", "mail-ed1-f53.google.com", true, false},
		{"192.0.2.2", "", false, false},
		{"192.0.2.3", "", false, false},
		{"192.0.2.4", "out.outlook.com", true, false},
		{"192.0.2.5", "", false, false},
		{"192.0.2.6", "", false, true},
		{"192.0.2.7", "", false, false}, // no PTR: NXDOMAIN
	} {
		name, ok, err := c.Lookup(context.Background(), netip.MustParseAddr(tc.addr))
		if name != tc.name || ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("%s: %q %v %v, want %q %v error %v", tc.addr, name, ok, err, tc.name, tc.ok, tc.err)
		}
	}
}

// Allowed never waits: the first sight starts the lookup, the answer is
// cached and asked once.
func TestAllowedLooksUpOnceInBackground(t *testing.T) {
	srv := dnstest.Start(t)
	ptr(srv, "192.0.2.1", "mail-ed1-f53.google.com")
	srv.Set("mail-ed1-f53.google.com", []netip.Addr{netip.MustParseAddr("192.0.2.1")}, time.Hour)
	rev, _ := dns.ReverseAddr("192.0.2.1")
	srv.SetLatency(rev, 200*time.Millisecond)
	cfg := DefaultConfig()
	cfg.Suffixes = []string{".google.com"}
	cfg.Resolvers = []string{srv.Addr()}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr("192.0.2.1")
	t0 := time.Now()
	if _, ok := c.Allowed(a); ok || time.Since(t0) > 50*time.Millisecond {
		t.Fatalf("first Allowed: %v after %v, want false at once", ok, time.Since(t0))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if name, ok := c.Allowed(a); ok {
			if name != "mail-ed1-f53.google.com" {
				t.Errorf("name %q", name)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never allowed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for range 100 {
		c.Allowed(a)
	}
	if n := srv.Queries(rev); n != 1 {
		t.Errorf("%d PTR queries, want 1 (cached)", n)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, s := range []string{"", ".", "com", ".bad_name!.com"} {
		cfg := DefaultConfig()
		cfg.Suffixes = []string{s}
		cfg.Resolvers = []string{"127.0.0.1:53"}
		if cfg.Validate() == nil {
			t.Errorf("suffix %q accepted", s)
		}
	}
}
