package policy

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/engine"
	"github.com/banner-mta/banner/dnsbl"
	"github.com/banner-mta/banner/internal/dnstest"
	"github.com/banner-mta/banner/policyd"
)

const zone = "zen.spamhaus.org"

// request builds a policy request as Postfix 3.7 sends it at RCPT.
func request(t *testing.T, client, rcpt, sasl string) *policyd.Request {
	t.Helper()
	text := "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" +
		"client_address=" + client + "\nclient_name=unknown\nhelo_name=client.example.net\n" +
		"sender=normal@sender.example\nrecipient=" + rcpt + "\nsasl_username=" + sasl + "\n\n"
	var req policyd.Request
	if err := policyd.ReadRequest(bufio.NewReader(strings.NewReader(text)), &req, policyd.Limits{}); err != nil {
		t.Fatal(err)
	}
	return &req
}

// unknownSet is a recipient table in a map: recipients.Table is tested in
// its own package; here only the policy side's use of it matters.
type unknownSet map[string]bool

func (u unknownSet) Unknown(rcpt string) bool { return u[strings.ToLower(rcpt)] }

type fixture struct {
	dns    *dnstest.Server
	engine *engine.Engine
	h      *Handler
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	srv := dnstest.Start(t)
	srv.SetDefaultSOA(dnstest.SOA(zone, time.Hour, 5*time.Minute))
	srv.Set("2.2.0.192."+zone, []netip.Addr{netip.MustParseAddr("127.0.0.2")}, time.Minute)
	srv.Set("4.2.0.192."+zone, []netip.Addr{netip.MustParseAddr("127.0.0.4")}, time.Minute)
	srv.Set("5.2.0.192."+zone, []netip.Addr{netip.MustParseAddr("127.255.255.254")}, time.Minute)
	srv.Set("6.2.0.192."+zone, []netip.Addr{netip.MustParseAddr("127.0.0.2")}, time.Minute)

	dcfg := dnsbl.DefaultConfig()
	dcfg.Resolvers = []string{srv.Addr()}
	dcfg.QueryTimeout = 500 * time.Millisecond
	checker, err := dnsbl.New(dcfg)
	if err != nil {
		t.Fatal(err)
	}
	ecfg := engine.DefaultConfig()
	ecfg.MaxRetry = 2
	ecfg.Allowlist = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	eng, err := engine.New(ecfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)

	cfg := DefaultConfig()
	cfg.Allowlist = append(cfg.Allowlist, ecfg.Allowlist...)
	codes, err := dnsbl.ParseFilter("127.0.0.[4..7]")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Immediate = []ImmediateRule{{Zone: zone, Codes: codes, BanFor: 72 * time.Hour}}
	h, err := New(cfg, eng, checker, unknownSet{"nobody@example.test": true, "nobody2@example.test": true})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{dns: srv, engine: eng, h: h}
}

func waitBanned(t *testing.T, e *engine.Engine, a string) banner.Ban {
	t.Helper()
	addr := netip.MustParseAddr(a)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if b, ok := e.Banned(addr); ok {
			return b
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s not banned", a)
	return banner.Ban{}
}

func TestDecisions(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tests := []struct {
		name, client, rcpt, sasl string
		want                     string
		decision                 Decision
	}{
		{"clean client", "192.0.2.1", "alice@example.test", "", "DUNNO", DecisionDUNNO},
		{"listed client", "192.0.2.2", "alice@example.test", "", "554 5.7.1 Service unavailable; Client host [192.0.2.2] blocked using zen.spamhaus.org", DecisionDNSBL},
		{"open resolver answer is not a listing", "192.0.2.5", "alice@example.test", "", "DUNNO", DecisionDNSError},
		{"loopback", "127.0.0.1", "alice@example.test", "", "DUNNO", DecisionAllowlisted},
		{"allowlisted network", "198.51.100.7", "alice@example.test", "", "DUNNO", DecisionAllowlisted},
		{"SASL client", "192.0.2.6", "alice@example.test", "user1", "DUNNO", DecisionSASL},
		{"no client address", "", "alice@example.test", "", "DUNNO", DecisionBadRequest},
		{"garbage client address", "not-an-ip", "alice@example.test", "", "DUNNO", DecisionBadRequest},
		{"unknown recipient answers DUNNO", "192.0.2.9", "nobody@example.test", "", "DUNNO", DecisionDUNNO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.h.Stats().Decisions[tt.decision]
			got := f.h.HandlePolicy(ctx, request(t, tt.client, tt.rcpt, tt.sasl))
			if got != tt.want {
				t.Errorf("action %q, want %q", got, tt.want)
			}
			if f.h.Stats().Decisions[tt.decision] != before+1 {
				t.Errorf("decision %s not counted", tt.decision)
			}
		})
	}
	if n := f.dns.Queries("1.0.0.127." + zone); n != 0 {
		t.Errorf("allowlisted client was looked up %d times", n)
	}
	if s := f.h.Stats(); s.UnknownRecipients != 1 {
		t.Errorf("unknown recipients reported %d, want 1", s.UnknownRecipients)
	}
}

// TestLateAnswerIsNoDecision: an answer made after the request's deadline,
// which the policy service throws away (it sent fail_action), is counted
// as late, not as a decision.
func TestLateAnswerIsNoDecision(t *testing.T) {
	f := newFixture(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the deadline passed while the handler worked
	before := f.h.Stats()
	f.h.HandlePolicy(ctx, request(t, "127.0.0.1", "alice@example.test", ""))
	after := f.h.Stats()
	if after.Decisions[DecisionAllowlisted] != before.Decisions[DecisionAllowlisted] {
		t.Error("a thrown-away answer was counted as a decision")
	}
	if after.Late != before.Late+1 {
		t.Errorf("late = %d, want %d", after.Late, before.Late+1)
	}
}

func TestListedClientIsBannedAfterMaxRetry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if got := f.h.HandlePolicy(ctx, request(t, "192.0.2.2", "alice@example.test", "")); !strings.HasPrefix(got, "554 ") {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	b := waitBanned(t, f.engine, "192.0.2.2")
	if b.Kind != banner.KindDNSBL || b.Until.Sub(b.Since) != time.Hour {
		t.Errorf("ban %+v, want a 1h dnsbl ban", b)
	}
	got := f.h.HandlePolicy(ctx, request(t, "192.0.2.2", "alice@example.test", ""))
	if want := "554 5.7.1 Service unavailable; Client host [192.0.2.2] is temporarily banned"; got != want {
		t.Errorf("banned client: %q, want %q", got, want)
	}
}

func TestImmediateBan(t *testing.T) {
	f := newFixture(t)
	got := f.h.HandlePolicy(context.Background(), request(t, "192.0.2.4", "alice@example.test", ""))
	if !strings.Contains(got, "blocked using zen.spamhaus.org") {
		t.Fatalf("XBL client: %q", got)
	}
	b := waitBanned(t, f.engine, "192.0.2.4")
	if d := b.Until.Sub(b.Since); d != 72*time.Hour {
		t.Errorf("immediate ban lasts %v, want 72h", d)
	}
}

func TestUnknownRecipientsBanFromPolicySide(t *testing.T) {
	f := newFixture(t)
	// Two distinct unknown recipients: the same one twice counts once.
	for _, rcpt := range []string{"NoBody@example.test", "nobody2@example.test"} {
		if got := f.h.HandlePolicy(context.Background(), request(t, "192.0.2.9", rcpt, "")); got != "DUNNO" {
			t.Fatalf("unknown recipient %s: %q", rcpt, got)
		}
	}
	if b := waitBanned(t, f.engine, "192.0.2.9"); b.Kind != banner.KindUnknownUser {
		t.Errorf("ban kind %s, want unknown_user", b.Kind)
	}
}

func TestDNSFailureAction(t *testing.T) {
	f := newFixture(t)
	f.dns.SetServfail("7.2.0.192." + zone)
	f.h.cfg.DNSErrorAction = "DEFER_IF_PERMIT DNSBL lookup failed"
	if got := f.h.HandlePolicy(context.Background(), request(t, "192.0.2.7", "alice@example.test", "")); got != "DEFER_IF_PERMIT DNSBL lookup failed" {
		t.Errorf("SERVFAIL: %q", got)
	}
}

func TestConfigValidate(t *testing.T) {
	bad := DefaultConfig()
	bad.DNSBLAction = "554 bad\nreply"
	bad.DNSBLWeight = -1
	err := bad.Validate()
	if err == nil || !strings.Contains(err.Error(), "dnsbl_action") || !strings.Contains(err.Error(), "dnsbl_weight") {
		t.Errorf("Validate: %v", err)
	}
}

// A zone marked down after failed queries (dnsbl failure_backoff) is
// answered like any DNS error, with dns_error_action, without a query.
func TestZoneDownIsDNSError(t *testing.T) {
	f := newFixture(t)
	f.dns.SetServfail(zone)
	f.h.cfg.DNSErrorAction = "DEFER_IF_PERMIT DNSBL lookup failed"
	ask := func(client string) string {
		return f.h.HandlePolicy(context.Background(), request(t, client, "alice@example.test", ""))
	}
	for i := range dnsbl.FailuresToOpen {
		if got := ask(fmt.Sprintf("192.0.2.%d", 100+i)); got != f.h.cfg.DNSErrorAction {
			t.Fatalf("SERVFAIL %d: %q", i, got)
		}
	}
	queries := f.dns.TotalQueries()
	before := f.h.Stats().Decisions[DecisionDNSError]
	if got := ask("192.0.2.120"); got != f.h.cfg.DNSErrorAction {
		t.Errorf("zone down: %q", got)
	}
	if q := f.dns.TotalQueries() - queries; q != 0 {
		t.Errorf("%d queries while the zone is down", q)
	}
	if n := f.h.Stats().Decisions[DecisionDNSError] - before; n != 1 {
		t.Errorf("%d dns_error decisions, want 1", n)
	}
}
