package fleet

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// selfSigned returns a server certificate for 127.0.0.1 and its PEM.
func selfSigned(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redis.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// TestTLSAndACLUser: rediss:// with the CA from ca_file, and an ACL user
// whose password comes from password_file; a wrong CA or password keeps
// the node away (and says why in its status).
func TestTLSAndACLUser(t *testing.T) {
	cert, caPEM := selfSigned(t)
	mr, err := miniredis.RunTLS(&tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mr.Close)
	mr.RequireUserAuth("banner", "s3cret")
	dir := t.TempDir()
	ca, pw, badPW := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "pw"), filepath.Join(dir, "badpw")
	os.WriteFile(ca, caPEM, 0o600)
	os.WriteFile(pw, []byte("s3cret\n"), 0o600)
	os.WriteFile(badPW, []byte("wrong\n"), 0o600)
	url := "rediss://" + mr.Addr() + "/0"

	run := func(cfg Config) *Node {
		n, err := New(cfg, Cursor{})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { n.Run(t.Context(), &recorder{}); close(done) }()
		t.Cleanup(func() { <-done; n.Close() }) // t.Context ends before cleanups run
		return n
	}
	good := run(Config{URL: url, CAFile: ca, User: "banner", PasswordFile: pw, Node: "mx1", PollTimeout: 50 * time.Millisecond})
	waitFor(t, "TLS + ACL connect", func() bool { return good.Stats().Connected })

	wrong := run(Config{URL: url, CAFile: ca, User: "banner", PasswordFile: badPW, Node: "mx2"})
	noCA := run(Config{URL: url, User: "banner", PasswordFile: pw, Node: "mx3"})
	waitFor(t, "errors reported", func() bool { return wrong.Stats().LastError != "" && noCA.Stats().LastError != "" })
	if wrong.Stats().Connected || noCA.Stats().Connected {
		t.Error("connected with a wrong password or an unknown CA")
	}
	if e := noCA.Stats().LastError; !strings.Contains(e, "certificate") {
		t.Errorf("unknown CA: last error %q", e)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" = valid
	}{
		{"ok", Config{URL: "redis://127.0.0.1:6379/0", Node: "mx1"}, ""},
		{"tls", Config{URL: "rediss://redis.example:6380/0", Node: "mx1", CAFile: "/x"}, ""},
		{"no url", Config{Node: "mx1"}, "redis:"},
		{"http", Config{URL: "http://x", Node: "mx1"}, "redis:"},
		{"no node", Config{URL: "redis://x:1/0"}, "node:"},
		{"node with space", Config{URL: "redis://x:1/0", Node: "mx 1"}, "node:"},
		{"ca without tls", Config{URL: "redis://x:1/0", Node: "mx1", CAFile: "/x"}, "ca_file:"},
		{"huge queue", Config{URL: "redis://x:1/0", Node: "mx1", QueueSize: 1 << 30}, "queue_size:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)) {
				t.Errorf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
}
