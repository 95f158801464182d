package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banner-mta/banner/banner/daemon"
	"github.com/banner-mta/banner/internal/testenv"
)

// TestExplainLogRealPostfixLog: banner explain -log over the log a real
// Postfix 3.7.11 wrote tells each client's story from the log alone: the
// prober's unknown recipient with its line, the score arithmetic and what
// the next offence brings; the client that delivered is a good sender.
func TestExplainLogRealPostfixLog(t *testing.T) {
	logPath := testenv.Fixture(t, "maillog/postfix-3.7.11.log")
	cfg := filepath.Join(t.TempDir(), "banner.toml")
	if err := os.WriteFile(cfg, []byte("[ban]\nmaxretry = 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code := cli(t, "explain", "-config", cfg, "-no-dns", "-at", "end", "-log", logPath, "198.51.100.9")
	for _, want := range []string{
		"story from the log " + logPath,
		"no delivery seen within 30d",
		"1 = 1 of maxretry 3 within findtime 10m\n",
		"unknown_user nobody@example.test: weight 1",
		"2 more recipient probe(s) or 2 more other event(s) of weight 1 within 10m ban it: ban #1 for 1h (bantime 1h x factor 2^0)",
		"scored   +1, score 1; log: 550 user unknown <nobody@example.test> [" + logPath + " line 15]",
		"not asked",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("explain -log 198.51.100.9 (exit %d) lacks %q:\n%s", code, want, out)
		}
	}
	out, code = cli(t, "explain", "-json", "-config", cfg, "-no-dns", "-at", "end", "-log", logPath, "198.51.100.8")
	var x daemon.Explanation
	if err := json.Unmarshal([]byte(out), &x); code != 0 || err != nil {
		t.Fatalf("explain -json: exit %d, %v\n%s", code, err, out)
	}
	if x.GoodSince == nil || len(x.Events) != 1 || x.Events[0].Kind != "delivered" || x.Events[0].Key != "8B7E0984605" || x.ProbesToBan != 9 {
		t.Errorf("explain -json 198.51.100.8 = %+v", x)
	}
	// Now (long after the log) the score has left findtime.
	out, _ = cli(t, "explain", "-config", cfg, "-no-dns", "-log", logPath, "198.51.100.9")
	if !strings.Contains(out, "0 of maxretry 3 within") {
		t.Errorf("explain -log as of now:\n%s", out)
	}
	for _, args := range [][]string{
		{"explain"},
		{"explain", "not-an-ip"},
		{"explain", "-at", "end", "192.0.2.1"},
		{"explain", "-log", logPath, "-at", "yesterday", "192.0.2.1"},
	} {
		if out, code := cli(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)\n%s", args, code, out)
		}
	}
}

// TestExplainSASL: explain of an address guessing passwords shows the
// arithmetic of [ban.sasl] (its own maxretry and findtime), not [ban]'s,
// and the ports its ban closes; while it is banned for SASL only, its
// port-25 offences still count.
func TestExplainSASL(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "banner.toml")
	if err := os.WriteFile(cfg, []byte("[ban]\nmaxretry = 2.0\n\n[ban.sasl]\nmaxretry = 3.0\nfindtime = \"2h\"\nports = [465, 587]\n\n[logwatch]\nbuiltin = [\"sasl_auth\", \"unknown_user\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	line := func(min int) string {
		return fmt.Sprintf("Dec  3 08:%02d:00 mx postfix/submission/smtpd[123]: warning: unknown[203.0.113.7]: SASL LOGIN authentication failed: authentication failure\n", min)
	}
	for _, tt := range []struct {
		name  string
		lines int
		want  []string
	}{
		{"below maxretry", 2, []string{
			"1 + 1 = 2 of maxretry 3 within findtime 2h ([ban.sasl]: a window of its own; its bans close tcp ports 465,587)",
			"1 more sasl event(s) of weight 1 within 2h ban it on tcp ports 465,587: ban #1 for 1h",
			"  0 of maxretry 2 within findtime 10m",
			"  not banned",
			"scored   +1, score 2; log: SASL LOGIN authentication failed",
		}},
		{"banned", 3, []string{
			"BANNED as 203.0.113.7/32",
			"on tcp ports 465,587: ban #1 of 1h",
			"(score 3 >= maxretry 3 within 2h)",
			"  not counted while banned on its ports",
			"  2 more recipient probe(s) or 2 more other event(s) of weight 1 within 10m ban it",
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var log strings.Builder
			for i := range tt.lines {
				log.WriteString(line(i * 20)) // 20 minutes apart: outside [ban]'s 10m findtime
			}
			path := filepath.Join(dir, tt.name+".log")
			if err := os.WriteFile(path, []byte(log.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			out, code := cli(t, "explain", "-config", cfg, "-no-dns", "-at", "end", "-log", path, "203.0.113.7")
			for _, want := range tt.want {
				if code != 0 || !strings.Contains(out, want) {
					t.Errorf("explain (exit %d) lacks %q:\n%s", code, want, out)
				}
			}
		})
	}
}
