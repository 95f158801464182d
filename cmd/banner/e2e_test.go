package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/daemon"
	"github.com/banner-mta/banner/internal/dnstest"
	"github.com/banner-mta/banner/internal/postfixtest"
	"github.com/banner-mta/banner/internal/testenv"
)

// cli runs one banner subcommand in-process and returns its output.
func cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return out.String() + errb.String(), code
}

func ipsetHas(set, addr string) bool {
	return exec.Command("ipset", "test", set, addr).Run() == nil
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestEndToEndWithPostfix runs a real Postfix, a loopback DNS server serving
// a fake zen.spamhaus.org, and `banner run` with the ipset backend, all in a
// private network namespace. Postfix is told client addresses with XCLIENT.
func TestEndToEndWithPostfix(t *testing.T) {
	if testenv.RunInNetNS(t, "ipset", "iptables", "ip6tables") {
		return
	}
	const (
		listed = "198.51.100.2" // on the fake zen list
		prober = "198.51.100.9" // guesses recipients
		clean  = "198.51.100.8" // sends real mail
		zone   = "zen.spamhaus.org"
	)
	dns := dnstest.Start(t)
	dns.SetDefaultSOA(dnstest.SOA(zone, time.Hour, 5*time.Minute))
	dns.Set("2.100.51.198."+zone, []netip.Addr{netip.MustParseAddr("127.0.0.2")}, 5*time.Minute)

	dir := t.TempDir()
	policyAddr := testenv.FreeAddr(t)
	metricsAddr := testenv.FreeAddr(t)
	rcptFile := filepath.Join(dir, "virtual")
	if err := os.WriteFile(rcptFile, []byte("# valid users\nalice@example.test  alice\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	pf := postfixtest.Start(t, postfixtest.Options{
		PolicyAddr:   policyAddr,
		LocalDomains: []string{"example.test"},
		Users:        []string{"alice"},
		ExtraMainCF:  map[string]string{"mynetworks": "127.0.0.0/8 203.0.113.0/24"},
	})

	cfgPath := filepath.Join(dir, "banner.toml")
	cfgText := fmt.Sprintf(`
[policy]
listen = ["inet:%s"]

[dnsbl]
resolvers = [%q]

[ban]
maxretry = 2
postfix_config_dir = %q

[firewall]
backend = "ipset"
ports = [25]

[logwatch]
files = [%q]
from_start = true

[recipients]
domains = ["example.test"]
files = [%q]

[store]
path = %q

[control]
socket = %q

[metrics]
listen = %q
`, policyAddr, dns.Addr(), pf.ConfigDir, pf.LogPath, rcptFile, filepath.Join(dir, "banner.db"), filepath.Join(dir, "banner.sock"), metricsAddr)
	if err := os.WriteFile(cfgPath, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := cli(t, "run", "-check", "-config", cfgPath); code != 0 {
		t.Fatalf("run -check: %d %s", code, out)
	}

	// banner check works without the daemon, against the same resolver;
	// its exit status is the verdict: 0 listed, 1 not listed.
	if out, code := cli(t, "check", "-config", cfgPath, listed); code != 0 || !strings.Contains(out, "127.0.0.2") || !strings.Contains(out, "LISTED") {
		t.Fatalf("check %s: exit %d, want 0 (listed)\n%s", listed, code, out)
	}
	if out, code := cli(t, "check", "-json", "-config", cfgPath, clean); code != 1 || !strings.Contains(out, `"listed": false`) {
		t.Fatalf("check -json %s: exit %d, want 1 (not listed)\n%s", clean, code, out)
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
		t.Logf("banner's log:\n%s", logs.String())
	})
	waitFor(t, "the policy service", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", policyAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	// A clean client's mail is accepted.
	res := pf.Send(t, postfixtest.Message{ClientAddr: netip.MustParseAddr(clean), From: "a@sender.example", To: []string{"alice@example.test"}})
	if res.Queued.Code != 250 {
		t.Fatalf("clean client's mail not accepted:\n%s", res)
	}

	// A listed client is rejected by banner's answer and, after maxretry
	// (2) rejected RCPTs, banned in the ipset.
	for i := 0; i < 2; i++ {
		res = pf.Send(t, postfixtest.Message{ClientAddr: netip.MustParseAddr(listed), From: "s@spam.example", To: []string{"alice@example.test"}})
		if len(res.Rcpt) != 1 || res.Rcpt[0].Code != 554 || !strings.Contains(res.Rcpt[0].Text, "blocked using zen.spamhaus.org") {
			t.Fatalf("listed client, RCPT %d:\n%s", i+1, res)
		}
	}
	waitFor(t, listed+" in ipset banner4", 10*time.Second, func() bool { return ipsetHas("banner4", listed) })

	// A prober's first unknown recipient is seen by the policy service and
	// in mail.log: it must count once, so one probe does not ban.
	res = pf.Send(t, postfixtest.Message{ClientAddr: netip.MustParseAddr(prober), From: "p@probe.example", To: []string{"nobody1@example.test"}})
	if len(res.Rcpt) != 1 || res.Rcpt[0].Code != 550 {
		t.Fatalf("probe 1:\n%s", res)
	}
	pf.WaitLog(t, "<nobody1@example.test>: Recipient address rejected: User unknown", 10*time.Second)
	status := func() daemon.Status {
		out, code := cli(t, "status", "-json", "-config", cfgPath)
		if code != 0 {
			t.Fatalf("status: %s", out)
		}
		var s daemon.Status
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatalf("status JSON: %v\n%s", err, out)
		}
		return s
	}
	waitFor(t, "the log echo of probe 1 to be dropped", 10*time.Second, func() bool { return status().Engine.DroppedEcho >= 1 })
	if ipsetHas("banner4", prober) {
		t.Fatal("one probe, seen twice, banned the prober: counted twice")
	}
	res = pf.Send(t, postfixtest.Message{ClientAddr: netip.MustParseAddr(prober), From: "p@probe.example", To: []string{"nobody2@example.test"}})
	if len(res.Rcpt) != 1 || res.Rcpt[0].Code != 550 {
		t.Fatalf("probe 2:\n%s", res)
	}
	waitFor(t, prober+" in ipset banner4", 10*time.Second, func() bool { return ipsetHas("banner4", prober) })

	// Postfix's mynetworks is never banned: the allowlist has it, and a
	// manual ban inside it is refused.
	if al := status().Allowlist; !slices.Contains(al, "203.0.113.0/24") || !slices.Contains(al, "127.0.0.0/8") {
		t.Errorf("allowlist %v lacks the Postfix mynetworks 203.0.113.0/24", al)
	}
	if out, code := cli(t, "ban", "-config", cfgPath, "203.0.113.7"); code == 0 || !strings.Contains(out, "allowlisted") {
		t.Errorf("ban inside mynetworks: exit %d\n%s", code, out)
	}

	// banner status (text) shows the parts an admin looks at.
	if out, code := cli(t, "status", "-config", cfgPath); code != 0 ||
		!strings.Contains(out, "file "+pf.LogPath) || !strings.Contains(out, "203.0.113.0/24") ||
		!strings.Contains(out, "zone zen.spamhaus.org") || !strings.Contains(out, "hook repairs") {
		t.Errorf("status: %d\n%s", code, out)
	}

	// banner list tells the truth.
	out, code := cli(t, "list", "-config", cfgPath)
	if code != 0 || !strings.Contains(out, listed) || !strings.Contains(out, prober) || !strings.Contains(out, "2 active ban(s)") {
		t.Fatalf("list: %d\n%s", code, out)
	}
	// Ordinary bans close [firewall] ports (25), and status names the sasl
	// group's chain and ports beside the main one.
	if out, _ := cli(t, "list", "-json", "-config", cfgPath); !strings.Contains(out, `"groups": "main"`) || !strings.Contains(out, `"ports": [
      25
    ]`) {
		t.Errorf("list -json lacks groups main, ports [25]:\n%s", out)
	}
	if out, _ := cli(t, "status", "-config", cfgPath); !strings.Contains(out, "sasl bans: BANNER_SASL, tcp ports [25 465 587]") {
		t.Errorf("status lacks the sasl group:\n%s", out)
	}
	// The firewall only covers port 25.
	rules, err := exec.Command("iptables", "-S", "INPUT").CombinedOutput()
	if err != nil || !strings.Contains(string(rules), "-p tcp -m multiport --dports 25 -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j BANNER") {
		t.Fatalf("INPUT jump: %v\n%s", err, rules)
	}

	// While banned, the policy service rejects the prober even for a valid
	// recipient; banner unban lets it back.
	res = pf.Send(t, postfixtest.Message{ClientAddr: netip.MustParseAddr(prober), From: "p@probe.example", To: []string{"alice@example.test"}})
	if len(res.Rcpt) != 1 || res.Rcpt[0].Code != 554 {
		t.Fatalf("banned prober not rejected:\n%s", res)
	}
	if out, code := cli(t, "unban", "-config", cfgPath, prober); code != 0 {
		t.Fatalf("unban: %d %s", code, out)
	}
	if ipsetHas("banner4", prober) {
		t.Fatal("unbanned address still in the ipset")
	}
	res = pf.Send(t, postfixtest.Message{ClientAddr: netip.MustParseAddr(prober), From: "p@probe.example", To: []string{"alice@example.test"}})
	if res.Queued.Code != 250 {
		t.Fatalf("unbanned client's mail not accepted:\n%s", res)
	}

	// Metrics are served.
	resp, err := http.Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`banner_policy_requests_total{decision="dnsbl"}`, `banner_active_bans 1`, `banner_events_total{kind="unknown_user"}`, `banner_log_lines_total`} {
		if !strings.Contains(body.String(), m) {
			t.Errorf("metrics lack %s", m)
		}
	}

	// The prober was a false positive: -forget drops its escalation
	// history even though it is no longer banned, so its next ban is #1.
	if out, code := cli(t, "unban", "-forget", "-config", cfgPath, prober); code != 0 || !strings.Contains(out, "1 record(s)") {
		t.Errorf("unban -forget: %d\n%s", code, out)
	}
	if out, code := cli(t, "ban", "-for", "1h", "-config", cfgPath, prober); code != 0 || !strings.Contains(out, "ban #1") {
		t.Errorf("ban after -forget: %d\n%s", code, out)
	}
	// Unbanning an address inside a wider ban says the wider ban holds.
	if out, code := cli(t, "ban", "-for", "1h", "-config", cfgPath, "203.0.112.0/24"); code != 0 {
		t.Fatalf("ban /24: %d\n%s", code, out)
	}
	if out, code := cli(t, "ban", "-for", "1h", "-config", cfgPath, "203.0.112.9"); code != 0 {
		t.Fatalf("ban /32: %d\n%s", code, out)
	}
	if out, code := cli(t, "unban", "-config", cfgPath, "203.0.112.9"); code != 0 || !strings.Contains(out, "still covered by the ban of 203.0.112.0/24") {
		t.Errorf("unban inside a /24: %d\n%s", code, out)
	}
}
