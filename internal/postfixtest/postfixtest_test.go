package postfixtest

import (
	"bufio"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/testenv"
)

// policyServer is a tiny real policy service on 127.0.0.1:0: it rejects
// client 198.51.100.7 and answers DUNNO otherwise, recording every request.
type policyServer struct {
	ln       net.Listener
	mu       sync.Mutex
	requests []map[string]string
}

func startPolicyServer(t *testing.T) *policyServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ps := &policyServer{ln: ln}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() { defer wg.Done(); ps.serve(c) }()
		}
	}()
	return ps
}

func (ps *policyServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	req := map[string]string{}
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimSuffix(line, "\n")
		if line != "" {
			name, value, _ := strings.Cut(line, "=")
			req[name] = value
			continue
		}
		ps.mu.Lock()
		ps.requests = append(ps.requests, req)
		ps.mu.Unlock()
		action := "DUNNO"
		if req["client_address"] == "198.51.100.7" {
			action = "REJECT blocked by test"
		}
		if _, err := c.Write([]byte("action=" + action + "\n\n")); err != nil {
			return
		}
		req = map[string]string{}
	}
}

func (ps *policyServer) seen(addr string) map[string]string {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	for _, r := range ps.requests {
		if r["client_address"] == addr {
			return r
		}
	}
	return nil
}

func TestPostfixHarness(t *testing.T) {
	if testenv.RunInNetNS(t) {
		return
	}
	ps := startPolicyServer(t)
	in := Start(t, Options{
		PolicyAddr:   ps.ln.Addr().String(),
		LocalDomains: []string{"example.test"},
		Users:        []string{"alice"},
	})
	t.Logf("postfix started in %v on %s, log %s", in.StartupTime, in.SMTPAddr, in.LogPath)

	tests := []struct {
		name       string
		client     string
		to         string
		wantRcpt   string // prefix of the RCPT reply
		wantQueued bool
		wantLog    string // substring of the maillog line
	}{
		{
			name:     "policy reject",
			client:   "198.51.100.7",
			to:       "alice@example.test",
			wantRcpt: "554 5.7.1 <alice@example.test>: Recipient address rejected: blocked by test",
			wantLog:  "NOQUEUE: reject: RCPT from unknown[198.51.100.7]: 554 5.7.1 <alice@example.test>: Recipient address rejected: blocked by test; from=<sender@example.net> to=<alice@example.test> proto=ESMTP helo=<client.example.net>",
		},
		{
			name:       "accepted",
			client:     "198.51.100.8",
			to:         "alice@example.test",
			wantRcpt:   "250 2.1.5 Ok",
			wantQueued: true,
			wantLog:    "client=unknown[198.51.100.8]",
		},
		{
			name:     "unknown user",
			client:   "198.51.100.9",
			to:       "nobody@example.test",
			wantRcpt: "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table",
			wantLog:  "NOQUEUE: reject: RCPT from unknown[198.51.100.9]: 550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<sender@example.net> to=<nobody@example.test> proto=ESMTP helo=<client.example.net>",
		},
		{
			name:     "relay denied",
			client:   "198.51.100.10",
			to:       "someone@elsewhere.example",
			wantRcpt: "554 5.7.1 <someone@elsewhere.example>: Relay access denied",
			wantLog:  "NOQUEUE: reject: RCPT from unknown[198.51.100.10]: 554 5.7.1 <someone@elsewhere.example>: Relay access denied;",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			res := in.Send(t, Message{
				ClientAddr: netip.MustParseAddr(tt.client),
				From:       "sender@example.net",
				To:         []string{tt.to},
			})
			t.Logf("session took %v:\n%s", time.Since(start), res)
			if len(res.Rcpt) != 1 || !strings.HasPrefix(res.Rcpt[0].String(), tt.wantRcpt) {
				t.Fatalf("RCPT reply = %v, want prefix %q", res.Rcpt, tt.wantRcpt)
			}
			if got := res.QueueID != ""; got != tt.wantQueued {
				t.Errorf("queued = %v (%s), want %v", got, res.Queued, tt.wantQueued)
			}
			line := in.WaitLog(t, tt.wantLog, 10*time.Second)
			t.Logf("log: %s", line)
			if tt.wantQueued {
				t.Logf("log: %s", in.WaitLog(t, res.QueueID+": to=<"+tt.to+">", 10*time.Second))
			}
		})
	}

	// XCLIENT reached the policy service: it saw the presented address.
	req := ps.seen("198.51.100.7")
	if req == nil {
		t.Fatalf("policy server got no request with client_address=198.51.100.7; requests: %v", ps.requests)
	}
	for k, want := range map[string]string{
		"request":             "smtpd_access_policy",
		"protocol_state":      "RCPT",
		"client_name":         "unknown",
		"recipient":           "alice@example.test",
		"sender":              "sender@example.net",
		"helo_name":           "client.example.net",
		"reverse_client_name": "unknown",
	} {
		if req[k] != want {
			t.Errorf("policy request %s = %q, want %q (request %v)", k, req[k], want, req)
		}
	}
	t.Logf("policy request for 198.51.100.7: %v", req)
	for _, l := range in.LogLines() {
		t.Logf("maillog: %s", l)
	}
}

// TestStartStopNoLeftovers starts two instances side by side and checks
// that no process of either survives the end of its test.
func TestStartStopNoLeftovers(t *testing.T) {
	if testenv.RunInNetNS(t) {
		return
	}
	var mu sync.Mutex
	var instances []*Instance
	t.Run("group", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				begin := time.Now()
				in := Start(t, Options{LocalDomains: []string{"example.test"}, Users: []string{"bob@example.test"}})
				mu.Lock()
				instances = append(instances, in)
				mu.Unlock()
				t.Logf("started in %v on %s", in.StartupTime, in.SMTPAddr)
				if len(in.Processes()) == 0 {
					t.Error("no postfix processes found for a running instance")
				}
				res := in.Send(t, Message{ClientAddr: netip.MustParseAddr("203.0.113.5"), To: []string{"bob@example.test", "alice@example.test"}})
				if len(res.Rcpt) != 2 || res.Rcpt[0].Code != 250 || res.Rcpt[1].Code != 550 || res.QueueID == "" {
					t.Errorf("unexpected dialogue:\n%s", res)
				}
				t.Logf("sent at %v", time.Since(begin))
				in.WaitLog(t, res.QueueID+": to=<bob@example.test>, relay=none", 10*time.Second)
				t.Logf("delivered at %v", time.Since(begin))
			})
		}
	})
	for _, in := range instances {
		if pids := in.Processes(); len(pids) != 0 {
			t.Errorf("postfix processes of %s left after cleanup: %v", in.ConfigDir, pids)
		}
		if _, err := os.Stat(in.BaseDir); !os.IsNotExist(err) {
			t.Errorf("%s not removed: %v", in.BaseDir, err)
		}
	}
}
