package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/testenv"
)

// TestRunLogsWarnings: `banner run -check` prints the configuration's
// warnings and their count but still exits 0; `banner run` logs each one
// at WARN when it starts.
func TestRunLogsWarnings(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "banner.toml")
	text := `[policy]
listen = ["inet:` + testenv.FreeAddr(t) + `"]
fail_action = "REJECT banner is slow"

[dnsbl]
zones = []
resolvers = ["127.0.0.1:53"]

[ban]
allow_mynetworks = false
allow_local = false
allowlist = ["0.0.0.0/0"]

[firewall]
backend = "none"

[logwatch]
files = []

[store]
path = "` + filepath.Join(dir, "banner.db") + `"

[control]
socket = "` + filepath.Join(dir, "banner.sock") + `"

[metrics]
listen = ""
`
	if err := os.WriteFile(cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}

	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"run", "-check", "-config", cfgPath}, &out, &errb)
	all := out.String() + errb.String()
	for _, want := range []string{
		"warning: " + cfgPath + ":3: policy.fail_action:",
		"warning: " + cfgPath + ":12: ban.allowlist: 0.0.0.0/0 is very broad",
		cfgPath + ": configuration OK, 2 warnings",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("run -check output lacks %q:\n%s", want, all)
		}
	}
	if code != 0 {
		t.Errorf("run -check with warnings only: exit %d, want 0\n%s", code, all)
	}

	ctx, cancel := context.WithCancel(context.Background())
	logs := &testenv.SyncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"run", "-config", cfgPath}, logs, logs) }()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "banner running") && time.Now().Before(deadline) {
		select {
		case code := <-done:
			t.Fatalf("banner run exited %d:\n%s", code, logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("banner run did not stop")
	}
	got := logs.String()
	for _, want := range []string{"level=WARN msg=\"configuration: \\\"REJECT banner is slow\\\" rejects the mail", "key=policy.fail_action at=" + cfgPath + ":3", "key=ban.allowlist"} {
		if !strings.Contains(got, want) {
			t.Errorf("banner run's log lacks %q:\n%s", want, got)
		}
	}
}
