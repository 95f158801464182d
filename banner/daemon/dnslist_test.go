package daemon

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/postfixtest"
	"github.com/banner-mta/banner/internal/testenv"
)

// smtpFrom runs EHLO, MAIL FROM and RCPT TO against addr from the local
// address from, and returns the RCPT reply.
func smtpFrom(t *testing.T, from, addr, rcpt string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, from, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(c)
	reply := func() string {
		var all []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("reading from %s: %v (so far %q)", addr, err, all)
			}
			line = strings.TrimRight(line, "\r\n")
			all = append(all, line)
			if len(line) < 4 || line[3] != '-' {
				return strings.Join(all, "\n")
			}
		}
	}
	send := func(cmd string) string {
		fmt.Fprintf(c, "%s\r\n", cmd)
		return reply()
	}
	if g := reply(); !strings.HasPrefix(g, "220") {
		t.Fatalf("greeting from %s: %q", addr, g)
	}
	send("EHLO client.example")
	send("MAIL FROM:<sender@example.org>")
	rr := send("RCPT TO:<" + rcpt + ">")
	send("QUIT")
	return rr
}

// TestPostscreenUsesDNSList: a real Postfix postscreen, with
// postscreen_dnsbl_sites = banner.local*3 and the system resolver pointed
// at the daemon's [dnslist] on 127.0.0.1:53, rejects a client the daemon
// banned and passes one it did not. All in a private network and mount
// namespace: the client addresses live on its loopback interface and
// /etc/resolv.conf is bind-mounted over only there.
func TestPostscreenUsesDNSList(t *testing.T) {
	if testenv.RunInNetNS(t, "mount") {
		return
	}
	const banned, clean = "198.51.100.7", "198.51.100.8"
	for _, a := range []string{banned, clean} {
		if out, err := exec.Command("ip", "addr", "add", a+"/32", "dev", "lo").CombinedOutput(); err != nil {
			t.Fatalf("ip addr add %s: %v: %s", a, err, out)
		}
	}
	dir := t.TempDir()
	resolv := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\noptions timeout:2 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount(resolv, "/etc/resolv.conf", "", syscall.MS_BIND, ""); err != nil {
		t.Fatalf("bind-mounting resolv.conf (private mount namespace): %v", err)
	}
	t.Cleanup(func() { syscall.Unmount("/etc/resolv.conf", 0) })

	cfg := testConfig(t, dir)
	cfg.DNSList.Listen = "127.0.0.1:53"
	cfg.Ban.AllowLocal = false // the clients' addresses are on this namespace's lo
	quiet := slog.New(slog.NewTextHandler(&testenv.SyncBuffer{}, nil))
	ctx, cancel := context.WithCancel(context.Background())
	d, err := New(ctx, cfg, quiet)
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
	if _, err := d.engine.Ban(ctx, netip.MustParsePrefix(banned+"/32"), time.Hour, "5 unknown recipients"); err != nil {
		t.Fatal(err)
	}

	psAddr := testenv.FreeAddr(t)
	pf := postfixtest.Start(t, postfixtest.Options{
		LocalDomains: []string{"example.test"},
		Users:        []string{"alice"},
		ExtraMasterCF: []string{
			psAddr + " inet n - n - 1 postscreen",
			"smtpd pass - - n - - smtpd",
			"dnsblog unix - - n - 0 dnsblog",
			"tlsproxy unix - - n - 0 tlsproxy",
		},
		ExtraMainCF: map[string]string{
			"postscreen_dnsbl_sites":     "banner.local*3",
			"postscreen_dnsbl_threshold": "3",
			"postscreen_dnsbl_action":    "enforce",
			"postscreen_greet_action":    "ignore",
			"postscreen_greet_wait":      "3s",
			"postscreen_access_list":     "",
			"postscreen_cache_map":       "btree:$data_directory/postscreen_cache",
		},
	})

	if r := smtpFrom(t, banned, psAddr, "alice@example.test"); !strings.HasPrefix(r, "550") || !strings.Contains(r, "banner.local") {
		t.Errorf("banned client: RCPT got %q, want 550 ... blocked using banner.local", r)
	}
	pf.WaitLog(t, "DNSBL rank 3 for ["+banned+"]", 10*time.Second)
	if r := smtpFrom(t, clean, psAddr, "alice@example.test"); !strings.HasPrefix(r, "250") {
		t.Errorf("clean client: RCPT got %q, want 250", r)
	}
	pf.WaitLog(t, "PASS NEW ["+clean+"]", 10*time.Second)
	for _, l := range pf.LogLines() {
		if strings.Contains(l, "postscreen[") && (strings.Contains(l, "DNSBL") || strings.Contains(l, "PASS") || strings.Contains(l, "reject")) {
			t.Log(l)
		}
		if strings.Contains(l, "DNSBL rank") && strings.Contains(l, clean) {
			t.Errorf("the clean client was ranked: %s", l)
		}
	}
	st := d.dnslist.Stats()
	if st.Banned == 0 || st.NotListed == 0 {
		t.Errorf("dnslist stats %+v: want queries for both clients", st)
	}
	t.Logf("dnslist stats: %+v", st)
}
