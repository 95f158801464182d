package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
)

// TestMain lets the test binary stand in for policyload when -fork
// re-executes it with -serve.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "-serve" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

func TestTarget(t *testing.T) {
	tests := []struct {
		in, network, addr string
	}{
		{"127.0.0.1:10040", "tcp", "127.0.0.1:10040"},
		{"inet:127.0.0.2:1", "tcp", "127.0.0.2:1"},
		{"[::1]:10040", "tcp", "[::1]:10040"},
		{"unix:/run/banner/policy.sock", "unix", "/run/banner/policy.sock"},
		{"192.0.2.1:10040", "", ""}, // not loopback: refused
		{"localhost:10040", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			n, a, err := target(tt.in)
			if tt.network == "" {
				if err == nil {
					t.Errorf("target(%q) = %s %s, want error", tt.in, n, a)
				}
				return
			}
			if err != nil || n != tt.network || a != tt.addr {
				t.Errorf("target(%q) = %q %q %v", tt.in, n, a, err)
			}
		})
	}
}

func TestSplitRequests(t *testing.T) {
	capture := "--- conn 1 req#1\nrequest=smtpd_access_policy\nrecipient=a@x\n--- conn 1 req#2\nrequest=smtpd_access_policy\nrecipient=b@x\n"
	got := splitRequests([]byte(capture))
	want := []string{"request=smtpd_access_policy\nrecipient=a@x\n\n", "request=smtpd_access_policy\nrecipient=b@x\n\n"}
	if len(got) != len(want) {
		t.Fatalf("got %d requests %q, want %d", len(got), got, len(want))
	}
	for i := range want {
		if string(got[i]) != want[i] {
			t.Errorf("request %d = %q, want %q", i, got[i], want[i])
		}
	}
	if got := splitRequests([]byte(defaultRequest)); len(got) != 1 || string(got[0]) != defaultRequest {
		t.Errorf("wire-form request not kept as is: %q", got)
	}
}

// TestSelfSmoke runs the comparison mode briefly.
func TestSelfSmoke(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-self", "-conns", "1,2", "-duration", "200ms", "-warmup", "20ms", "-rounds", "1"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), "ratio") || strings.Count(out.String(), "\n") != 3 {
		t.Errorf("unexpected output:\n%s", out.String())
	}
}

func TestRequestsMode(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-addr", "192.0.2.1:25"}, &out, &errb); code == 0 {
		t.Error("non-loopback target accepted")
	}
}

// TestOpenLoopFork runs the open-loop mode against servers in a child
// process and checks the offered rate is what was asked for.
func TestOpenLoopFork(t *testing.T) {
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-self", "-fork", "-conns", "4", "-rate", "2000",
		"-duration", "500ms", "-warmup", "50ms", "-rounds", "1"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("unexpected output:\n%s", out.String())
	}
	f := strings.Fields(lines[1])
	if f[0] != "4" || f[1] != "2000" {
		t.Fatalf("row %q: want conns 4, rate 2000", lines[1])
	}
	// Achieved rate within 20% of the offered one (loose: shared CI cores).
	var got float64
	if _, err := fmt.Sscan(f[2], &got); err != nil || got < 1600 || got > 2400 {
		t.Errorf("policyd req/s = %q, want about 2000", f[2])
	}
}

func TestParseFlagsAndServeLine(t *testing.T) {
	for _, args := range [][]string{
		{"-rate", "0"}, {"-rate", "-5"}, {"-rate", "abc"}, {"-rate", "NaN"}, {"-rate", "1e12"},
		{"-conns", "0"}, {"-conns", "x"},
	} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), args, &out, &errb); code != 2 {
			t.Errorf("run %q: exit %d, want 2 (usage error)", args, code)
		}
	}
	bad := []string{
		"", "\n", "policyd=127.0.0.1:1\n", "bare=127.0.0.1:1\n",
		"policyd=192.0.2.1:1 bare=127.0.0.1:2\n", // not loopback
		"policyd=garbage bare=127.0.0.1:2\n",
	}
	for _, line := range bad {
		if p, b, err := parseServeLine(line); err == nil {
			t.Errorf("parseServeLine(%q) = %q %q, want error", line, p, b)
		}
	}
	if p, b, err := parseServeLine("policyd=127.0.0.1:1 bare=127.0.0.1:2\n"); err != nil || p != "127.0.0.1:1" || b != "127.0.0.1:2" {
		t.Errorf("parseServeLine: %q %q %v", p, b, err)
	}
}
