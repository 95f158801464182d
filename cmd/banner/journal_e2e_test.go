package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/journaltest"
	"github.com/banner-mta/banner/internal/postfixtest"
	"github.com/banner-mta/banner/internal/testenv"
)

// TestEndToEndJournalOnly is Debian 12/13 as they ship: no syslog daemon
// and no maillog_file, so a real Postfix logs with syslog(3) to /dev/log,
// which a real systemd-journald (private, in this mount namespace) owns.
// banner reads only the journal (files = [], journal = true) and bans a
// prober from its journal entries alone (Postfix asks no policy service).
func TestEndToEndJournalOnly(t *testing.T) {
	if testenv.RunInNetNS(t, "ipset", "iptables", "journalctl") {
		return
	}
	journaltest.StartJournald(t)
	journaltest.DevLog(t)
	const prober = "198.51.100.9"
	dir := t.TempDir()
	pf := postfixtest.Start(t, postfixtest.Options{
		LocalDomains: []string{"example.test"},
		Users:        []string{"alice"},
		ExtraMainCF:  map[string]string{"maillog_file": ""}, // syslog(3): the journal
	})
	policyAddr := testenv.FreeAddr(t)
	cfgPath := filepath.Join(dir, "banner.toml")
	cfgText := fmt.Sprintf(`
[policy]
listen = ["inet:%s"]

[dnsbl]
resolvers = ["127.0.0.1:53"]

[ban]
maxretry = 3
allow_mynetworks = false

[firewall]
backend = "ipset"
ports = [25]

[logwatch]
files = []
journal = true

[store]
path = %q

[control]
socket = %q

[metrics]
listen = ""
`, policyAddr, filepath.Join(dir, "banner.db"), filepath.Join(dir, "banner.sock"))
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
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("banner run did not stop")
		}
		t.Logf("banner's log:\n%s", logs.String())
	})
	waitFor(t, "the daemon", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", policyAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	waitFor(t, "the journal source", 10*time.Second, func() bool {
		out, code := cli(t, "status", "-config", cfgPath)
		return code == 0 && strings.Contains(out, "journalctl running")
	})
	time.Sleep(500 * time.Millisecond)
	for i := 1; i <= 3; i++ {
		res := pf.Send(t, postfixtest.Message{ClientAddr: netip.MustParseAddr(prober), From: "p@probe.example", To: []string{fmt.Sprintf("nobody%d@example.test", i)}})
		if len(res.Rcpt) != 1 || res.Rcpt[0].Code != 550 {
			t.Fatalf("probe %d:\n%s", i, res)
		}
	}
	if _, err := os.Stat(pf.LogPath); err == nil {
		t.Fatalf("Postfix wrote %s: the test must see the journal only", pf.LogPath)
	}
	waitFor(t, prober+" in ipset banner4", 20*time.Second, func() bool { return ipsetHas("banner4", prober) })
	out, _ := cli(t, "status", "-config", cfgPath)
	t.Logf("status:\n%s", out)
	if !strings.Contains(out, "Postfix entries") {
		t.Errorf("status shows no journal source:\n%s", out)
	}
}
