// Package testenv lets tests that need root, a private network namespace,
// firewall tools or a real Postfix skip cleanly on a developer's machine and
// fail loudly in CI, where BANNER_INTEGRATION=1 is set.
package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// IntegrationEnv is the environment variable that turns integration skips
// into failures. .ci/run sets it.
const IntegrationEnv = "BANNER_INTEGRATION"

// inNetNSEnv marks a test binary that was re-executed inside a private
// network namespace by RunInNetNS.
const inNetNSEnv = "BANNER_TEST_IN_NETNS"

// Integration reports whether integration tests are required to run.
func Integration() bool { return os.Getenv(IntegrationEnv) == "1" }

// Require skips the test with reason unless ok; under BANNER_INTEGRATION=1 it
// fails the test instead, so CI cannot silently skip it.
func Require(t testing.TB, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if Integration() {
		t.Fatalf("%s (required: %s=1)", reason, IntegrationEnv)
	}
	t.Skip(reason)
}

// RequireRoot requires the test to run as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "needs root")
}

// RequireCommands requires every named program to be on PATH.
func RequireCommands(t testing.TB, names ...string) {
	t.Helper()
	for _, n := range names {
		_, err := exec.LookPath(n)
		Require(t, err == nil, fmt.Sprintf("needs %s on PATH", n))
	}
}

// InNetNS reports whether this process was re-executed by RunInNetNS.
func InNetNS() bool { return os.Getenv(inNetNSEnv) == "1" }

// RunInNetNS runs the calling top-level test again in a child copy of the
// test binary inside a fresh network namespace and mount namespace
// (unshare -n -m, mounts private), with the
// loopback interface up. It returns true in the parent, which must then
// return at once: the child's verdict has been reported. It returns false in
// the child, which goes on with the test body. Everything the child changes
// (iptables, ipset, interfaces) vanishes with the namespace.
//
// Usage:
//
//	func TestX(t *testing.T) {
//		if testenv.RunInNetNS(t) {
//			return
//		}
//		... // runs as root inside the private namespace
//	}
func RunInNetNS(t *testing.T, extraCommands ...string) bool {
	t.Helper()
	if InNetNS() {
		if out, err := exec.Command("ip", "link", "set", "lo", "up").CombinedOutput(); err != nil {
			t.Fatalf("bringing up lo in namespace: %v: %s", err, out)
		}
		return false
	}
	RequireRoot(t)
	RequireCommands(t, append([]string{"unshare", "ip"}, extraCommands...)...)
	if strings.Contains(t.Name(), "/") {
		t.Fatalf("RunInNetNS must be called from a top-level test, not %q", t.Name())
	}
	args := []string{"-n", "-m", "--propagation", "private", "--", os.Args[0],
		"-test.run", "^" + regexp.QuoteMeta(t.Name()) + "$",
		"-test.count", "1", "-test.v"}
	if testing.Short() {
		args = append(args, "-test.short")
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), inNetNSEnv+"=1")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	t.Logf("output of %s in a private network namespace:\n%s", t.Name(), out.String())
	if err != nil {
		t.Fatalf("%s in a private network namespace: %v", t.Name(), err)
	}
	if bytes.Contains(out.Bytes(), []byte("--- SKIP: "+t.Name())) {
		t.Skipf("%s skipped inside the namespace", t.Name())
	}
	return true
}

// SmallDisk mounts a tmpfs of size bytes on a new directory and returns the
// directory: a real file system that fills up, for tests of a full disk.
// Only call it inside RunInNetNS's child, whose mounts are private: the
// mount vanishes with it.
func SmallDisk(t testing.TB, size int) string {
	t.Helper()
	if !InNetNS() {
		t.Fatal("SmallDisk outside RunInNetNS's private namespaces")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mounting a tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })
	return dir
}

// FillDisk writes a file in dir until the file system is full and returns
// its path; removing it frees the space again.
func FillDisk(t testing.TB, dir string) string {
	t.Helper()
	path := dir + "/filler"
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			break // ENOSPC
		}
	}
	return path
}

// SyncBuffer is a bytes.Buffer safe for concurrent use: a slog handler or a
// child process writes while the test reads.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Reset empties the buffer.
func (s *SyncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// FreeAddr returns a loopback TCP address whose port was free a moment
// ago, for a listener a test configures by address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Fixture returns the path of a file under the repository's top-level
// testdata/, the fixtures shared across packages (see testdata/README.md).
func Fixture(t testing.TB, name string) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testenv: cannot locate the source tree")
	}
	p := filepath.Join(filepath.Dir(file), "..", "..", "testdata", filepath.FromSlash(name))
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("fixture: %v", err)
	}
	return p
}

// Background runs run(ctx) in a goroutine and returns stop, which cancels
// ctx, waits for run to return and fails the test on its error; stop is
// idempotent and also runs at cleanup.
func Background(t testing.TB, run func(context.Context) error) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// WaitFor polls cond every millisecond and fails the test if it is not true
// within 90 s (generous: CI runs tests under -race on two cores).
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}
