package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/daemon"
	"github.com/banner-mta/banner/internal/dnstest"
	"github.com/banner-mta/banner/internal/postfixtest"
	"github.com/banner-mta/banner/internal/testenv"
)

// TestGoodSendersWithPostfix (issue 17, item 3): a real Postfix 3.7 and
// `banner run`. A client whose mail Postfix accepted, then mistypes
// recipients, is not banned at maxretry (2) but at good_sender_factor (3)
// x maxretry distinct unknown recipients; a client that never delivered is
// banned at maxretry; a client writing a forged "QUEUEID: client=NAME[ADDR]"
// in its HELO, sender and recipients does not make ADDR a good sender.
// "log": banner learns the delivery from mail.log (client= then queue
// active); "policy": from the END-OF-MESSAGE policy request alone (no log
// watched). banner explain (daemon) shows the story.
func TestGoodSendersWithPostfix(t *testing.T) {
	for _, from := range []string{"log", "policy"} {
		t.Run(from, func(t *testing.T) { testGoodSenders(t, from) })
	}
}

func testGoodSenders(t *testing.T, from string) {
	const (
		good     = "198.51.100.8"  // delivers, then mistypes
		stranger = "198.51.100.9"  // never delivered
		forger   = "198.51.100.20" // delivers with forged client= text
		forged   = "198.51.100.21" // the address it names
	)
	dns := dnstest.Start(t)
	dns.SetDefaultSOA(dnstest.SOA("zen.spamhaus.org", time.Hour, 5*time.Minute))
	dir := t.TempDir()
	policyAddr := testenv.FreeAddr(t)
	rcptFile := filepath.Join(dir, "virtual")
	if err := os.WriteFile(rcptFile, []byte("alice@example.test  alice\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	extra := map[string]string{"mynetworks": "127.0.0.0/8"}
	if from == "policy" {
		extra["smtpd_end_of_data_restrictions"] = "check_policy_service { inet:" + policyAddr + ", timeout=10s, default_action=DUNNO }"
	}
	pf := postfixtest.Start(t, postfixtest.Options{
		PolicyAddr:   policyAddr,
		LocalDomains: []string{"example.test"},
		Users:        []string{"alice"},
		ExtraMainCF:  extra,
	})
	logwatch := "[logwatch]\nfiles = []\n"
	if from == "log" {
		logwatch = fmt.Sprintf("[logwatch]\nfiles = [%q]\nfrom_start = true\n", pf.LogPath)
	}
	cfgPath := filepath.Join(dir, "banner.toml")
	cfgText := fmt.Sprintf(`
[policy]
listen = ["inet:%s"]

[dnsbl]
resolvers = [%q]

[ban]
maxretry = 2
findtime = "1h"
good_sender_days = 30
good_sender_factor = 3
postfix_config_dir = %q

[firewall]
backend = "none"

%s
[recipients]
domains = ["example.test"]
files = [%q]

[store]
path = %q

[control]
socket = %q

[metrics]
listen = ""
`, policyAddr, dns.Addr(), pf.ConfigDir, logwatch, rcptFile, filepath.Join(dir, "banner.db"), filepath.Join(dir, "banner.sock"))
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	logs := &testenv.SyncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"run", "-config", cfgPath}, logs, logs) }()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("banner run exited %d", code)
			}
		case <-time.After(15 * time.Second):
			t.Error("banner run did not stop")
		}
		if t.Failed() {
			t.Logf("banner's log:\n%s", logs.String())
		}
	})
	waitFor(t, "the policy service", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", policyAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	explain := func(addr string) daemon.Explanation {
		t.Helper()
		out, code := cli(t, "explain", "-json", "-config", cfgPath, addr)
		if code != 0 {
			t.Fatalf("explain %s: %d %s", addr, code, out)
		}
		var x daemon.Explanation
		if err := json.Unmarshal([]byte(out), &x); err != nil {
			t.Fatalf("explain JSON: %v\n%s", err, out)
		}
		return x
	}
	banned := func(addr string) bool { return explain(addr).Ban != nil }
	send := func(client string, m postfixtest.Message) postfixtest.SMTPResult {
		t.Helper()
		m.ClientAddr = netip.MustParseAddr(client)
		return pf.Send(t, m)
	}
	probe := func(client string, first, n int) {
		t.Helper()
		var to []string
		for i := first; i < first+n; i++ {
			to = append(to, fmt.Sprintf("nobody%d@example.test", i))
		}
		res := send(client, postfixtest.Message{From: "x@sender.example", To: to})
		for i, r := range res.Rcpt {
			if r.Code != 550 {
				t.Fatalf("probe %s rcpt %d: %s\n%s", client, i, r, res)
			}
		}
	}
	// settled waits until banner counted n unknown recipients of client.
	settled := func(client string, n int) daemon.Explanation {
		t.Helper()
		var x daemon.Explanation
		waitFor(t, fmt.Sprintf("%d probes of %s counted", n, client), 10*time.Second, func() bool {
			x = explain(client)
			k := 0
			for _, e := range x.Events {
				if e.Kind == "unknown_user" && (e.Outcome == "scored" || e.Outcome == "ban") {
					k++
				}
			}
			return k >= n
		})
		if from == "log" {
			time.Sleep(300 * time.Millisecond) // the log's echoes too
		}
		return explain(client)
	}

	// The good client delivers; the forger too, naming another address in
	// every text of its own it can.
	if res := send(good, postfixtest.Message{From: "a@customer.example", To: []string{"alice@example.test"}}); res.Queued.Code != 250 {
		t.Fatalf("good client's mail not accepted:\n%s", res)
	}
	inj := "ABCDEF0123: client=x[" + forged + "]"
	if res := send(forger, postfixtest.Message{Helo: "client=x[" + forged + "]", From: `"` + inj + `"@evil.example`,
		To: []string{`"` + inj + `"@example.test`, "alice@example.test"}}); res.Queued.Code != 250 {
		t.Fatalf("forger's mail not accepted:\n%s", res)
	}
	waitFor(t, good+" a good sender", 10*time.Second, func() bool { return explain(good).GoodSince != nil })
	waitFor(t, forger+" a good sender", 10*time.Second, func() bool { return explain(forger).GoodSince != nil })
	if x := explain(forged); x.GoodSince != nil {
		t.Fatalf("forged client= text made %s a good sender: %+v", forged, x)
	}

	// A client that never delivered: banned at maxretry.
	probe(stranger, 0, 2)
	waitFor(t, stranger+" banned at maxretry 2", 10*time.Second, func() bool { return banned(stranger) })

	// The good sender: 5 distinct unknown recipients weigh 5/3 < 2.
	probe(good, 0, 5)
	x := settled(good, 5)
	if x.Ban != nil {
		t.Fatalf("good sender banned after 5 unknown recipients (maxretry 2 x factor 3 = 6): %+v", x.Ban)
	}
	if len(x.Terms) != 5 || !x.Terms[0].Good || x.ProbesToBan != 1 {
		t.Errorf("score terms %+v, probes to ban %d: want 5 good-sender terms of 1/3 and 1 probe to go", x.Terms, x.ProbesToBan)
	}
	out, code := cli(t, "explain", "-config", cfgPath, good)
	for _, want := range []string{"yes: last delivery", "weight 0.3333 = 1 / good_sender_factor 3", "1 more recipient probe(s) (1/3 each: a good sender)", "good_sender", "delivered"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain %s lacks %q:\n%s", good, want, out)
		}
	}
	// The sixth: 6/3 = 2, banned.
	probe(good, 5, 1)
	waitFor(t, good+" banned at 3 x maxretry", 10*time.Second, func() bool { return banned(good) })
	if x := explain(good); !strings.Contains(x.Ban.Reason, "good sender: recipient probes weigh 1/3") {
		t.Errorf("ban reason %q does not name the good-sender factor", x.Ban.Reason)
	}
	t.Logf("explain %s:\n%s", good, func() string { out, _ := cli(t, "explain", "-config", cfgPath, good); return out }())
}
