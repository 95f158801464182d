// Package journaltest writes real systemd journal files for tests, with
// systemd-journal-remote reading export-format entries on its standard
// input, and runs a private systemd-journald in the test's mount namespace.
package journaltest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banner-mta/banner/internal/testenv"
)

// RemoteCmd is systemd-journal-remote (Debian package systemd-journal-remote).
const RemoteCmd = "/lib/systemd/systemd-journal-remote"

// BootID is the _BOOT_ID of every entry a Writer writes.
const BootID = "0123456789abcdef0123456789abcdef"

// Require skips (or fails under BANNER_INTEGRATION=1) without journalctl
// and systemd-journal-remote.
func Require(t testing.TB) {
	t.Helper()
	testenv.RequireCommands(t, "journalctl")
	_, err := os.Stat(RemoteCmd)
	testenv.Require(t, err == nil, "needs "+RemoteCmd+" (Debian package systemd-journal-remote)")
}

// Writer writes one journal file through a running systemd-journal-remote.
type Writer struct {
	t   testing.TB
	cmd *exec.Cmd
	in  io.WriteCloser
	buf bytes.Buffer
	// Clock is the realtime of the last entry, Mono its monotonic time in
	// microseconds (one boot: BootID); each entry advances them.
	Clock time.Time
	Mono  int64
}

// NewWriter starts systemd-journal-remote writing the journal file path
// (its name must end in .journal). Entries start an hour ago.
func NewWriter(t testing.TB, path string) *Writer {
	t.Helper()
	cmd := exec.Command(RemoteCmd, "--output="+path, "-")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := &Writer{t: t, cmd: cmd, in: in, Clock: time.Now().Add(-time.Hour)}
	t.Cleanup(w.Close)
	return w
}

// Entry writes one entry with the given field, value pairs (binary safe),
// stamped a millisecond after the previous one.
func (w *Writer) Entry(fields ...string) {
	w.t.Helper()
	w.Clock = w.Clock.Add(time.Millisecond)
	w.Mono += 1000
	b := &w.buf
	b.Reset()
	fmt.Fprintf(b, "__REALTIME_TIMESTAMP=%d\n__MONOTONIC_TIMESTAMP=%d\n_BOOT_ID=%s\n_HOSTNAME=mx\n", w.Clock.UnixMicro(), w.Mono, BootID)
	for i := 0; i+1 < len(fields); i += 2 {
		k, v := fields[i], fields[i+1]
		if !printable(v) {
			b.WriteString(k + "\n")
			binary.Write(b, binary.LittleEndian, uint64(len(v)))
			b.WriteString(v + "\n")
			continue
		}
		b.WriteString(k + "=" + v + "\n")
	}
	b.WriteString("\n")
	if _, err := w.in.Write(b.Bytes()); err != nil {
		w.t.Fatal(err)
	}
}

// Postfix writes a mail-facility entry of identifier (e.g. "postfix/smtpd")
// with message.
func (w *Writer) Postfix(ident, message string) {
	w.t.Helper()
	w.Entry("SYSLOG_IDENTIFIER", ident, "SYSLOG_FACILITY", "2", "_PID", "4242", "MESSAGE", message)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// Close ends the input; systemd-journal-remote then closes the file.
func (w *Writer) Close() {
	if w.in == nil {
		return
	}
	w.in.Close()
	w.in = nil
	w.cmd.Wait()
}

// Dir makes a journal directory under t's temporary directory.
func Dir(t testing.TB) string {
	d := filepath.Join(t.TempDir(), "journal")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	return d
}

// JournaldCmd is systemd-journald.
const JournaldCmd = "/lib/systemd/systemd-journald"

// Journald is a private systemd-journald: started in the test's own mount
// namespace (testenv.RunInNetNS's child) over temporary directories bound
// on /run/systemd, /run/log and /var/log/journal, so the machine's journal
// (if any) is untouched and journalctl without --directory reads this one.
type Journald struct {
	t    testing.TB
	cmd  *exec.Cmd
	out  testenv.SyncBuffer
	conn *net.UnixConn
}

// StartJournald binds the directories and starts journald. Only call it in
// a private mount namespace.
func StartJournald(t testing.TB) *Journald {
	t.Helper()
	if !testenv.InNetNS() {
		t.Fatal("StartJournald outside a private mount namespace")
	}
	if _, err := os.Stat(JournaldCmd); err != nil {
		t.Fatalf("needs %s: %v", JournaldCmd, err)
	}
	base := t.TempDir()
	for _, d := range []string{"/run/systemd", "/run/log", "/var/log/journal"} {
		src := filepath.Join(base, filepath.Base(d))
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "--bind", src, d).CombinedOutput(); err != nil {
			t.Fatalf("mount --bind %s %s: %v: %s", src, d, err, out)
		}
	}
	if err := os.MkdirAll("/run/systemd/journal", 0o755); err != nil {
		t.Fatal(err)
	}
	j := &Journald{t: t}
	j.Start()
	t.Cleanup(j.Stop)
	return j
}

// Start starts journald (again) and waits for its socket; the entries go
// to /var/log/journal (flushed).
func (j *Journald) Start() {
	j.t.Helper()
	j.cmd = exec.Command(JournaldCmd)
	j.cmd.Stdout, j.cmd.Stderr = &j.out, &j.out
	if err := j.cmd.Start(); err != nil {
		j.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: "/run/systemd/journal/socket", Net: "unixgram"})
		if err == nil {
			j.conn = c
			break
		}
		if time.Now().After(deadline) {
			j.t.Fatalf("journald socket: %v; journald said: %s", err, j.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	j.Ctl("--flush")
}

// Stop stops journald (SIGTERM) and waits for it.
func (j *Journald) Stop() {
	if j.cmd == nil {
		return
	}
	if j.conn != nil {
		j.conn.Close()
	}
	j.cmd.Process.Signal(syscall.SIGTERM)
	j.cmd.Wait()
	j.cmd = nil
}

// Postfix logs message as identifier over journald's native socket, with
// the mail facility.
func (j *Journald) Postfix(ident, message string) {
	j.t.Helper()
	msg := "SYSLOG_IDENTIFIER=" + ident + "\nSYSLOG_FACILITY=2\nPRIORITY=6\nMESSAGE=" + message + "\n"
	if _, err := j.conn.Write([]byte(msg)); err != nil {
		j.t.Fatal(err)
	}
}

// Ctl runs journalctl with args over this journal and returns its output.
func (j *Journald) Ctl(args ...string) string {
	j.t.Helper()
	out, err := exec.Command("journalctl", args...).CombinedOutput()
	if err != nil {
		j.t.Fatalf("journalctl %v: %v: %s", args, err, out)
	}
	return string(out)
}

// DevLog makes /dev/log journald's syslog socket, for programs that log
// with syslog(3) (a real Postfix). /dev is the machine's even in a private
// mount namespace (creating /dev/log there would create it for everyone),
// so DevLog mounts a fresh tmpfs on /dev, visible in this namespace only,
// and makes in it the device nodes programs need (mknod: never a bind of
// the real /dev, which a cleanup could walk into and empty), a tmpfs
// /dev/shm, and /dev/log a symlink to /run/systemd/journal/dev-log. Only
// call it in a private mount namespace, after StartJournald.
func DevLog(t testing.TB) {
	t.Helper()
	if !testenv.InNetNS() {
		t.Fatal("DevLog outside a private mount namespace")
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	run("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/dev")
	for _, n := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		if err := syscall.Mknod("/dev/"+n.name, syscall.S_IFCHR|0o666, int(unix.Mkdev(n.major, n.minor))); err != nil {
			t.Fatalf("mknod /dev/%s: %v", n.name, err)
		}
		if err := os.Chmod("/dev/"+n.name, 0o666); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir("/dev/shm", 0o1777); err != nil {
		t.Fatal(err)
	}
	run("mount", "-t", "tmpfs", "-o", "mode=1777", "tmpfs", "/dev/shm")
	for link, target := range map[string]string{"log": "/run/systemd/journal/dev-log", "fd": "/proc/self/fd",
		"stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, "/dev/"+link); err != nil {
			t.Fatal(err)
		}
	}
}
