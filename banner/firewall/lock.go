package firewall

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/banner-mta/banner/banner"
	"golang.org/x/sys/unix"
)

// ErrLocked is returned by [Lock] when another banner process (a daemon,
// or a teardown in progress) holds the lock on the chain or one of the sets.
var ErrLocked = errors.New("another banner process manages this firewall")

// LockDir is the directory of the lock files taken by [Lock]. It must be
// root's alone: a real directory (not a symlink), not writable by group or
// others and, when banner runs as root, owned by root. The systemd unit's
// RuntimeDirectory=banner (mode 0700) makes /run/banner; Lock creates
// LockDir itself, mode 0700, when it is missing (e.g. for a teardown run by
// root while no daemon runs). Tests may point it elsewhere.
var LockDir = "/run/banner/locks"

// Locks are held by the one banner process that manages a chain and its
// sets in a network namespace. Two daemons sharing either would remove
// each other's bans as strays, and a daemon starting while teardown runs
// would put back what teardown removes.
type Locks struct{ files []*os.File }

// Lock takes the locks on what cfg's backend manages: its chain and, for
// the ipset backend, its sets (set6 only with IPv6); for the nftables
// backend its table and also the ipset backend's chain and sets, which
// its Setup and Teardown remove when a previous backend left them ("auto"
// is resolved by Choose first). The none backend takes none. Each lock is
// an flock(2) on a file in [LockDir] named after the network namespace
// (the device and inode of /proc/thread-self/ns/net) and the object:
// "net-<dev>-<ino>.chain.<chain>", "net-<dev>-<ino>.ipset.<set>" or
// "net-<dev>-<ino>.nft.<table>",
// as chains and sets belong to a network namespace. The holder writes its
// pid into the file. An flock dies with its process, so a lock is never
// stale; the files stay (a stale file is harmless) and are never removed,
// since unlinking a file another process is about to lock would let two
// processes hold "the" lock at once. Only root can create files in LockDir,
// so no unprivileged user can take a lock first.
//
// If any lock is held elsewhere, Lock releases what it took and returns an
// error wrapping ErrLocked that names the object and the holder's pid.
func Lock(cfg Config) (*Locks, error) {
	if cfg.Backend == BackendAuto {
		cfg.Backend = Choose(context.Background(), cfg).Backend
	}
	// Every port group's names, the sasl group's also when it has no
	// ports of its own: Setup and Teardown remove what an earlier
	// configuration's sasl group left.
	names := groupLockNames(cfg.GroupConfig(banner.GroupMain))
	if cfg.saslNamesFit() {
		names = append(names, groupLockNames(cfg.GroupConfig(banner.GroupSASL))...)
	}
	return lockNames(names)
}

// groupLockNames returns the names of one port group's pieces.
func groupLockNames(cfg Config) []lockName {
	var names []lockName
	switch cfg.Backend {
	case BackendNone:
	case BackendNFTables:
		// The ipset backend's names too: Setup and Teardown remove what
		// an ipset or iptables backend of this configuration left.
		names = append(names, lockName{"nft", cfg.NFTTable}, lockName{"chain", cfg.Chain}, lockName{"set", cfg.Set4})
		if cfg.IPv6 {
			names = append(names, lockName{"set", cfg.Set6})
		}
	case BackendIPSet:
		names = append(names, lockName{"chain", cfg.Chain}, lockName{"set", cfg.Set4})
		if cfg.IPv6 {
			names = append(names, lockName{"set", cfg.Set6})
		}
	default:
		names = append(names, lockName{"chain", cfg.Chain})
	}
	return names
}

// lockNames takes the locks on names, all or none.
func lockNames(names []lockName) (*Locks, error) {
	l := &Locks{}
	if len(names) == 0 {
		return l, nil
	}
	ns, err := netnsID()
	if err != nil {
		return nil, err
	}
	dir, dirfd, err := openLockDir()
	if err != nil {
		return nil, err
	}
	defer unix.Close(dirfd)
	for _, n := range names {
		f, err := n.take(dir, dirfd, ns)
		if err != nil {
			l.Release()
			return nil, err
		}
		l.files = append(l.files, f)
	}
	return l, nil
}

// Held reports how many locks l holds.
func (l *Locks) Held() int {
	if l == nil {
		return 0
	}
	return len(l.files)
}

// Release gives the locks up: it closes the lock files, which drops their
// flocks, and leaves the files in place. It may be called more than once,
// and on nil.
func (l *Locks) Release() {
	if l == nil {
		return
	}
	for _, f := range l.files {
		f.Close()
	}
	l.files = nil
}

// netnsID names the network namespace of the calling thread by the device
// and inode of its /proc ns file. /proc/thread-self is the calling thread's
// own view (a thread may have unshared its namespace); /proc/self, the
// main thread's, serves kernels older than 3.17 that lack it.
func netnsID() (string, error) {
	var errs []error
	for _, p := range []string{"/proc/thread-self/ns/net", "/proc/self/ns/net"} {
		fi, err := os.Stat(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return "", fmt.Errorf("firewall: identifying the network namespace: no device and inode for %s", p)
		}
		return fmt.Sprintf("net-%d-%d", st.Dev, st.Ino), nil
	}
	return "", fmt.Errorf("firewall: identifying the network namespace for the firewall locks: %w", errors.Join(errs...))
}

// openLockDir makes LockDir if it is missing, checks that only root (or,
// when banner does not run as root, its own user) can write in it, and
// returns it opened, for openat: what was checked is what is used, even if
// the path changes meanwhile.
func openLockDir() (string, int, error) {
	dir := filepath.Clean(LockDir)
	bad := func(format string, a ...any) (string, int, error) {
		return "", -1, fmt.Errorf("firewall: lock directory %s %s; it must be a directory of root's alone, mode 0700 "+
			"(the systemd unit's RuntimeDirectory=banner makes /run/banner)", dir, fmt.Sprintf(format, a...))
	}
	fi, err := os.Lstat(dir)
	if errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return "", -1, fmt.Errorf("firewall: making the lock directory: %w", err)
		}
		fi, err = os.Lstat(dir)
	}
	if err != nil {
		return "", -1, fmt.Errorf("firewall: lock directory: %w", err)
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		return bad("is a symlink")
	case !fi.IsDir():
		return bad("is not a directory")
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, fmt.Errorf("firewall: opening the lock directory %s: %w", dir, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return "", -1, fmt.Errorf("firewall: lock directory %s: %w", dir, err)
	}
	euid := os.Geteuid()
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFDIR:
		unix.Close(fd)
		return bad("is not a directory")
	case st.Mode&0o022 != 0:
		unix.Close(fd)
		return bad("is writable by group or others (mode %#o)", st.Mode&0o7777)
	case euid == 0 && st.Uid != 0:
		unix.Close(fd)
		return bad("is owned by uid %d, not root", st.Uid)
	case st.Uid != 0 && int(st.Uid) != euid:
		unix.Close(fd)
		return bad("is owned by uid %d, neither root nor this process's uid %d", st.Uid, euid)
	}
	return dir, fd, nil
}

// lockName names one firewall object: kind "chain" or "set".
type lockName struct{ kind, name string }

// file returns the name of n's lock file in namespace ns. Chain and set
// names are validated by the configuration; still, '%', '/' and a leading
// '.' are escaped (%25, %2F, %2E), so that no name can leave LockDir or
// collide with another's file.
func (n lockName) file(ns string) (string, error) {
	if n.name == "" || strings.ContainsRune(n.name, 0) {
		return "", fmt.Errorf("firewall: cannot lock %s %q: invalid name", n.kind, n.name)
	}
	name := strings.NewReplacer("%", "%25", "/", "%2F").Replace(n.name)
	if strings.HasPrefix(name, ".") {
		name = "%2E" + name[1:]
	}
	kind := "chain"
	switch n.kind {
	case "chain":
	case "nft":
		kind = "nft"
	default:
		kind = "ipset"
	}
	return ns + "." + kind + "." + name, nil
}

// take opens n's lock file in dirfd (dir is its path, for messages) and
// flocks it, or returns a lockedError naming the pid written by its holder.
func (n lockName) take(dir string, dirfd int, ns string) (*os.File, error) {
	name, err := n.file(ns)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, name)
	fd, err := openat(dirfd, name)
	if err != nil {
		return nil, fmt.Errorf("firewall: locking %s %s: opening %s: %w", n.kind, n.name, path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		if err == nil {
			err = errors.New("not a regular file")
		}
		return nil, fmt.Errorf("firewall: locking %s %s: %s: %w", n.kind, n.name, path, err)
	}
	err = flock(fd, unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		pid := readPid(fd)
		unix.Close(fd)
		return nil, &lockedError{n: n, path: path, pid: pid}
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("firewall: locking %s %s: flock %s: %w", n.kind, n.name, path, err)
	}
	// The pid only serves the message of a process that finds the lock
	// taken: the lock holds even if writing it fails.
	if unix.Ftruncate(fd, 0) == nil {
		_, _ = unix.Pwrite(fd, []byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// openat opens (or creates) a lock file in dirfd, never following a
// symlink, retrying on EINTR.
func openat(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != unix.EINTR {
			return fd, err
		}
	}
}

// flock is unix.Flock, retrying on EINTR.
func flock(fd, how int) error {
	for {
		if err := unix.Flock(fd, how); err != unix.EINTR {
			return err
		}
	}
}

// readPid returns the pid written in a lock file, or 0 if there is none
// yet (its holder has only just taken it) or it is unreadable.
func readPid(fd int) int {
	buf := make([]byte, 32)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil || n <= 0 {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil || pid <= 0 {
		return 0
	}
	return pid
}

// lockedError names the object whose lock another process holds; it is
// ErrLocked to errors.Is.
type lockedError struct {
	n    lockName
	path string // the lock file
	pid  int    // its holder's, 0 if unknown
}

func (e *lockedError) Error() string {
	holder := "held by a process that has not written its pid yet"
	if e.pid > 0 {
		holder = fmt.Sprintf("held by pid %d", e.pid)
	}
	return fmt.Sprintf("firewall: another banner daemon (or teardown) manages %s %s in this network namespace (%s; lock file %s)",
		e.n.kind, e.n.name, holder, e.path)
}

func (e *lockedError) Is(target error) bool { return target == ErrLocked }
