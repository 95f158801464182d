package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/logwatch"
	"github.com/banner-mta/banner/banner/ownnets"
	"github.com/banner-mta/banner/banner/recipients"
	"github.com/banner-mta/banner/dnsbl"
)

// systemPath is searched for commands after $PATH: the daemon runs under
// systemd (or a root shell), whose PATH has the sbin directories where
// iptables, ipset and postconf live, while `banner run -check` may run
// from a user's shell without them. Tests replace it.
var systemPath = []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// findCommand reports whether name is on $PATH or in systemPath.
func findCommand(name string) bool {
	if _, err := exec.LookPath(name); err == nil {
		return true
	}
	for _, dir := range systemPath {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return true
		}
	}
	return false
}

// Preflight checks this machine against the configuration: the files
// banner reads, the directories it writes to, the commands it runs and what
// Postfix's mynetworks holds. They are warnings, not errors, because the
// configuration may be checked on another machine than the one that runs
// it. `banner run -check` prints them after the file's own Warnings.
func Preflight(f *config.File) []config.Warning {
	var ws []config.Warning
	ws = append(ws, logFileWarnings(f)...)
	ws = append(ws, journalWarnings(f)...)
	ws = append(ws, recipientFileWarnings(f)...)
	ws = append(ws, storeWarnings(f)...)
	ws = append(ws, commandWarnings(f)...)
	ws = append(ws, mynetworksWarnings(f)...)
	ws = append(ws, socketDirWarnings(f)...)
	ws = append(ws, controlSocketWarnings(f)...)
	ws = append(ws, resolverWarnings(f)...)
	return ws
}

// openProblem says why path cannot be read as a file, or "" when it can.
// It looks before it opens, so a FIFO never blocks the check.
func openProblem(path string) string {
	fi, err := os.Stat(path)
	if err == nil {
		switch {
		case fi.IsDir():
			return "is a directory, not a file"
		case !fi.Mode().IsRegular():
			return "is not a regular file"
		}
		var fh *os.File
		if fh, err = os.Open(path); err == nil {
			fh.Close()
			return ""
		}
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "does not exist"
	case errors.Is(err, fs.ErrPermission):
		return "is not readable by this user (banner runs as root)"
	}
	return fmt.Sprintf("cannot be opened: %v", err)
}

// logFileWarnings: a [logwatch] file that is missing or unreadable gives
// the log watcher nothing to read.
func logFileWarnings(f *config.File) []config.Warning {
	var ws []config.Warning
	journal := journalProbe{}
	for _, p := range f.LogWatch.Files {
		switch problem := openProblem(p); {
		case problem == "does not exist" && !f.LogWatch.Journal && journal.postfix() > 0:
			ws = append(ws, f.Warningf("logwatch.files", "%s does not exist, but the systemd journal holds Postfix entries (%d of its last mail entries, the newest at %s): "+
				"Postfix logs to the journal here; set journal = true in [logwatch] (and files = [])", p, journal.n, journal.last.Local().Format("2006-01-02 15:04:05")))
		case problem == "does not exist":
			ws = append(ws, f.Warningf("logwatch.files", "%s does not exist: the log watcher waits for it and sees nothing until it appears. "+
				"Debian 12 and later install no syslog daemon (Postfix then logs only to the journal): install rsyslog, "+
				"or set maillog_file = /var/log/postfix.log in main.cf (Postfix 3.4+) and list that file here", p))
		case problem != "":
			ws = append(ws, f.Warningf("logwatch.files", "%s %s: the log watcher cannot follow it", p, problem))
		default:
			if format := compressedFormat(p); format != "" {
				ws = append(ws, f.Warningf("logwatch.files", "%s is %s-compressed (a rotated log?): the log watcher reads plain text lines and matches nothing in it; list the live log, e.g. /var/log/mail.log (banner test-log reads rotated logs)", p, format))
			}
		}
	}
	return ws
}

// journalWarnings: journal = true needs journalctl and a journal it can
// read.
func journalWarnings(f *config.File) []config.Warning {
	if !f.LogWatch.Journal {
		return nil
	}
	j := journalProbe{}
	if j.postfix(); j.err != nil {
		return []config.Warning{f.Warningf("logwatch.journal", "cannot read the systemd journal: %v; the journal source retries, but sees nothing until journalctl works", j.err)}
	}
	if j.n == 0 {
		return []config.Warning{f.Warningf("logwatch.journal", "the systemd journal holds no Postfix entries (identifiers postfix/* and postfix-*/* of the mail facility) yet: does Postfix log to syslog (no maillog_file)?")}
	}
	return nil
}

// journalProbe asks the journal once whether it holds Postfix entries.
type journalProbe struct {
	done bool
	n    int
	last time.Time
	err  error
}

func (j *journalProbe) postfix() int {
	if !j.done {
		j.done = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		j.n, j.last, j.err = logwatch.JournalPostfixEntries(ctx, journalctlCommand, journalctlArgs...)
	}
	return j.n
}

// journalctlCommand and journalctlArgs are how Preflight reads the journal
// (tests point them at a journal directory).
var (
	journalctlCommand = "journalctl"
	journalctlArgs    []string
)

// compressedFormat names the compression of the regular file at path from
// its magic bytes, or returns "" for anything else.
func compressedFormat(path string) string {
	fh, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer fh.Close()
	head := make([]byte, 6)
	n, _ := io.ReadFull(fh, head)
	head = head[:n]
	for _, m := range []struct{ name, magic string }{
		{"gzip", "\x1f\x8b"}, {"bzip2", "BZh"}, {"xz", "\xfd7zXZ\x00"}, {"zstd", "\x28\xb5\x2f\xfd"},
	} {
		if bytes.HasPrefix(head, []byte(m.magic)) {
			return m.name
		}
	}
	return ""
}

// recipientFileWarnings: an unreadable recipient table stops banner run at
// start-up (loading is strict).
func recipientFileWarnings(f *config.File) []config.Warning {
	var ws []config.Warning
	for _, p := range f.Recipients.Files {
		if problem := openProblem(p); problem != "" {
			ws = append(ws, f.Warningf("recipients.files", "%s %s: banner run will refuse to start", p, problem))
		}
	}
	if len(ws) > 0 || len(f.Recipients.Files) == 0 {
		return ws
	}
	// Load the tables as banner run does: loading is strict, and a
	// compiled map (virtual.db) or a stray file fails here, not at start.
	if _, err := recipients.Load(f.RecipientsConfig(slog.New(slog.NewTextHandler(io.Discard, nil)))); err != nil {
		hint := ""
		for _, p := range f.Recipients.Files {
			switch filepath.Ext(p) {
			case ".db", ".lmdb", ".cdb":
				if !strings.Contains(err.Error(), p) {
					continue
				}
				hint = fmt.Sprintf(" (%s is a compiled Postfix map: list its text source, %s)", p, strings.TrimSuffix(p, filepath.Ext(p)))
			}
		}
		ws = append(ws, f.Warningf("recipients.files", "%v%s: banner run will refuse to start", err, hint))
	}
	return ws
}

// storeWarnings: the store's directory is created when missing, so a
// missing one is most often a typo or a moved path, and then banner starts
// afresh: no bans, escalation history or log positions.
func storeWarnings(f *config.File) []config.Warning {
	p := f.Store.Path
	if p == "" {
		return nil
	}
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return []config.Warning{f.Warningf("store.path", "%s is a directory; store.path names the database file, e.g. %s", p, filepath.Join(p, "banner.db"))}
	}
	dir := filepath.Dir(p)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return []config.Warning{f.Warningf("store.path", "directory %s does not exist: banner run creates it and starts with no bans, ban history or log positions (expected before the first start: the shipped unit's StateDirectory=banner creates /var/lib/banner)", dir)}
	case err != nil:
		return []config.Warning{f.Warningf("store.path", "directory %s: %v", dir, err)}
	case !fi.IsDir():
		return []config.Warning{f.Warningf("store.path", "%s is not a directory: banner run cannot create its store there", dir)}
	}
	return nil
}

// firewallCommands returns the commands a firewall backend runs, those for
// IPv6 separately.
func firewallCommands(backend string) (v4, v6 []string) {
	switch backend {
	case "ipset":
		// iptables-restore: foreign rules leave the chain in one
		// transaction
		return []string{"ipset", "iptables", "iptables-restore"}, []string{"ip6tables", "ip6tables-restore"}
	case "iptables":
		return []string{"iptables", "iptables-restore"}, []string{"ip6tables", "ip6tables-restore"}
	}
	return nil, nil
}

// commandWarnings: the firewall backend's commands, and postconf for
// allow_mynetworks, must be installed.
func commandWarnings(f *config.File) []config.Warning {
	var ws []config.Warning
	backend := f.Firewall.Backend
	if backend == firewall.BackendAuto {
		backend = firewall.Choose(context.Background(), f.FirewallConfig(nil)).Backend
	}
	if backend == firewall.BackendNFTables {
		if err := firewall.ProbeNFTables(); err != nil {
			ws = append(ws, f.Warningf("firewall.backend", "backend \"nftables\": the nftables netlink API does not work here (%v): banner run will fail to start unless it runs as root on a kernel with nf_tables; or set backend = \"auto\"", err))
		}
	}
	v4, v6 := firewallCommands(backend)
	var missing []string
	for _, c := range v4 {
		if !findCommand(c) {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		ws = append(ws, f.Warningf("firewall.backend", "backend %q needs %s, not found in $PATH or %s: banner run will fail to start (Debian: apt-get install ipset iptables); or set backend = \"none\" for a dry run",
			backend, strings.Join(missing, ", "), strings.Join(systemPath, ":")))
	}
	missing = nil
	if f.Firewall.IPv6 {
		for _, c := range v6 {
			if !findCommand(c) {
				missing = append(missing, c)
			}
		}
	}
	if len(missing) > 0 {
		ws = append(ws, f.Warningf("firewall.ipv6", "%s not found in $PATH or %s: banner run will fail to start; install iptables, or set ipv6 = false if this host has no IPv6 firewall",
			strings.Join(missing, ", "), strings.Join(systemPath, ":")))
	}
	if f.Ban.AllowMynetworks {
		if !findCommand("postconf") {
			ws = append(ws, f.Warningf("ban.allow_mynetworks", "postconf not found in $PATH or %s: Postfix's mynetworks will not be allowlisted (banner run logs a warning and goes on); run banner on the Postfix host, or set allow_mynetworks = false and list your networks in allowlist",
				strings.Join(systemPath, ":")))
		} else if d := f.Ban.PostfixConfigDir; d != "" {
			if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
				ws = append(ws, f.Warningf("ban.postfix_config_dir", "%s is not a directory: postconf -c %s will fail and mynetworks will not be allowlisted", d, d))
			}
		}
	}
	return ws
}

// mynetworksWarnings: the Postfix mynetworks entries allow_mynetworks does
// not allowlist, as banner run finds them: those ownnets cannot evaluate
// (type:table lookups, !exclusions, unreadable pattern files), and those
// wider than /8 or /16. commandWarnings covers a missing postconf or
// postfix_config_dir.
func mynetworksWarnings(f *config.File) []config.Warning {
	if !f.Ban.AllowMynetworks || !findCommand("postconf") {
		return nil
	}
	if d := f.Ban.PostfixConfigDir; d != "" {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return nil
		}
	}
	nets, skipped, err := ownnets.PostfixMynetworks(context.Background(), f.Ban.PostfixConfigDir, 10*time.Second)
	if errors.Is(err, exec.ErrNotFound) {
		return nil // found by findCommand in systemPath only, where the daemon's PATH finds it
	}
	if err != nil {
		return []config.Warning{f.Warningf("ban.allow_mynetworks", "%v: Postfix's mynetworks will not be allowlisted (banner run logs a warning and goes on)", err)}
	}
	var ws []config.Warning
	if len(skipped) > 0 {
		s := make([]string, len(skipped))
		for i, sk := range skipped {
			s[i] = sk.String()
		}
		ws = append(ws, f.Warningf("ban.allow_mynetworks", "mynetworks entries banner skips: %s; add the networks that are yours to [ban] allowlist", strings.Join(s, "; ")))
	}
	var broad []string
	for _, p := range nets {
		if banner.TooBroad(p) {
			broad = append(broad, p.String())
		}
	}
	if len(broad) > 0 {
		ws = append(ws, f.Warningf("ban.allow_mynetworks", "mynetworks entries wider than /%d (IPv4) or /%d (IPv6), not allowlisted: %s (in Postfix they are an open relay risk too); put the networks you trust in [ban] allowlist",
			banner.MinBits4, banner.MinBits6, strings.Join(broad, ", ")))
	}
	return ws
}

// controlSocketWarnings: control.Listen creates the socket's own directory
// (/run/banner) but not its parent, and replaces only a stale socket, so
// banner run fails to start on a typo in control.socket.
func controlSocketWarnings(f *config.File) []config.Warning {
	p := f.Control.Socket
	if p == "" {
		return nil
	}
	dir := filepath.Dir(p)
	fi, err := os.Stat(dir)
	switch {
	case err == nil && !fi.IsDir():
		return []config.Warning{f.Warningf("control.socket", "%s is not a directory: banner run cannot create its control socket %s and will fail to start", dir, p)}
	case err == nil:
		if fi, err := os.Lstat(p); err == nil && fi.Mode()&fs.ModeSocket == 0 {
			return []config.Warning{f.Warningf("control.socket", "%s exists and is not a socket: banner run will not replace it and will fail to start", p)}
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, syscall.ENOTDIR):
		return []config.Warning{f.Warningf("control.socket", "directory %s: %v: banner run will fail to start", dir, err)}
	}
	parent := filepath.Dir(dir)
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		problem := "is not a directory"
		if errors.Is(err, fs.ErrNotExist) {
			problem = "does not exist"
		} else if err != nil {
			problem = err.Error()
		}
		return []config.Warning{f.Warningf("control.socket", "directory %s does not exist and banner run creates only that one directory, but %s %s: banner run will fail to start", dir, parent, problem)}
	}
	return nil
}

// socketDirWarnings: a unix: policy listener is created in an existing
// directory; banner does not create it.
func socketDirWarnings(f *config.File) []config.Warning {
	var ws []config.Warning
	for _, l := range f.Policy.Listen {
		path, ok := strings.CutPrefix(l, "unix:")
		if !ok || path == "" {
			continue
		}
		dir := filepath.Dir(path)
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			problem := "does not exist"
			if err == nil {
				problem = "is not a directory"
			} else if !errors.Is(err, fs.ErrNotExist) {
				problem = err.Error()
			}
			ws = append(ws, f.Warningf("policy.listen", "directory %s of %q %s: banner run will fail to listen (banner does not create it; for Postfix's chrooted smtpd use /var/spool/postfix/private/)", dir, l, problem))
		}
	}
	return ws
}

// resolverWarnings: with no resolvers configured, the DNSBL checker reads
// resolv_conf at start-up and fails without it; the nameservers found
// there get dnsbl's public-resolver check.
func resolverWarnings(f *config.File) []config.Warning {
	if len(f.DNSBL.Zones) == 0 || len(f.DNSBL.Resolvers) > 0 {
		return nil
	}
	cfg := f.DNSBLConfig(slog.New(slog.NewTextHandler(io.Discard, nil)))
	cfg.CacheSize = 0
	c, err := dnsbl.New(cfg)
	if err != nil {
		return []config.Warning{f.Warningf("dnsbl.resolv_conf", "%v: banner run will fail to start; set dnsbl.resolvers", strings.TrimPrefix(err.Error(), "dnsbl: "))}
	}
	var ws []config.Warning
	for _, w := range dnsbl.ConfigWarnings(c.Zones(), c.Resolvers(), f.DNSBL.DQSKey) {
		if w.Key == "resolvers" {
			w.Attrs = append(w.Attrs, "from", f.DNSBL.ResolvConf)
			ws = append(ws, f.DNSBLWarning(w, "dnsbl.resolv_conf"))
		}
	}
	return ws
}
