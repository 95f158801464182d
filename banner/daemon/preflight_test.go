package daemon

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/banner-mta/banner/banner/config"
)

func warningText(ws []config.Warning) string {
	var b strings.Builder
	for _, w := range ws {
		b.WriteString(w.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// TestEnvironmentWarnings checks the machine against the configuration,
// with files and commands in temporary directories.
func TestEnvironmentWarnings(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	install := func(names ...string) {
		for _, n := range names {
			if err := os.WriteFile(filepath.Join(bin, n), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	install("ipset", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "postconf")
	t.Setenv("PATH", bin)
	old := systemPath
	systemPath = []string{filepath.Join(dir, "sbin")}
	t.Cleanup(func() { systemPath = old })

	mailLog := filepath.Join(dir, "mail.log")
	secret := filepath.Join(dir, "secret.log")
	virtual := filepath.Join(dir, "virtual")
	resolv := filepath.Join(dir, "resolv.conf")
	publicResolv := filepath.Join(dir, "resolv-public.conf")
	for p, text := range map[string]string{mailLog: "", secret: "", virtual: "a@example.test\n",
		resolv: "nameserver 127.0.0.1\n", publicResolv: "nameserver 9.9.9.9\n"} {
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(secret, 0); err != nil {
		t.Fatal(err)
	}
	rotated := filepath.Join(dir, "mail.log.2") // gzip-compressed, named without .gz
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte("Nov 24 00:00:00 mx1 postfix/smtpd[1507]: connect from unknown[209.172.156.34]\n"))
	zw.Close()
	compiled := filepath.Join(dir, "virtual.db")
	for p, data := range map[string][]byte{rotated: gz.Bytes(), compiled: {0, 0, 0x06, 0x15, 0x61, 0, 0, 0}} {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fifo := filepath.Join(dir, "fifo.log")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	secretUnreadable := false
	if fh, err := os.Open(secret); err != nil {
		secretUnreadable = true
	} else {
		fh.Close() // root reads anything
	}

	// good is a configuration this machine satisfies; each case edits it.
	good := map[string]string{
		"policy":     "listen = [\"inet:127.0.0.1:10040\", \"unix:" + filepath.Join(dir, "policy.sock") + "\"]",
		"dnsbl":      "resolv_conf = \"" + resolv + "\"",
		"ban":        "allow_mynetworks = true",
		"firewall":   "backend = \"ipset\"\nipv6 = true",
		"logwatch":   "files = [\"" + mailLog + "\"]",
		"recipients": "domains = [\"example.test\"]\nfiles = [\"" + virtual + "\"]",
		"store":      "path = \"" + filepath.Join(dir, "banner.db") + "\"",
		"control":    "socket = \"" + filepath.Join(dir, "run", "banner.sock") + "\"", // run/ is created by banner run
	}
	// postconf prints mynetworks, as "postconf -xh mynetworks" does.
	const mynetworks = "echo '127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128 192.0.2.0/24 cidr:/etc/postfix/network_table !192.0.2.7 0.0.0.0/0 [2001:db8::]/12 10.0.0.0/7'"
	tests := []struct {
		name     string
		section  string
		text     string
		want     []string
		skip     bool
		postconf string // the fake postconf's script; "" prints nothing
	}{
		{"all present", "", "", nil, false, ""},
		{"log file missing", "logwatch", "files = [\"" + mailLog + "\", \"" + filepath.Join(dir, "nope.log") + "\"]",
			[]string{"logwatch.files: " + filepath.Join(dir, "nope.log") + " does not exist", "Debian 12", "maillog_file"}, false, ""},
		{"log file unreadable", "logwatch", "files = [\"" + secret + "\"]",
			[]string{"logwatch.files: " + secret + " is not readable by this user"}, !secretUnreadable, ""},
		{"log file is a directory", "logwatch", "files = [\"" + dir + "\"]", []string{"is a directory"}, false, ""},
		{"log file is a FIFO (and the check does not block on it)", "logwatch", "files = [\"" + fifo + "\"]", []string{fifo + " is not a regular file"}, false, ""},
		{"recipient file missing", "recipients", "domains = [\"example.test\"]\nfiles = [\"" + filepath.Join(dir, "nope") + "\"]",
			[]string{"recipients.files:", "does not exist: banner run will refuse to start"}, false, ""},
		{"store directory missing", "store", "path = \"" + filepath.Join(dir, "nodir", "banner.db") + "\"",
			[]string{"store.path: directory " + filepath.Join(dir, "nodir") + " does not exist", "no bans"}, false, ""},
		{"store path is a directory", "store", "path = \"" + dir + "\"", []string{"store.path: " + dir + " is a directory"}, false, ""},
		{"iptables backend, all commands there", "firewall", "backend = \"iptables\"", nil, false, ""},
		{"iptables backend without ipv6", "firewall", "backend = \"iptables\"\nipv6 = false", nil, false, ""},
		{"dry run needs nothing", "firewall", "backend = \"none\"", nil, false, ""},
		{"unix socket directory missing", "policy", "listen = [\"unix:" + filepath.Join(dir, "spool", "private", "banner") + "\"]",
			[]string{"policy.listen: directory " + filepath.Join(dir, "spool", "private") + " of", "does not exist: banner run will fail to listen"}, false, ""},
		{"postfix config dir missing", "ban", "postfix_config_dir = \"" + filepath.Join(dir, "postfix-out") + "\"",
			[]string{"ban.postfix_config_dir: " + filepath.Join(dir, "postfix-out") + " is not a directory"}, false, ""},
		{"resolv.conf missing", "dnsbl", "resolv_conf = \"" + filepath.Join(dir, "no-resolv.conf") + "\"",
			[]string{"dnsbl.resolv_conf:", "banner run will fail to start; set dnsbl.resolvers"}, false, ""},
		{"resolv.conf missing but resolvers set", "dnsbl", "resolvers = [\"127.0.0.1\"]\nresolv_conf = \"" + filepath.Join(dir, "no-resolv.conf") + "\"", nil, false, ""},
		{"resolv.conf names a public resolver", "dnsbl", "resolv_conf = \"" + publicResolv + "\"",
			[]string{"dnsbl.resolv_conf: Spamhaus does not answer queries from public resolvers", "operator Quad9, from " + publicResolv}, false, ""},
		{"log file is a rotated gzip log", "logwatch", "files = [\"" + rotated + "\"]",
			[]string{"logwatch.files: " + rotated + " is gzip-compressed (a rotated log?)", "list the live log"}, false, ""},
		{"recipient file is a compiled map", "recipients", "domains = [\"example.test\"]\nfiles = [\"" + compiled + "\"]",
			[]string{"recipients.files: " + compiled + ":1: NUL byte in line (" + compiled + " is a compiled Postfix map: list its text source, " + virtual + "): banner run will refuse to start"}, false, ""},
		{"recipient file lists no address of a protected domain", "recipients", "domains = [\"example.test\", \"example.org\"]\nfiles = [\"" + virtual + "\"]",
			[]string{"recipients.files: protected domain example.org: no recipient listed in " + virtual}, false, ""},
		{"mynetworks entries skipped and too broad", "", "",
			[]string{`ban.allow_mynetworks: mynetworks entries banner skips: "cidr:/etc/postfix/network_table": `, `; "!192.0.2.7": `,
				"add the networks that are yours to [ban] allowlist",
				"ban.allow_mynetworks: mynetworks entries wider than /8 (IPv4) or /16 (IPv6), not allowlisted: 0.0.0.0/0, 2000::/12, 10.0.0.0/7 (in Postfix"}, false, mynetworks},
		{"mynetworks not used", "ban", "allow_mynetworks = false", nil, false, mynetworks},
		{"postconf fails", "", "",
			[]string{"ban.allow_mynetworks: ", "exit status 1: postconf: fatal: open /etc/postfix/main.cf: No such file or directory: Postfix's mynetworks will not be allowlisted"},
			false, "echo 'postconf: fatal: open /etc/postfix/main.cf: No such file or directory' >&2; exit 1"},
		{"control socket directory and parent missing", "control", "socket = \"" + filepath.Join(dir, "nope", "banner", "banner.sock") + "\"",
			[]string{"control.socket: directory " + filepath.Join(dir, "nope", "banner") + " does not exist and banner run creates only that one directory, but " + filepath.Join(dir, "nope") + " does not exist: banner run will fail to start"}, false, ""},
		{"control socket parent is a file", "control", "socket = \"" + filepath.Join(mailLog, "banner", "banner.sock") + "\"",
			[]string{"control.socket: directory " + filepath.Join(mailLog, "banner") + " does not exist", "but " + mailLog + " is not a directory"}, false, ""},
		{"control socket directory is a file", "control", "socket = \"" + filepath.Join(mailLog, "banner.sock") + "\"",
			[]string{"control.socket: " + mailLog + " is not a directory: banner run cannot create its control socket"}, false, ""},
		{"control socket is a file", "control", "socket = \"" + mailLog + "\"",
			[]string{"control.socket: " + mailLog + " exists and is not a socket"}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip {
				t.Skip("running as root: every file is readable")
			}
			if err := os.WriteFile(filepath.Join(bin, "postconf"), []byte("#!/bin/sh\n"+tt.postconf+"\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			for _, s := range []string{"policy", "dnsbl", "ban", "firewall", "logwatch", "recipients", "store", "control"} {
				body := good[s]
				if s == tt.section {
					body = tt.text
				}
				b.WriteString("[" + s + "]\n" + body + "\n\n")
			}
			f, err := config.Parse("t.toml", []byte(b.String()))
			if err != nil {
				t.Fatal(err)
			}
			text := warningText(Preflight(f))
			if len(tt.want) == 0 && text != "" {
				t.Errorf("unexpected warnings:\n%s", text)
			}
			for _, w := range tt.want {
				if !strings.Contains(text, w) {
					t.Errorf("warnings lack %q:\n%s", w, text)
				}
			}
		})
	}

	// Commands: each one missing is named, with the key that needs it.
	// (The default backend, "auto", needs none where nftables works.)
	f, err := config.Parse("t.toml", []byte("[firewall]\nbackend = \"ipset\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ cmd, want string }{
		{"ipset", "firewall.backend: backend \"ipset\" needs ipset, not found"},
		{"iptables", "firewall.backend: backend \"ipset\" needs iptables, not found"},
		{"ip6tables", "firewall.ipv6: ip6tables not found"},
		{"ip6tables-restore", "firewall.ipv6: ip6tables-restore not found in $PATH or " + systemPath[0] + ": banner run will fail to start; install iptables, or set ipv6 = false"},
		{"iptables-restore", "firewall.backend: backend \"ipset\" needs iptables-restore, not found"},
		{"postconf", "ban.allow_mynetworks: postconf not found"},
	} {
		if err := os.Remove(filepath.Join(bin, c.cmd)); err != nil {
			t.Fatal(err)
		}
		text := warningText(commandWarnings(f))
		if !strings.Contains(text, c.want) {
			t.Errorf("without %s, warnings lack %q:\n%s", c.cmd, c.want, text)
		}
		install(c.cmd)
	}
	// A command found only in the system directories (not on a user's
	// PATH) counts as found: the daemon runs with them on its PATH.
	if err := os.Mkdir(systemPath[0], 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(bin, "ipset"), filepath.Join(systemPath[0], "ipset")); err != nil {
		t.Fatal(err)
	}
	if text := warningText(commandWarnings(f)); text != "" {
		t.Errorf("ipset in a system directory:\n%s", text)
	}
}
