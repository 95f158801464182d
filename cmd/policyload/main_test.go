package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

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
