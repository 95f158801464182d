// Package journaltest writes real systemd journal files for tests, with
// systemd-journal-remote reading export-format entries on its standard
// input, and runs a private systemd-journald in the test's mount namespace.
package journaltest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

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
