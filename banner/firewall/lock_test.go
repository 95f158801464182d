package firewall

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/banner-mta/banner/internal/testenv"
)

// useLockDir points LockDir at dir for the test (a fresh temporary
// directory if dir is "") and returns it.
func useLockDir(t *testing.T, dir string) string {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	old := LockDir
	LockDir = dir
	t.Cleanup(func() { LockDir = old })
	return dir
}

func lockTestID() string {
	return fmt.Sprintf("TEST-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
}

// TestFirewallLocks: the lock on a chain or set is held once per network
// namespace, and free again when released.
func TestFirewallLocks(t *testing.T) {
	dir := useLockDir(t, "")
	id := lockTestID()
	fc := func(backend, chain, set4, set6 string, v6 bool) Config {
		return Config{Backend: backend, Chain: chain, Set4: set4, Set6: set6, IPv6: v6}
	}
	first := fc(BackendIPSet, id, id+"-4", id+"-6", true)
	held, err := Lock(first)
	if err != nil {
		t.Fatal(err)
	}
	if held.Held() != 6 {
		t.Errorf("ipset backend with IPv6 holds %d locks, want 6 (chain, set4, set6, and the sasl group's)", held.Held())
	}
	ns, err := netnsID()
	if err != nil {
		t.Fatal(err)
	}
	chainFile := filepath.Join(dir, ns+".chain."+id)
	for _, f := range []string{chainFile, filepath.Join(dir, ns+".ipset."+id+"-4"), filepath.Join(dir, ns+".ipset."+id+"-6"),
		chainFile + "_SASL", filepath.Join(dir, ns+".ipset."+id+"-4_sasl"), filepath.Join(dir, ns+".ipset."+id+"-6_sasl")} {
		fi, err := os.Lstat(f)
		if err != nil {
			t.Errorf("lock file: %v", err)
			continue
		}
		if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o600 {
			t.Errorf("lock file %s: mode %v, want a regular file, 0600", f, fi.Mode())
		}
		if b, err := os.ReadFile(f); err != nil || string(b) != strconv.Itoa(os.Getpid())+"\n" {
			t.Errorf("lock file %s holds %q (%v), want this process's pid", f, b, err)
		}
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" means the lock is free
	}{
		{"same chain", fc(BackendIPTables, id, "", "", true), "another banner daemon (or teardown) manages chain " + id + " in this network namespace" +
			fmt.Sprintf(" (held by pid %d; lock file %s)", os.Getpid(), chainFile)},
		{"same set4, other chain", fc(BackendIPSet, id+"-x", id+"-4", id+"-y", true), "manages set " + id + "-4"},
		{"same set6, other chain", fc(BackendIPSet, id+"-x", id+"-y", id+"-6", true), "manages set " + id + "-6"},
		{"same set6 name but IPv6 off", fc(BackendIPSet, id+"-x", id+"-y", id+"-6", false), ""},
		{"none backend", fc(BackendNone, id, id+"-4", id+"-6", true), ""},
		{"other chain and sets", fc(BackendIPSet, id+"-x", id+"-y", id+"-z", true), ""},
		{"chain and set of the same name", fc(BackendIPSet, id+"-4", id+"-x", id+"-y", false), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Lock(tc.cfg)
			got.Release()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("lock refused: %v", err)
			case tc.want != "" && (!errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// A refused attempt releases what it took before the conflict: the
	// free chain of "same set4, other chain" can be locked again.
	if again, err := Lock(fc(BackendIPTables, id+"-x", "", "", true)); err != nil {
		t.Errorf("chain left locked by a refused attempt: %v", err)
	} else {
		again.Release()
	}
	held.Release()
	held.Release() // harmless
	if _, err := os.Lstat(chainFile); err != nil {
		t.Errorf("Release removed the lock file (it must stay): %v", err)
	}
	again, err := Lock(first)
	if err != nil {
		t.Fatalf("locks after release: %v", err)
	}
	again.Release()

	// The none backend needs no lock directory at all.
	useLockDir(t, filepath.Join(dir, "missing", "file", "x"))
	if err := os.WriteFile(filepath.Join(dir, "missing"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if l, err := Lock(fc(BackendNone, id, "", "", true)); err != nil || l.Held() != 0 {
		t.Errorf("none backend: %d locks, %v", l.Held(), err)
	}
}

// TestFirewallLockNames: odd names cannot leave the lock directory.
func TestFirewallLockNames(t *testing.T) {
	for _, tc := range []struct{ name, want string }{
		{"BANNER", "NS.chain.BANNER"},
		{"../x", "NS.chain.%2E.%2Fx"},
		{".hidden", "NS.chain.%2Ehidden"},
		{"a/b%c", "NS.chain.a%2Fb%25c"},
	} {
		got, err := lockName{"chain", tc.name}.file("NS")
		if err != nil || got != tc.want {
			t.Errorf("file for chain %q: %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if got, _ := (lockName{"set", "banner4"}).file("NS"); got != "NS.ipset.banner4" {
		t.Errorf("file for set banner4: %q", got)
	}
	for _, bad := range []string{"", "a\x00b"} {
		if got, err := (lockName{"chain", bad}).file("NS"); err == nil {
			t.Errorf("file for chain %q: %q, want an error", bad, got)
		}
	}
	dir := useLockDir(t, "")
	l, err := Lock(Config{Backend: BackendIPTables, Chain: "../escape"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	if _, err := os.Lstat(filepath.Join(filepath.Dir(dir), "escape")); err == nil {
		t.Errorf("a chain named ../escape made a file outside LockDir")
	}
}

// TestFirewallLockOtherNetNS: the locks are per network namespace, as
// chains and sets are: another namespace's daemon may use the same names.
func TestFirewallLockOtherNetNS(t *testing.T) {
	testenv.RequireRoot(t)
	useLockDir(t, "")
	cfg := Config{Backend: BackendIPSet, Chain: lockTestID(), Set4: "test4", Set6: "test6", IPv6: true}
	held, err := Lock(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Release()

	type result struct {
		sameNS, otherNS string
		conflict, err   error
	}
	done := make(chan result, 1)
	go func() {
		// This thread moves to a new network namespace and is never
		// unlocked, so that it dies with the goroutine instead of serving
		// others from the wrong namespace.
		runtime.LockOSThread()
		var r result
		r.sameNS, _ = netnsID()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			r.err = fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			done <- r
			return
		}
		r.otherNS, _ = netnsID()
		l, err := Lock(cfg)
		if err != nil {
			r.err = err
			done <- r
			return
		}
		// In that namespace, the lock works as in any other.
		_, r.conflict = Lock(cfg)
		l.Release()
		done <- r
	}()
	r := <-done
	if r.err != nil && strings.HasPrefix(r.err.Error(), "unshare") {
		testenv.Require(t, false, r.err.Error())
	}
	if r.err != nil {
		t.Fatalf("Lock in another network namespace: %v", r.err)
	}
	if r.sameNS == r.otherNS || r.otherNS == "" {
		t.Errorf("namespace identity before and after unshare: %q, %q", r.sameNS, r.otherNS)
	}
	if !errors.Is(r.conflict, ErrLocked) {
		t.Errorf("second Lock in the other namespace: %v, want ErrLocked", r.conflict)
	}
	// And the first namespace's locks are still held.
	if _, err := Lock(cfg); !errors.Is(err, ErrLocked) {
		t.Errorf("Lock in the first namespace again: %v, want ErrLocked", err)
	}
}

const (
	lockHolderEnv      = "BANNER_TEST_LOCK_HOLDER"
	lockHolderDirEnv   = "BANNER_TEST_LOCK_DIR"
	lockHolderChainEnv = "BANNER_TEST_LOCK_CHAIN"
)

// TestFirewallLockHolderProcess is not a test: TestFirewallLockOtherProcess
// runs the test binary with it to hold a chain's lock in another process,
// until its stdin closes.
func TestFirewallLockHolderProcess(t *testing.T) {
	if os.Getenv(lockHolderEnv) != "1" {
		return
	}
	LockDir = os.Getenv(lockHolderDirEnv)
	l, err := Lock(Config{Backend: BackendIPTables, Chain: os.Getenv(lockHolderChainEnv)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Release()
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin) //nolint:errcheck // until stdin closes
}

// TestFirewallLockOtherProcess: a lock held by another process is
// refused with its pid, and free once that process is gone.
func TestFirewallLockOtherProcess(t *testing.T) {
	dir := useLockDir(t, "")
	chain := lockTestID()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestFirewallLockHolderProcess$", "-test.count", "1")
	cmd.Env = append(os.Environ(), lockHolderEnv+"=1", lockHolderDirEnv+"="+dir, lockHolderChainEnv+"="+chain)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		cmd.Wait() //nolint:errcheck // reported below, or the test failed already
	}()
	sc := bufio.NewScanner(stdout)
	locked := false
	for !locked && sc.Scan() {
		locked = sc.Text() == "locked"
		if !locked {
			t.Logf("holder: %s", sc.Text())
		}
	}
	if !locked {
		t.Fatalf("the holder process did not take the lock")
	}
	go io.Copy(io.Discard, stdout) //nolint:errcheck // drain

	cfg := Config{Backend: BackendIPTables, Chain: chain}
	_, err = Lock(cfg)
	want := fmt.Sprintf("manages chain %s in this network namespace (held by pid %d; lock file %s",
		chain, cmd.Process.Pid, dir)
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), want) {
		t.Errorf("Lock while another process holds it: %v, want ErrLocked containing %q", err, want)
	}

	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("holder process: %v", err)
	}
	l, err := Lock(cfg)
	if err != nil {
		t.Fatalf("Lock after the holder exited: %v", err)
	}
	l.Release()
}

// TestFirewallLockDir: LockDir is made if missing, and refused unless it
// is a real directory that only its owner (root, when running as root)
// can write.
func TestFirewallLockDir(t *testing.T) {
	cfg := Config{Backend: BackendIPTables, Chain: lockTestID()}
	base := t.TempDir()

	// Missing: made, mode 0700.
	missing := filepath.Join(base, "run", "banner", "locks")
	useLockDir(t, missing)
	l, err := Lock(cfg)
	if err != nil {
		t.Fatalf("missing LockDir: %v", err)
	}
	l.Release()
	if fi, err := os.Lstat(missing); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("LockDir made as %v (%v), want a directory, mode 0700", fi.Mode(), err)
	}

	mkdir := func(name string, mode os.FileMode) string {
		t.Helper()
		p := filepath.Join(base, name)
		if err := os.Mkdir(p, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	good := mkdir("good", 0o700)
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "link")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, dir, want string }{
		{"world-writable", mkdir("world", 0o777), "is writable by group or others (mode 0777)"},
		{"sticky world-writable", mkdir("sticky", 0o1777), "is writable by group or others"},
		{"group-writable", mkdir("group", 0o770), "is writable by group or others (mode 0770)"},
		{"symlink", link, "is a symlink"},
		{"symlink with a trailing slash", link + "/", "is a symlink"},
		{"regular file", file, "is not a directory"},
		{"under a regular file", filepath.Join(file, "locks"), "not a directory"},
	}
	if os.Geteuid() == 0 {
		nobody := mkdir("nobody", 0o700)
		if err := os.Chown(nobody, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		tests = append(tests, struct{ name, dir, want string }{"not root's", nobody, "is owned by uid 65534, not root"})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			useLockDir(t, tc.dir)
			l, err := Lock(cfg)
			l.Release()
			if err == nil || errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LockDir %s: %v, want an error containing %q", tc.dir, err, tc.want)
			}
		})
	}
	// Nothing was created through the symlink.
	if es, err := os.ReadDir(good); err != nil || len(es) != 0 {
		t.Errorf("files made through the symlink: %v, %v", es, err)
	}

	// A symlink where a lock file belongs is not followed.
	dir := useLockDir(t, mkdir("planted", 0o700))
	ns, err := netnsID()
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(base, "target")
	if err := os.Symlink(target, filepath.Join(dir, ns+".chain."+cfg.Chain)); err != nil {
		t.Fatal(err)
	}
	if l, err := Lock(cfg); err == nil || !errors.Is(err, syscall.ELOOP) {
		l.Release()
		t.Errorf("Lock through a symlinked lock file: %v, want ELOOP", err)
	}
	if _, err := os.Lstat(target); err == nil {
		t.Errorf("Lock created the symlink's target")
	}
}
