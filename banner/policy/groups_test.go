package policy

import (
	"bufio"
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/engine"
	"github.com/banner-mta/banner/dnsbl"
	"github.com/banner-mta/banner/policyd"
)

// TestBannedByPortGroup: a client banned for SASL only is refused where
// the firewall closes its port for it ([ban.sasl] ports, by the request's
// server_port, 25 when Postfix sends none); a client of an ordinary ban
// is refused on every port.
func TestBannedByPortGroup(t *testing.T) {
	const guesser, prober = "192.0.2.70", "192.0.2.71"
	tests := []struct {
		name      string
		saslPorts []uint16
		client    string
		port      string // server_port, "" for none
		banned    bool
	}{
		{"sasl ban, submission port", []uint16{465, 587}, guesser, "587", true},
		{"sasl ban, port 25 open to it", []uint16{465, 587}, guesser, "25", false},
		{"sasl ban, no server_port: 25", []uint16{465, 587}, guesser, "", false},
		{"sasl ban, 25 in [ban.sasl] ports", []uint16{25, 465, 587}, guesser, "25", true},
		{"sasl ban, no server_port, 25 in ports", []uint16{25, 465, 587}, guesser, "", true},
		{"ordinary ban, port 25", []uint16{465, 587}, prober, "25", true},
		{"ordinary ban, submission port", []uint16{465, 587}, prober, "587", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ecfg := engine.DefaultConfig()
			ecfg.MaxRetry = 1
			ecfg.Kinds = map[banner.Kind]engine.KindRule{banner.KindSASL: {MaxRetry: 1, FindTime: time.Hour, OwnPorts: true}}
			eng, err := engine.New(ecfg, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := eng.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(eng.Close)
			eng.Report(banner.Event{Addr: netip.MustParseAddr(guesser), Kind: banner.KindSASL, Source: banner.SourceLog})
			eng.Report(banner.Event{Addr: netip.MustParseAddr(prober), Kind: banner.KindUnknownUser, Source: banner.SourceLog, Key: "x@example.test"})
			waitBanned(t, eng, guesser)
			waitBanned(t, eng, prober)
			cfg := DefaultConfig()
			cfg.SASLPorts = tt.saslPorts
			h, err := New(cfg, eng, notListed{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			text := "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=" + tt.client + "\nrecipient=alice@example.test\n"
			if tt.port != "" {
				text += "server_port=" + tt.port + "\n"
			}
			var req policyd.Request
			if err := policyd.ReadRequest(bufio.NewReader(strings.NewReader(text+"\n")), &req, policyd.Limits{}); err != nil {
				t.Fatal(err)
			}
			got := h.HandlePolicy(context.Background(), &req)
			if banned := strings.Contains(got, "temporarily banned"); banned != tt.banned {
				t.Errorf("action %q: banned %v, want %v", got, banned, tt.banned)
			}
		})
	}
}

// notListed is a DNSBL that lists nobody: only the ban decides here.
type notListed struct{}

func (notListed) Lookup(context.Context, netip.Addr) (dnsbl.Result, error) {
	return dnsbl.Result{}, nil
}

// TestBannedInsideWiderBan: a client banned for SASL only inside a
// prefix banned by hand is refused on every port, as the wider ban says.
func TestBannedInsideWiderBan(t *testing.T) {
	ecfg := engine.DefaultConfig()
	ecfg.Kinds = map[banner.Kind]engine.KindRule{banner.KindSASL: {MaxRetry: 1, FindTime: time.Hour, OwnPorts: true}}
	eng, err := engine.New(ecfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	eng.Report(banner.Event{Addr: netip.MustParseAddr("192.0.2.70"), Kind: banner.KindSASL, Source: banner.SourceLog})
	waitBanned(t, eng, "192.0.2.70")
	if _, err := eng.Ban(context.Background(), netip.MustParsePrefix("192.0.2.0/24"), time.Hour, "by hand"); err != nil {
		t.Fatal(err)
	}
	b, ok := eng.Banned(netip.MustParseAddr("192.0.2.70"))
	if !ok || b.Prefix.Bits() != 32 || b.Groups != banner.AllGroups {
		t.Fatalf("Banned = %+v, %v; want the /32 with both groups", b, ok)
	}
	cfg := DefaultConfig()
	cfg.SASLPorts = []uint16{465, 587}
	h, err := New(cfg, eng, notListed{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var req policyd.Request
	text := "request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.70\nserver_port=25\nrecipient=alice@example.test\n\n"
	if err := policyd.ReadRequest(bufio.NewReader(strings.NewReader(text)), &req, policyd.Limits{}); err != nil {
		t.Fatal(err)
	}
	if got := h.HandlePolicy(context.Background(), &req); !strings.Contains(got, "temporarily banned") {
		t.Errorf("action %q on port 25, want banned_action (the /24 is an ordinary ban)", got)
	}
}
