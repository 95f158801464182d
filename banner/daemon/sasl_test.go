package daemon

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/logwatch"
	"github.com/banner-mta/banner/internal/postfixtest"
	"github.com/banner-mta/banner/internal/testenv"
)

// failAuth opens one SMTP session to addr, presents client with XCLIENT and
// tries AUTH PLAIN with a wrong password n times; it returns the replies.
func failAuth(t *testing.T, addr, client string, n int) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	reply := func() string {
		var all []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading: %v (so far %q)", err, all)
			}
			line = strings.TrimRight(line, "\r\n")
			all = append(all, line)
			if len(line) < 4 || line[3] != '-' {
				return strings.Join(all, "\n")
			}
		}
	}
	send := func(cmd string) string { fmt.Fprintf(c, "%s\r\n", cmd); return reply() }
	reply()
	send("EHLO client.example")
	if x := send("XCLIENT ADDR=" + client + " NAME=[UNAVAILABLE]"); !strings.HasPrefix(x, "220") {
		t.Fatalf("XCLIENT: %q", x)
	}
	if e := send("EHLO client.example"); !strings.Contains(e, "AUTH") {
		t.Fatalf("EHLO offers no AUTH: %q", e)
	}
	var out []string
	for i := range n {
		cred := base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("\x00admin\x00wrong%d", i)))
		out = append(out, send("AUTH PLAIN "+cred))
	}
	send("QUIT")
	return out
}

// TestSASLBruteForceWithPostfix: a real Postfix offering AUTH (Cyrus SASL,
// an empty sasldb: every password is wrong) logs the failures; the daemon
// follows its log with sasl_auth on and bans the client in the kernel
// (ipset in a private namespace) once it failed [ban.sasl] maxretry times,
// while [ban] maxretry alone would not have, in the sasl group's set
// (banner4_sasl, [ban.sasl] ports), not the main one.
func TestSASLBruteForceWithPostfix(t *testing.T) {
	if testenv.RunInNetNS(t, "ipset", "iptables", "ip6tables") {
		return
	}
	const guesser = "198.51.100.30"
	plugins, _ := filepath.Glob("/usr/lib/*/sasl2/libsasldb.so")
	plain, _ := filepath.Glob("/usr/lib/*/sasl2/libplain.so")
	testenv.Require(t, len(plugins) > 0 && len(plain) > 0, "needs Cyrus SASL plugins (apt-get install libsasl2-modules libsasl2-modules-db)")
	dir := t.TempDir()
	saslDir := filepath.Join(dir, "sasl")
	if err := os.MkdirAll(saslDir, 0o755); err != nil {
		t.Fatal(err)
	}
	smtpdConf := "pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: " + filepath.Join(saslDir, "sasldb2") + "\n"
	if err := os.WriteFile(filepath.Join(saslDir, "smtpd.conf"), []byte(smtpdConf), 0o644); err != nil {
		t.Fatal(err)
	}
	pf := postfixtest.Start(t, postfixtest.Options{
		LocalDomains: []string{"example.test"},
		Users:        []string{"alice"},
		ExtraMainCF: map[string]string{
			"smtpd_sasl_auth_enable":      "yes",
			"smtpd_sasl_type":             "cyrus",
			"smtpd_sasl_path":             "smtpd",
			"cyrus_sasl_config_path":      saslDir,
			"smtpd_sasl_security_options": "noanonymous",
			"smtpd_tls_auth_only":         "no",
		},
	})

	cfg := testConfig(t, dir)
	cfg.Firewall.Backend = "ipset"
	cfg.LogWatch.Files = []string{pf.LogPath}
	cfg.LogWatch.FromStart = true
	cfg.LogWatch.PollInterval = config.Duration(50 * time.Millisecond)
	cfg.LogWatch.Builtin = append(cfg.LogWatch.Builtin, logwatch.PatternSASL)
	cfg.Ban.MaxRetry = 100 // the general score alone never bans here
	cfg.Ban.SASL.MaxRetry = 3
	logs := &testenv.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := New(ctx, cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	for _, r := range failAuth(t, pf.SMTPAddr, guesser, 2) {
		if !strings.HasPrefix(r, "535") {
			t.Fatalf("AUTH with a wrong password: %q, want 535", r)
		}
	}
	pf.WaitLog(t, "SASL PLAIN authentication failed", 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	if _, ok := d.engine.Banned(netip.MustParseAddr(guesser)); ok {
		t.Fatal("banned after 2 failures; [ban.sasl] maxretry is 3")
	}
	failAuth(t, pf.SMTPAddr, guesser, 1)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, ok := d.engine.Banned(netip.MustParseAddr(guesser)); ok {
			if b.Kind != banner.KindSASL {
				t.Errorf("ban kind %q, want sasl", b.Kind)
			}
			t.Logf("ban: %+v", b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no ban after 3 SASL failures; daemon log:\n%s", logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The sasl group's set ([ban.sasl] ports, default 25, 465 and 587),
	// not the main one ([firewall] ports).
	for exec.Command("ipset", "test", "banner4_sasl", guesser).Run() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("%s not in the kernel's banner4_sasl set", guesser)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if exec.Command("ipset", "test", "banner4", guesser).Run() == nil {
		t.Errorf("%s in the main set banner4 too: a sasl ban closes [ban.sasl] ports only", guesser)
	}
	if out, err := exec.Command("iptables", "-S", "INPUT").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "--dports 25,465,587 -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j BANNER_SASL") {
		t.Errorf("iptables -S INPUT: no jump to BANNER_SASL on 25,465,587: %s %v", out, err)
	}
	for _, l := range pf.LogLines() {
		if strings.Contains(l, "SASL") {
			t.Log(l)
		}
	}
}
