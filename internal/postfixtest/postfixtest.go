// Package postfixtest runs a real, private Postfix instance for end-to-end
// tests: its own configuration, queue and data directories under a temporary
// directory, an smtpd listener on 127.0.0.1:<free port>, no chroot, a
// maillog_file written by postlogd (no syslog needed), XCLIENT allowed from
// loopback so tests can present any client address, optional
// check_policy_service, virtual mailbox domains whose unknown users are
// rejected with "550 5.1.1 ... User unknown in virtual mailbox table", and
// delivery to discard: so nothing ever leaves the machine.
//
// The machine's default Postfix instance (/etc/postfix) is neither read nor
// changed: as root, "postfix -c DIR" and "master -c DIR" accept any
// configuration directory; alternate_config_directories only matters to the
// set-gid commands postdrop(1) and postqueue(1), which this package does not
// use.
//
// Start works from inside a private network namespace (testenv.RunInNetNS):
// everything listens and connects on 127.0.0.1 of that namespace.
package postfixtest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/testenv"
)

// Paths of the Debian postfix package.
const (
	postfixCmd = "/usr/sbin/postfix"
	masterCmd  = "/usr/lib/postfix/sbin/master"
)

// Hostname is the myhostname of every test instance.
const Hostname = "mx.postfixtest.invalid"

// startTimeout bounds how long Start waits for the smtpd greeting.
const startTimeout = 30 * time.Second

// Options describe the instance to start.
type Options struct {
	// PolicyAddr, if set (e.g. "127.0.0.1:10040"), adds
	// check_policy_service { inet:PolicyAddr, timeout=10s, default_action=DUNNO }
	// to smtpd_recipient_restrictions after reject_unauth_destination.
	PolicyAddr string
	// LocalDomains are the virtual_mailbox_domains: mail for them is
	// accepted for Users and rejected with 550 5.1.1 User unknown otherwise.
	LocalDomains []string
	// Users are the valid recipients. A bare local part ("alice") is valid
	// in every LocalDomain; a full address ("bob@example.test") as given.
	Users []string
	// ExtraMainCF sets further main.cf parameters; it overrides the
	// generated ones of the same name.
	ExtraMainCF map[string]string
	// ExtraMasterCF adds lines to master.cf (e.g. another smtpd listener).
	ExtraMasterCF []string
}

// Instance is a running private Postfix.
type Instance struct {
	// SMTPAddr is the smtpd listener, "127.0.0.1:PORT".
	SMTPAddr string
	// LogPath is the maillog_file written by postlogd.
	LogPath string
	// ConfigDir holds main.cf, master.cf and the recipient table.
	ConfigDir string
	// QueueDir is the queue_directory.
	QueueDir string
	// BaseDir is the temporary directory holding everything above; it is
	// removed when the test ends.
	BaseDir string
	// StartupTime is how long Start took until smtpd greeted.
	StartupTime time.Duration

	opts   Options
	master *exec.Cmd
	exited chan struct{} // closed when master has been reaped
}

// Start starts a private Postfix instance and stops it when the test ends.
// It needs root and the Debian postfix package: without them the test is
// skipped, or fails under BANNER_INTEGRATION=1.
func Start(t testing.TB, opts Options) *Instance {
	t.Helper()
	testenv.RequireRoot(t)
	_, err := os.Stat(masterCmd)
	testenv.Require(t, err == nil, "needs postfix (apt-get install postfix): "+masterCmd)
	testenv.RequireCommands(t, postfixCmd)

	begin := time.Now()
	if err := becomeSubreaper(); err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	in, err := newInstance(opts)
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			in.dumpLog(t, 60)
		}
		stopBegin := time.Now()
		if err := in.stop(); err != nil {
			t.Errorf("postfixtest: stopping postfix: %v", err)
		}
		t.Logf("postfixtest: stopped %s in %v", in.ConfigDir, time.Since(stopBegin))
		if err := os.RemoveAll(in.BaseDir); err != nil {
			t.Errorf("postfixtest: %v", err)
		}
	})
	// A port picked by net.Listen and closed may be taken again before
	// master binds it: retry with a fresh port.
	for attempt := 1; ; attempt++ {
		err = in.start()
		if err == nil {
			break
		}
		in.stop() //nolint:errcheck // best effort before retrying
		if attempt == 3 {
			in.dumpLog(t, 60)
			t.Fatalf("postfixtest: %v", err)
		}
		t.Logf("postfixtest: attempt %d: %v; retrying", attempt, err)
	}
	in.StartupTime = time.Since(begin)
	return in
}

func newInstance(opts Options) (*Instance, error) {
	base, err := os.MkdirTemp("", "banner-postfixtest-")
	if err != nil {
		return nil, fmt.Errorf("creating base directory: %w", err)
	}
	// The postfix user must be able to reach the queue directory, and
	// postfix wants root-owned, not group/other-writable config files.
	if err := os.Chmod(base, 0o755); err != nil {
		return nil, fmt.Errorf("chmod %s: %w", base, err)
	}
	if err := checkTraversable(filepath.Dir(base)); err != nil {
		os.RemoveAll(base)
		return nil, err
	}
	in := &Instance{
		BaseDir:   base,
		ConfigDir: filepath.Join(base, "etc"),
		QueueDir:  filepath.Join(base, "spool"),
		LogPath:   filepath.Join(base, "log", "maillog"),
	}
	for _, d := range []string{in.ConfigDir, in.QueueDir, filepath.Dir(in.LogPath)} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return nil, fmt.Errorf("creating %s: %w", d, err)
		}
	}
	if err := writeConfig(filepath.Join(in.ConfigDir, "vmailbox"), vmailbox(opts)); err != nil {
		return nil, err
	}
	in.opts = opts
	return in, nil
}

// writeConfig writes a configuration file and dates it 10 s back: Postfix
// (dict_load_file) re-reads a file modified within the last second every
// 300 ms until it is stable, which cost 1.5 s per start.
func writeConfig(path, content string) error {
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	past := time.Now().Add(-10 * time.Second)
	if err := os.Chtimes(path, past, past); err != nil {
		return fmt.Errorf("setting mtime of %s: %w", path, err)
	}
	return nil
}

// checkTraversable fails if the postfix user could not descend into dir.
func checkTraversable(dir string) error {
	for d := dir; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("checking %s: %w", d, err)
		}
		if fi.Mode().Perm()&0o001 == 0 {
			return fmt.Errorf("directory %s is not searchable by the postfix user (mode %v): set TMPDIR to a world-searchable directory", d, fi.Mode().Perm())
		}
		if d == filepath.Dir(d) {
			return nil
		}
	}
}

// start writes the configuration for a fresh port, creates the queue
// directories and runs master in the foreground.
func (in *Instance) start() error {
	port, err := freePort()
	if err != nil {
		return err
	}
	in.SMTPAddr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	mainCF, err := in.mainCF()
	if err != nil {
		return err
	}
	if err := writeConfig(filepath.Join(in.ConfigDir, "main.cf"), mainCF); err != nil {
		return err
	}
	masterCF, err := in.masterCF(port)
	if err != nil {
		return err
	}
	if err := writeConfig(filepath.Join(in.ConfigDir, "master.cf"), masterCF); err != nil {
		return err
	}
	// What "postfix check" would do (post-install create-missing), done
	// directly: the shell scripts take 1-3 s.
	if err := in.makeDirs(); err != nil {
		return err
	}
	// master -s stays in the foreground ("postfix start-fg" does the
	// same); being our child it can be reaped and, should the test binary
	// die, Pdeathsig makes it take its children down with it.
	in.master = exec.Command(masterCmd, "-c", in.ConfigDir, "-s")
	in.master.Env = in.env()
	var stderr bytes.Buffer
	in.master.Stdout = &stderr
	in.master.Stderr = &stderr
	in.master.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := in.master.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", masterCmd, err)
	}
	in.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		cmd.Wait() //nolint:errcheck // the exit status of master is not interesting
		close(done)
	}(in.master, in.exited)

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-in.exited:
			return fmt.Errorf("postfix master exited during start-up: %s: %s%s", in.master.ProcessState, stderr.String(), in.logTail(10))
		default:
		}
		err := greet(in.SMTPAddr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("smtpd on %s not ready after %v: %w%s", in.SMTPAddr, startTimeout, err, in.logTail(10))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// queueDirs are the queue_directory subdirectories from
// /etc/postfix/postfix-files: name, mode, group postdrop.
var queueDirs = []struct {
	name     string
	mode     os.FileMode
	postdrop bool
}{
	{"active", 0o700, false}, {"bounce", 0o700, false}, {"corrupt", 0o700, false},
	{"defer", 0o700, false}, {"deferred", 0o700, false}, {"flush", 0o700, false},
	{"hold", 0o700, false}, {"incoming", 0o700, false}, {"private", 0o700, false},
	{"saved", 0o700, false}, {"trace", 0o700, false},
	{"maildrop", 0o730, true}, {"public", 0o710, true},
}

// makeDirs creates the queue and data directories with the owners and
// modes of postfix-files.
func (in *Instance) makeDirs() error {
	uid, gid, err := lookupIDs("postfix", "postdrop")
	if err != nil {
		return err
	}
	mk := func(dir string, mode os.FileMode, owner, group int) error {
		if err := os.MkdirAll(dir, mode); err != nil {
			return fmt.Errorf("creating %s: %w", dir, err)
		}
		if err := os.Chown(dir, owner, group); err != nil {
			return fmt.Errorf("chown %s: %w", dir, err)
		}
		if err := os.Chmod(dir, mode); err != nil {
			return fmt.Errorf("chmod %s: %w", dir, err)
		}
		return nil
	}
	if err := mk(filepath.Join(in.BaseDir, "data"), 0o700, uid, 0); err != nil {
		return err
	}
	if err := mk(filepath.Join(in.QueueDir, "pid"), 0o755, 0, 0); err != nil {
		return err
	}
	for _, d := range queueDirs {
		g := 0
		if d.postdrop {
			g = gid
		}
		if err := mk(filepath.Join(in.QueueDir, d.name), d.mode, uid, g); err != nil {
			return err
		}
	}
	return nil
}

// lookupIDs returns the uid of the mail owner and the gid of the setgid
// group.
func lookupIDs(owner, group string) (uid, gid int, err error) {
	u, err := user.Lookup(owner)
	if err != nil {
		return 0, 0, fmt.Errorf("looking up mail_owner %s: %w", owner, err)
	}
	g, err := user.LookupGroup(group)
	if err != nil {
		return 0, 0, fmt.Errorf("looking up setgid_group %s: %w", group, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(g.Gid)
	return uid, gid, nil
}

// greet connects, expects a 220 greeting and says QUIT.
func greet(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck // fresh conn
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("reading greeting: %w", err)
	}
	if !strings.HasPrefix(line, "220") {
		return fmt.Errorf("unexpected greeting %q", line)
	}
	_, err = c.Write([]byte("QUIT\r\n"))
	return err
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("picking a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func (in *Instance) env() []string {
	return []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"MAIL_CONFIG=" + in.ConfigDir,
		"LANG=C",
		"TZ=UTC",
	}
}

// stop terminates master with SIGTERM (what "postfix abort" does: master
// passes the signal on to its children and exits without waiting for
// them), waits for it, reaps the orphaned children (this process is a child
// subreaper, see Start) and makes sure no process of this instance is left.
func (in *Instance) stop() error {
	if in.master == nil || in.master.Process == nil {
		return nil
	}
	defer func() { in.master = nil }()
	ours := in.processes()
	in.master.Process.Signal(syscall.SIGTERM) //nolint:errcheck // may have exited already
	select {
	case <-in.exited:
	case <-time.After(10 * time.Second):
		in.master.Process.Kill() //nolint:errcheck // last resort
		<-in.exited
		return errors.New("master did not exit within 10s of SIGTERM; killed")
	}
	// Children exit on SIGTERM from master; give them a moment.
	var left []int
	for range 100 {
		reapOrphans(ours)
		left = in.processes()
		if len(left) == 0 {
			reapOrphans(ours)
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, pid := range left {
		syscall.Kill(pid, syscall.SIGKILL) //nolint:errcheck // our own leftover child
	}
	return fmt.Errorf("postfix processes %v were still running 2s after master exited; killed", left)
}

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from <linux/prctl.h>.
const prSetChildSubreaper = 36

// becomeSubreaper makes orphaned descendants (Postfix daemons whose master
// has exited) children of this process instead of PID 1, so reapOrphans
// can collect them: on machines and containers whose PID 1 does not reap,
// they would otherwise stay as zombies.
func becomeSubreaper() error {
	if _, _, errno := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); errno != 0 {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", errno)
	}
	return nil
}

// reapOrphans waits for zombie children of this process that were Postfix
// processes of the instance (pids in ours) or run as the postfix user. It
// never waits for other children, whose exit status belongs to whoever
// started them (e.g. an exec.Cmd).
func reapOrphans(ours []int) {
	postfixUID := -1
	if u, err := user.Lookup("postfix"); err == nil {
		postfixUID, _ = strconv.Atoi(u.Uid)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces or ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(stat[i+1:]))
		if len(f) < 2 || f[0] != "Z" || f[1] != strconv.Itoa(self) {
			continue
		}
		fi, err := os.Stat(filepath.Join("/proc", e.Name()))
		if err != nil {
			continue
		}
		uid := -2
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid = int(st.Uid)
		}
		if !slices.Contains(ours, pid) && uid != postfixUID {
			continue
		}
		var ws syscall.WaitStatus
		syscall.Wait4(pid, &ws, syscall.WNOHANG, nil) //nolint:errcheck // best effort
	}
}

// processes lists the pids of live processes whose environment has
// MAIL_CONFIG set to this instance's configuration directory: master passes
// it to every child. Zombies have no readable environment and are skipped.
func (in *Instance) processes() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := []byte("MAIL_CONFIG=" + in.ConfigDir + "\x00")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		if bytes.HasPrefix(env, want) || bytes.Contains(env, append([]byte{0}, want...)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Processes returns the pids of this instance's running Postfix processes
// (master and children).
func (in *Instance) Processes() []int { return in.processes() }

// fixture reads a file of the shared test fixtures, testdata/postfix/ at
// the top of the repository.
func fixture(name string) (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("postfixtest: cannot locate the source tree")
	}
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "testdata", "postfix", name))
	return string(b), err
}

// mainCF is testdata/postfix/main.cf with this run's directories, domains,
// policy service and ExtraMainCF set.
func (in *Instance) mainCF() (string, error) {
	base, err := fixture("main.cf")
	if err != nil {
		return "", err
	}
	p := map[string]string{}
	for _, line := range strings.Split(base, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			p[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	p["queue_directory"] = in.QueueDir
	p["data_directory"] = filepath.Join(in.BaseDir, "data")
	p["maillog_file"] = in.LogPath
	p["maillog_file_prefixes"] = filepath.Dir(in.LogPath)
	p["virtual_mailbox_domains"] = strings.Join(in.opts.LocalDomains, ", ")
	p["virtual_mailbox_maps"] = "texthash:" + filepath.Join(in.ConfigDir, "vmailbox")
	if in.opts.PolicyAddr != "" {
		p["smtpd_recipient_restrictions"] = "reject_unauth_destination, check_policy_service { inet:" +
			in.opts.PolicyAddr + ", timeout=10s, default_action=DUNNO }"
	}
	for k, v := range in.opts.ExtraMainCF {
		p[k] = v
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString("# generated by internal/postfixtest from testdata/postfix/main.cf\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", k, p[k])
	}
	return b.String(), nil
}

// masterCF is testdata/postfix/master.cf (every service unchrooted) with
// the smtpd listener on port and ExtraMasterCF.
func (in *Instance) masterCF(port int) (string, error) {
	base, err := fixture("master.cf")
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString(base)
	fmt.Fprintf(&b, "127.0.0.1:%d inet n - n - - smtpd\n", port)
	for _, l := range in.opts.ExtraMasterCF {
		b.WriteString(l + "\n")
	}
	return b.String(), nil
}

// vmailbox renders the texthash virtual_mailbox_maps table.
func vmailbox(opts Options) string {
	var b strings.Builder
	for _, u := range opts.Users {
		u = strings.ToLower(strings.TrimSpace(u))
		if u == "" {
			continue
		}
		if strings.Contains(u, "@") {
			fmt.Fprintf(&b, "%s %s/\n", u, u)
			continue
		}
		for _, d := range opts.LocalDomains {
			fmt.Fprintf(&b, "%s@%s %s/%s/\n", u, strings.ToLower(d), strings.ToLower(d), u)
		}
	}
	return b.String()
}

// LogLines returns the lines of the maillog_file written so far.
func (in *Instance) LogLines() []string {
	data, err := os.ReadFile(in.LogPath)
	if err != nil {
		return nil
	}
	s := strings.TrimRight(string(data), "\n")
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// WaitLog waits until the maillog_file has a line containing substr and
// returns that line (the first such line). It fails the test after timeout.
func (in *Instance) WaitLog(t testing.TB, substr string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range in.LogLines() {
			if strings.Contains(l, substr) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfixtest: no line containing %q in %s after %v%s", substr, in.LogPath, timeout, in.logTail(20))
			return ""
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func (in *Instance) logTail(n int) string {
	lines := in.LogLines()
	if len(lines) == 0 {
		return ""
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "\nlast lines of " + in.LogPath + ":\n" + strings.Join(lines, "\n")
}

func (in *Instance) dumpLog(t testing.TB, n int) {
	t.Helper()
	if tail := in.logTail(n); tail != "" {
		t.Log(tail)
	}
}
