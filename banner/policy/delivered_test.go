package policy

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/testenv"
	"github.com/banner-mta/banner/policyd"
)

// TestEndOfMessageMakesGoodSender: the END-OF-MESSAGE request a real
// Postfix 3.7.11 sent (captured in testdata/postfix/policy-requests-3.7.txt,
// queue id BB59DBE20B) makes its client a good sender in the engine, whose
// recipient probes then weigh 1/good_sender_factor: with maxretry 2 and
// factor 3, two unknown recipients do not ban it, six do. The recipient
// and sender text of the request do not matter: the address is
// client_address.
func TestEndOfMessageMakesGoodSender(t *testing.T) {
	data, err := os.ReadFile(testenv.Fixture(t, "postfix/policy-requests-3.7.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var eom string
	for _, block := range strings.Split(string(data), "--- ") {
		if _, body, ok := strings.Cut(block, "\n"); ok && strings.Contains(body, "protocol_state=END-OF-MESSAGE") {
			eom = body
		}
	}
	if eom == "" {
		t.Fatal("no END-OF-MESSAGE request in the captures")
	}
	f := newFixture(t)
	const good = "192.0.2.9"
	body := strings.Replace(eom, "client_address=127.0.0.1", "client_address="+good, 1)
	body = strings.TrimRight(body, "\n") + "\n\n"
	var req policyd.Request
	if err := policyd.ReadRequest(bufio.NewReader(strings.NewReader(body)), &req, policyd.Limits{}); err != nil {
		t.Fatal(err)
	}
	if got := f.h.HandlePolicy(context.Background(), &req); got != "DUNNO" {
		t.Fatalf("END-OF-MESSAGE: %q", got)
	}
	if s := f.h.Stats(); s.Deliveries != 1 {
		t.Fatalf("deliveries counted %d, want 1", s.Deliveries)
	}
	addr := netip.MustParseAddr(good)
	deadline := time.Now().Add(5 * time.Second)
	for {
		x, err := f.engine.Explain(context.Background(), addr)
		if err != nil {
			t.Fatal(err)
		}
		if x.GoodSince != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not a good sender after END-OF-MESSAGE: %+v", x)
		}
		time.Sleep(5 * time.Millisecond)
	}
	uk := unknownSet{}
	for i := range 6 {
		uk[fmt.Sprintf("nobody%d@example.test", i)] = true
	}
	f.h.SetRecipients(uk)
	for i := range 6 {
		f.h.HandlePolicy(context.Background(), request(t, good, fmt.Sprintf("nobody%d@example.test", i), ""))
		if i == 4 {
			time.Sleep(50 * time.Millisecond)
			if _, banned := f.engine.Banned(addr); banned {
				t.Fatal("good sender banned after 5 probes (maxretry 2 x factor 3 = 6)")
			}
		}
	}
	waitBanned(t, f.engine, good)
}
