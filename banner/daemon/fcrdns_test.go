package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/engine"
	"github.com/banner-mta/banner/internal/dnstest"
	"github.com/miekg/dns"
)

// TestFCrDNSAllowlist: with [ban] allow_fcrdns = [".google.com"], a client
// whose PTR name (served by a real DNS server on loopback) is in
// .google.com and resolves back to it is never banned, whatever it does,
// and banner explain names it; a client whose name does not confirm is
// banned at maxretry.
func TestFCrDNSAllowlist(t *testing.T) {
	srv := dnstest.Start(t)
	srv.SetDefaultSOA(dnstest.SOA("arpa", time.Hour, time.Minute))
	answerPTR := func(addr, name string) {
		rev, _ := dns.ReverseAddr(addr)
		srv.SetHandler(rev, func(req *dns.Msg) *dns.Msg {
			m := new(dns.Msg)
			m.SetReply(req)
			m.Answer = []dns.RR{&dns.PTR{Hdr: dns.RR_Header{Name: rev, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: 300}, Ptr: dns.Fqdn(name)}}
			return m
		})
	}
	answerPTR("192.0.2.1", "mail-ed1-f53.google.com")
	srv.Set("mail-ed1-f53.google.com", []netip.Addr{netip.MustParseAddr("192.0.2.1")}, time.Hour)
	answerPTR("192.0.2.2", "forged.google.com") // resolves elsewhere
	srv.Set("forged.google.com", []netip.Addr{netip.MustParseAddr("192.0.2.99")}, time.Hour)

	cfg := config.Default()
	cfg.Ban.AllowFCrDNS = []string{".google.com"}
	cfg.Ban.MaxRetry = 3
	allow, err := fcrdnsHook(cfg, []string{srv.Addr()}, slog.New(slog.DiscardHandler))
	if err != nil || allow == nil {
		t.Fatalf("fcrdnsHook: %v", err)
	}
	ecfg := cfg.EngineConfig(slog.New(slog.DiscardHandler))
	ecfg.AllowName = allow
	e, err := engine.New(ecfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	report := func(addr string, i int) {
		e.Report(banner.Event{Addr: netip.MustParseAddr(addr), Kind: banner.KindUnknownUser, Source: banner.SourcePolicy,
			Key: string(rune('a'+i)) + "@example.test", Weight: 1})
	}
	// The first sight starts the lookups.
	report("192.0.2.1", 0)
	report("192.0.2.2", 0)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := allow(netip.MustParseAddr("192.0.2.1")); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("192.0.2.1 never confirmed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	for i := 1; i < 10; i++ {
		report("192.0.2.1", i)
		report("192.0.2.2", i)
	}
	x, err := e.Explain(context.Background(), netip.MustParseAddr("192.0.2.1"))
	if err != nil {
		t.Fatal(err)
	}
	if x.Ban != nil || x.AllowedName != "mail-ed1-f53.google.com" || x.Score != 0 {
		t.Errorf("192.0.2.1: ban %v, allowed name %q, score %v; want no ban, its name, 0", x.Ban, x.AllowedName, x.Score)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok := e.Banned(netip.MustParseAddr("192.0.2.2")); ok {
			break
		}
		if time.Now().After(deadline) {
			x, _ := e.Explain(context.Background(), netip.MustParseAddr("192.0.2.2"))
			t.Fatalf("192.0.2.2, whose name does not resolve back to it, is not banned: %+v", x)
		}
	}
}
