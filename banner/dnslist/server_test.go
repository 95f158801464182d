package dnslist_test

import (
	"context"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/dnslist"
	"github.com/banner-mta/banner/banner/engine"
	"github.com/banner-mta/banner/internal/testenv"
)

// startEngine starts a real ban engine with no store and no firewall.
func startEngine(t testing.TB) *engine.Engine {
	t.Helper()
	cfg := engine.DefaultConfig()
	cfg.ReconcileInterval = 0
	e, err := engine.New(cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// startServer serves e's verdicts on a free loopback port.
func startServer(t testing.TB, e dnslist.Verdicts, mod func(*dnslist.Config)) *dnslist.Server {
	t.Helper()
	cfg := dnslist.DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	if mod != nil {
		mod(&cfg)
	}
	s, err := dnslist.New(cfg, e)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(""); err != nil {
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
	})
	return s
}

// digResult is what dig printed: the status and the answer section.
type digResult struct {
	status  string
	answers []string // "TYPE DATA" of each answer line
	ttls    []string
	raw     string
}

// dig asks the server with the real dig command.
func dig(t *testing.T, s *dnslist.Server, name, qtype string, extra ...string) digResult {
	t.Helper()
	testenv.RequireCommands(t, "dig")
	host, port, _ := strings.Cut(s.LocalAddr(), ":")
	args := append([]string{"@" + host, "-p", port, "+time=2", "+tries=1", "+noall", "+comments", "+answer", name, qtype}, extra...)
	out, err := exec.Command("dig", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", args, err, out)
	}
	r := digResult{raw: string(out)}
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "status: "); i >= 0 {
			r.status, _, _ = strings.Cut(line[i+len("status: "):], ",")
		}
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		f := strings.Fields(line)
		if len(f) >= 5 {
			r.ttls = append(r.ttls, f[1])
			r.answers = append(r.answers, f[3]+" "+strings.Join(f[4:], " "))
		}
	}
	return r
}

func TestDigAgainstEngine(t *testing.T) {
	e := startEngine(t)
	s := startServer(t, e, nil)
	ctx := context.Background()
	if _, err := e.Ban(ctx, netip.MustParsePrefix("198.51.100.7/32"), 30*time.Second, "5 unknown recipients"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.Ban(ctx, netip.MustParsePrefix("2001:db8:1::/48"), time.Hour, "manual v6"); err != nil {
		t.Fatal(err)
	}
	v6 := dnslist.QueryName(netip.MustParseAddr("2001:db8:1::7"), "banner.local.")

	for _, tc := range []struct {
		name, qname, qtype string
		extra              []string
		status             string
		answers            []string // prefixes of the answers
	}{
		{"test point 127.0.0.2", "2.0.0.127.banner.local", "A", nil, "NOERROR", []string{"A 127.0.0.2"}},
		{"test point 127.0.0.2 txt", "2.0.0.127.banner.local", "TXT", nil, "NOERROR", []string{`TXT "RFC 5782 test point"`}},
		{"test point 127.0.0.1", "1.0.0.127.banner.local", "A", nil, "NXDOMAIN", nil},
		{"IPv6 test point ::ffff:7f00:2", dnslist.QueryName(netip.MustParseAddr("::ffff:127.0.0.2"), "banner.local."), "A", nil, "NOERROR", []string{"A 127.0.0.2"}},
		{"banned", "7.100.51.198.banner.local", "A", nil, "NOERROR", []string{"A 127.0.0.2"}},
		{"banned over tcp", "7.100.51.198.banner.local", "A", []string{"+tcp"}, "NOERROR", []string{"A 127.0.0.2"}},
		{"banned upper case", "7.100.51.198.BANNER.LOCAL", "A", nil, "NOERROR", []string{"A 127.0.0.2"}},
		{"banned txt", "7.100.51.198.banner.local", "TXT", nil, "NOERROR", []string{`TXT "banned until `}},
		{"banned any", "7.100.51.198.banner.local", "ANY", nil, "NOERROR", []string{"A 127.0.0.2", `TXT "banned until`}},
		{"banned aaaa is nodata", "7.100.51.198.banner.local", "AAAA", nil, "NOERROR", nil},
		{"banned IPv6 nibbles", v6, "A", nil, "NOERROR", []string{"A 127.0.0.2"}},
		{"not banned", "8.100.51.198.banner.local", "A", nil, "NXDOMAIN", nil},
		{"not an address", "x.100.51.198.banner.local", "A", nil, "NXDOMAIN", nil},
		{"apex soa", "banner.local", "SOA", nil, "NOERROR", []string{"SOA banner.local. hostmaster.banner.local."}},
		{"outside the zone", "7.100.51.198.zen.spamhaus.org", "A", nil, "REFUSED", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := dig(t, s, tc.qname, tc.qtype, tc.extra...)
			if r.status != tc.status {
				t.Fatalf("status %q, want %q\n%s", r.status, tc.status, r.raw)
			}
			if len(r.answers) != len(tc.answers) {
				t.Fatalf("answers %q, want %q\n%s", r.answers, tc.answers, r.raw)
			}
			for i, want := range tc.answers {
				if !strings.HasPrefix(r.answers[i], want) {
					t.Errorf("answer %d: %q, want %q...", i, r.answers[i], want)
				}
			}
		})
	}

	// The TXT says why and until when; the TTL is at most the ban's time left.
	r := dig(t, s, "7.100.51.198.banner.local", "TXT")
	if !strings.Contains(r.answers[0], "(manual, ban 1): 5 unknown recipients") {
		t.Errorf("TXT %q lacks the kind, count and reason", r.answers[0])
	}
	if ttl, err := strconv.Atoi(r.ttls[0]); err != nil || ttl < 1 || ttl > 30 {
		t.Errorf("TTL %s: want at most the 30 s the ban has left", r.ttls[0])
	}

	// Unbanned: gone from the list at once.
	if err := e.Unban(ctx, netip.MustParsePrefix("198.51.100.7/32")); err != nil {
		t.Fatal(err)
	}
	if r := dig(t, s, "7.100.51.198.banner.local", "A"); r.status != "NXDOMAIN" {
		t.Errorf("after unban: status %s\n%s", r.status, r.raw)
	}
	st := s.Stats()
	if st.Banned == 0 || st.TestPoint == 0 || st.NotListed == 0 || st.Refused == 0 || st.Malformed == 0 {
		t.Errorf("stats %+v: a counter stayed 0", st)
	}
}

// TestScored: with list_scored, an address with a score but no ban answers
// 127.0.0.3; without, NXDOMAIN; once banned, 127.0.0.2.
func TestScored(t *testing.T) {
	e := startEngine(t)
	on := startServer(t, e, func(c *dnslist.Config) { c.ListScored = true })
	off := startServer(t, e, nil)
	addr := netip.MustParseAddr("203.0.113.9")
	ev := banner.Event{Addr: addr, Kind: banner.KindUnknownUser, Source: banner.SourceLog, Key: "a@example.com", Reason: "unknown a@example.com"}
	if err := e.Ingest(context.Background(), []banner.Event{ev}, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := e.Scored(addr); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the engine never scored the event")
		}
		time.Sleep(10 * time.Millisecond)
	}
	name := "9.113.0.203.banner.local"
	if r := dig(t, on, name, "A"); len(r.answers) != 1 || r.answers[0] != "A 127.0.0.3" {
		t.Errorf("list_scored: %q, want A 127.0.0.3\n%s", r.answers, r.raw)
	}
	if r := dig(t, on, name, "TXT"); len(r.answers) != 1 || r.answers[0] != `TXT "scored 1, not banned"` {
		t.Errorf("list_scored TXT: %q\n%s", r.answers, r.raw)
	}
	if r := dig(t, off, name, "A"); r.status != "NXDOMAIN" {
		t.Errorf("without list_scored: %s, want NXDOMAIN\n%s", r.status, r.raw)
	}
	if _, err := e.Ban(context.Background(), netip.PrefixFrom(addr, 32), time.Hour, "x"); err != nil {
		t.Fatal(err)
	}
	if r := dig(t, on, name, "A"); len(r.answers) != 1 || r.answers[0] != "A 127.0.0.2" {
		t.Errorf("banned with list_scored: %q, want A 127.0.0.2\n%s", r.answers, r.raw)
	}
}

// TestAllowClients: a client outside allow_clients gets REFUSED.
func TestAllowClients(t *testing.T) {
	e := startEngine(t)
	s := startServer(t, e, func(c *dnslist.Config) { c.AllowClients = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} })
	if r := dig(t, s, "2.0.0.127.banner.local", "A"); r.status != "REFUSED" {
		t.Errorf("status %s, want REFUSED\n%s", r.status, r.raw)
	}
}

// TestHostileMessages: malformed requests get an error reply or none, and
// the server keeps answering.
func TestHostileMessages(t *testing.T) {
	e := startEngine(t)
	s := startServer(t, e, nil)
	c := &dns.Client{Timeout: 2 * time.Second}
	for name, m := range map[string]*dns.Msg{
		"two questions": {Question: []dns.Question{{Name: "2.0.0.127.banner.local.", Qtype: dns.TypeA, Qclass: dns.ClassINET}, {Name: "a.", Qtype: dns.TypeA, Qclass: dns.ClassINET}}},
		"no question":   {},
		"chaos class":   {Question: []dns.Question{{Name: "2.0.0.127.banner.local.", Qtype: dns.TypeA, Qclass: dns.ClassCHAOS}}},
		"update":        {MsgHdr: dns.MsgHdr{Opcode: dns.OpcodeUpdate}, Question: []dns.Question{{Name: "banner.local.", Qtype: dns.TypeSOA, Qclass: dns.ClassINET}}},
	} {
		m.Id = dns.Id()
		r, _, err := c.Exchange(m, s.LocalAddr())
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if r.Rcode == dns.RcodeSuccess {
			t.Errorf("%s: rcode NOERROR, want an error", name)
		}
	}
	if r := dig(t, s, "2.0.0.127.banner.local", "A"); len(r.answers) != 1 {
		t.Errorf("after hostile messages: %s", r.raw)
	}
}
