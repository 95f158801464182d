package policyd

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// unixPeerUID returns the uid of the process that connected c (SO_PEERCRED).
func unixPeerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if serr != nil {
		return 0, fmt.Errorf("SO_PEERCRED: %w", serr)
	}
	return cred.Uid, nil
}

// sockDiag asks the kernel about one TCP socket by its exact 4-tuple over
// a NETLINK_SOCK_DIAG socket, opened on first use and kept.
type sockDiag struct {
	mu  sync.Mutex
	fd  int
	ok  bool // fd is open
	seq uint32
	buf []byte
}

// Sizes and offsets of the kernel's structures (linux/inet_diag.h).
const (
	nlHdrLen       = 16 // struct nlmsghdr
	inetDiagReqLen = 56 // struct inet_diag_req_v2
	inetDiagMsgLen = 72 // struct inet_diag_msg
	tcpListen      = 10 // TCP_LISTEN
)

func (d *sockDiag) close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ok {
		unix.Close(d.fd)
		d.ok = false
	}
}

func (d *sockDiag) open() error {
	if d.ok {
		return nil
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	tv := unix.Timeval{Sec: 1}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return fmt.Errorf("netlink socket: %w", err)
	}
	d.fd, d.ok, d.buf = fd, true, make([]byte, 8192)
	return nil
}

// lookup returns the uid owning the socket with local address peer and
// remote address us. errNoPeerUID means the kernel has no such socket (or
// only its TIME_WAIT remains); other errors mean netlink is unusable.
func (d *sockDiag) lookup(peer, us netip.AddrPort) (uint32, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.open(); err != nil {
		return 0, err
	}
	uid, err := d.query(peer, us)
	if err != nil && !errors.Is(err, errNoPeerUID) {
		unix.Close(d.fd) // start afresh next time: a reply may be pending
		d.ok = false
	}
	return uid, err
}

func (d *sockDiag) query(peer, us netip.AddrPort) (uint32, error) {
	family := byte(unix.AF_INET6)
	if peer.Addr().Unmap().Is4() && us.Addr().Unmap().Is4() {
		family = unix.AF_INET
	}
	d.seq++
	ne := binary.NativeEndian
	var msg [nlHdrLen + inetDiagReqLen]byte
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(msg[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(msg[8:], d.seq)
	r := msg[nlHdrLen:]
	r[0], r[1] = family, unix.IPPROTO_TCP
	ne.PutUint32(r[4:], ^uint32(0)) // every state
	putSockID(r[8:], family, peer, us)
	if err := unix.Sendto(d.fd, msg[:], 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("netlink send: %w", err)
	}
	for {
		n, _, err := unix.Recvfrom(d.fd, d.buf, 0)
		if err != nil {
			return 0, fmt.Errorf("netlink receive: %w", err)
		}
		b := d.buf[:n]
		for len(b) >= nlHdrLen {
			l := int(ne.Uint32(b))
			if l < nlHdrLen || l > len(b) {
				return 0, fmt.Errorf("netlink: bad message length %d", l)
			}
			typ, seq, body := ne.Uint16(b[4:]), ne.Uint32(b[8:]), b[nlHdrLen:l]
			b = b[min((l+3)&^3, len(b)):]
			if seq != d.seq {
				continue // a late answer to an earlier query
			}
			switch typ {
			case unix.NLMSG_ERROR:
				if len(body) < 4 {
					return 0, errors.New("netlink: short error message")
				}
				errno := -int32(ne.Uint32(body))
				if errno == int32(unix.ENOENT) {
					return 0, errNoPeerUID
				}
				return 0, fmt.Errorf("sock_diag: %w", unix.Errno(errno))
			case unix.SOCK_DIAG_BY_FAMILY:
				return diagOwner(body, peer, us)
			}
		}
	}
}

// putSockID writes a struct inet_diag_sockid: ports and addresses in
// network order, no interface, no cookie.
func putSockID(b []byte, family byte, local, remote netip.AddrPort) {
	binary.BigEndian.PutUint16(b[0:], local.Port())
	binary.BigEndian.PutUint16(b[2:], remote.Port())
	put := func(dst []byte, a netip.Addr) {
		if family == unix.AF_INET {
			a4 := a.Unmap().As4()
			copy(dst, a4[:])
		} else {
			a16 := a.As16()
			copy(dst, a16[:])
		}
	}
	put(b[4:20], local.Addr())
	put(b[20:36], remote.Addr())
	binary.NativeEndian.PutUint32(b[36:], 0)
	binary.NativeEndian.PutUint32(b[40:], ^uint32(0)) // INET_DIAG_NOCOOKIE
	binary.NativeEndian.PutUint32(b[44:], ^uint32(0))
}

// diagOwner checks that an inet_diag_msg describes the socket asked for,
// still owned by a process, and returns its uid.
func diagOwner(m []byte, peer, us netip.AddrPort) (uint32, error) {
	if len(m) < inetDiagMsgLen {
		return 0, fmt.Errorf("sock_diag: short reply (%d bytes)", len(m))
	}
	addr := func(b []byte) netip.Addr {
		if m[0] == unix.AF_INET {
			return netip.AddrFrom4([4]byte(b[:4]))
		}
		return netip.AddrFrom16([16]byte(b[:16])).Unmap()
	}
	id := m[4:]
	local := netip.AddrPortFrom(addr(id[4:]), binary.BigEndian.Uint16(id[0:]))
	remote := netip.AddrPortFrom(addr(id[20:]), binary.BigEndian.Uint16(id[2:]))
	if local != unmapPort(peer) || remote != unmapPort(us) {
		return 0, fmt.Errorf("sock_diag: asked for %v->%v, got %v->%v", peer, us, local, remote)
	}
	uid, inode := binary.NativeEndian.Uint32(m[64:]), binary.NativeEndian.Uint32(m[68:])
	if m[1] == tcpListen || inode == 0 {
		return 0, errNoPeerUID
	}
	return uid, nil
}

func unmapPort(a netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// procTCPOwner finds the socket in /proc/net/tcp or /proc/net/tcp6.
func procTCPOwner(peer, us netip.AddrPort) (uint32, error) {
	files := []string{"/proc/net/tcp6"}
	if peer.Addr().Unmap().Is4() {
		files = []string{"/proc/net/tcp", "/proc/net/tcp6"}
	}
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			return 0, err
		}
		uid, found, err := parseProcNetTCP(f, peer, us)
		f.Close()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", name, err)
		}
		if found {
			return uid, nil
		}
	}
	return 0, errNoPeerUID
}

// parseProcNetTCP scans a /proc/net/tcp or /proc/net/tcp6 table for the
// socket whose local address is local and remote address is remote, and
// returns its uid. A row without an inode (TIME_WAIT, or a socket whose
// process closed it) shows uid 0 and is not the owner: found is false
// then, as for a listening socket.
//
// Rows are "sl local rem st queues timer retrnsmt uid timeout inode ...",
// addresses in hex, each 32-bit word of the address in host byte order.
func parseProcNetTCP(r io.Reader, local, remote netip.AddrPort) (uid uint32, found bool, err error) {
	local, remote = unmapPort(local), unmapPort(remote)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 512), 4096)
	first := true
	for sc.Scan() {
		if first {
			first = false
			if strings.Contains(sc.Text(), "local_address") {
				continue
			}
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 {
			return 0, false, fmt.Errorf("short row %q", sc.Text())
		}
		l, err := parseProcAddr(f[1])
		if err != nil {
			return 0, false, err
		}
		if l != local {
			continue
		}
		rm, err := parseProcAddr(f[2])
		if err != nil {
			return 0, false, err
		}
		if rm != remote {
			continue
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil {
			return 0, false, fmt.Errorf("state %q: %w", f[3], err)
		}
		u, err := strconv.ParseUint(f[7], 10, 32)
		if err != nil {
			return 0, false, fmt.Errorf("uid %q: %w", f[7], err)
		}
		ino, err := strconv.ParseUint(f[9], 10, 64)
		if err != nil {
			return 0, false, fmt.Errorf("inode %q: %w", f[9], err)
		}
		if st == tcpListen || ino == 0 {
			continue
		}
		return uint32(u), true, nil
	}
	return 0, false, sc.Err()
}

// parseProcAddr parses "0100007F:1F90" or a 32-digit IPv6 form.
func parseProcAddr(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok || len(p) != 4 || len(h) != 8 && len(h) != 32 {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", s, err)
	}
	raw, err := hex.DecodeString(h)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address %q: %w", s, err)
	}
	var b [16]byte
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(b[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	a := netip.AddrFrom16(b).Unmap()
	if len(raw) == 4 {
		a = netip.AddrFrom4([4]byte(b[:4]))
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}
