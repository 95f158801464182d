package policy

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banner-mta/banner/banner/recipients"
	"github.com/banner-mta/banner/policyd"
)

// benchRequest is a whole Postfix 3.7 RCPT request (30 attributes).
const benchRequest = "request=smtpd_access_policy\nprotocol_state=RCPT\nprotocol_name=ESMTP\n" +
	"client_address=192.0.2.1\nclient_name=unknown\nclient_port=50002\nreverse_client_name=unknown\n" +
	"server_address=127.0.0.1\nserver_port=25\nhelo_name=client.example.net\nsender=normal@sender.example\n" +
	"recipient=carol@example.test\nrecipient_count=0\nqueue_id=\ninstance=6b29.6b05eb8e.b8ce6.0\nsize=0\n" +
	"etrn_domain=\nstress=\nsasl_method=\nsasl_username=\nsasl_sender=\nccert_subject=\nccert_issuer=\n" +
	"ccert_fingerprint=\nccert_pubkey_fingerprint=\nencryption_protocol=\nencryption_cipher=\n" +
	"encryption_keysize=0\npolicy_context=\n\n"

// BenchmarkDecide is the policy decision of the common request, as the
// policy service makes it: a client not banned whose DNSBL verdict (not
// listed) is in the cache, RCPT to a valid recipient in a protected
// domain of a real recipients table, with a running engine. 0 allocations.
func BenchmarkDecide(b *testing.B) {
	f := newFixture(b)
	path := filepath.Join(b.TempDir(), "valid")
	if err := os.WriteFile(path, []byte("carol@example.test\nalice@example.test\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	tbl, err := recipients.Load(recipients.Config{Domains: []string{"example.test"}, Files: []string{path}})
	if err != nil {
		b.Fatal(err)
	}
	f.h.SetRecipients(tableChecker{tbl})
	var req policyd.Request
	if err := policyd.ReadRequest(bufio.NewReader(strings.NewReader(benchRequest)), &req, policyd.Limits{}); err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if got := f.h.HandlePolicy(ctx, &req); got != "DUNNO" { // the verdict into the cache
		b.Fatalf("warm-up answer %q", got)
	}
	b.ReportAllocs()
	for b.Loop() {
		if f.h.HandlePolicy(ctx, &req) != "DUNNO" {
			b.Fatal("not DUNNO")
		}
	}
	b.StopTimer()
	if s := f.h.Stats(); s.UnknownRecipients != 0 || s.LookupFailures != 0 {
		b.Fatalf("stats %+v: not the common request", s)
	}
}

// tableChecker is the daemon's adapter of a recipients.Table.
type tableChecker struct{ t *recipients.Table }

func (c tableChecker) Unknown(rcpt string) bool { return c.t.Check(rcpt) == recipients.Unknown }
