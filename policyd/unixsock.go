package policyd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// afterBind, when set by a test, runs between creating a unix socket and
// setting its owner, where a directory owner could swap the path.
var afterBind func(path string)

// listenUnix creates a unix listening socket at path with the given mode
// and owner (-1: unchanged). The mode is set at creation (umask on a
// thread of its own) and the owner through a descriptor of the socket file
// opened without following symlinks, so a path swapped after bind (by the
// owner of the directory, such as postfix for /var/spool/postfix/private)
// is refused and never followed. A directory that others may write to,
// where anyone could swap the path, is refused.
func listenUnix(path string, mode os.FileMode, uid, gid int) (*listener, error) {
	if err := checkSocketDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		c, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			c.Close()
			return nil, fmt.Errorf("%s: another process listens on it", path)
		}
		if !errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("probing existing socket %s: %w", path, err)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	}
	ln, err := bindUnix(path, mode)
	if err != nil {
		return nil, err
	}
	if afterBind != nil {
		afterBind(path)
	}
	if err := setSocketFile(path, mode, uid, gid); err != nil {
		ln.Close()
		return nil, err
	}
	return &listener{Listener: ln, desc: "unix:" + path}, nil
}

// checkSocketDir refuses a directory writable by others, or by a group
// other than root's, unless it is sticky (then only a file's owner may
// rename or remove it).
func checkSocketDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("socket directory %s is not a directory", dir)
	}
	st := fi.Sys().(*syscall.Stat_t)
	perm := fi.Mode()
	if perm&os.ModeSticky != 0 {
		return nil
	}
	if perm&0o002 != 0 {
		return fmt.Errorf("socket directory %s (mode %#o) is writable by others: anyone could replace the socket; use a directory only root (or the socket's user) can write to", dir, perm.Perm())
	}
	if perm&0o020 != 0 && st.Gid != 0 {
		return fmt.Errorf("socket directory %s (mode %#o) is writable by group %d: its members could replace the socket; use a directory only root (or the socket's user) can write to", dir, perm.Perm(), st.Gid)
	}
	return nil
}

// bindUnix creates the socket with umask 0777&^mode, on a locked thread
// that has its own umask (unshare CLONE_FS), so the rest of the process
// keeps its umask. The thread exits afterwards. Where unshare is refused,
// the socket is created with the process's umask and setSocketFile
// corrects the mode.
func bindUnix(path string, mode os.FileMode) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread's umask differs
		if unix.Unshare(unix.CLONE_FS) == nil {
			unix.Umask(int(0o777 &^ mode.Perm()))
		}
		ln, err := net.Listen("unix", path)
		ch <- result{ln, err}
	}()
	r := <-ch
	return r.ln, r.err
}

// setSocketFile opens the file at path without following a symlink, checks
// it is a socket, and sets its mode and owner through that descriptor.
func setSocketFile(path string, mode os.FileMode, uid, gid int) error {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening socket file %s: %w", path, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("%s was replaced after bind (mode %#o is not a socket): someone else writes to its directory", path, st.Mode)
	}
	if os.FileMode(st.Mode).Perm() != mode.Perm() {
		// chmod has no descriptor form for O_PATH; its /proc/self/fd
		// link names this very inode, whatever is at path now.
		if err := unix.Fchmodat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(fd), uint32(mode.Perm()), 0); err != nil {
			return fmt.Errorf("chmod %s %#o: %w", path, mode, err)
		}
	}
	if uid >= 0 || gid >= 0 {
		if err := unix.Fchownat(fd, "", uid, gid, unix.AT_EMPTY_PATH); err != nil {
			return fmt.Errorf("chown %s %d:%d: %w", path, uid, gid, err)
		}
	}
	return nil
}
