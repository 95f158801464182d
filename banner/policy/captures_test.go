package policy

import (
	"bufio"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/banner-mta/banner/internal/testenv"
	"github.com/banner-mta/banner/policyd"
)

// TestCapturedRequests runs the requests a real Postfix 3.7.11 sent (the
// shared fixture testdata/postfix/policy-requests-3.7.txt) through the
// decision, with the client moved off loopback so it is not allowlisted:
// every answer is DUNNO, and only the RCPT-stage request for the unknown
// recipient counts as a probe (DATA and END-OF-MESSAGE carry no recipient
// decision).
func TestCapturedRequests(t *testing.T) {
	data, err := os.ReadFile(testenv.Fixture(t, "postfix/policy-requests-3.7.txt"))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t)
	var n int
	for _, block := range strings.Split(string(data), "--- ") {
		_, body, ok := strings.Cut(block, "\n")
		if !ok || !strings.Contains(body, "request=smtpd_access_policy") {
			continue
		}
		body = strings.Replace(body, "client_address=127.0.0.1", "client_address=192.0.2.9", 1)
		body = strings.TrimRight(body, "\n") + "\n\n"
		var req policyd.Request
		if err := policyd.ReadRequest(bufio.NewReader(strings.NewReader(body)), &req, policyd.Limits{}); err != nil {
			t.Fatalf("captured request %d: %v", n, err)
		}
		if got := f.h.HandlePolicy(context.Background(), &req); got != "DUNNO" {
			t.Errorf("captured request %d (%s %s): action %q, want DUNNO", n, req.ProtocolState(), req.Get("recipient"), got)
		}
		n++
	}
	if n != 8 {
		t.Fatalf("read %d captured requests, want 8", n)
	}
	if s := f.h.Stats(); s.UnknownRecipients != 1 {
		t.Errorf("unknown recipients counted %d, want 1 (the RCPT for nobody@example.test)", s.UnknownRecipients)
	}
}
