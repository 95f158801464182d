package policyd

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/user"
	"slices"
	"strconv"
	"sync"
)

// AnyPeerUser, as the only entry of Config.PeerUsers, turns the peer user
// check (and with it the per-user connection cap) off.
const AnyPeerUser = "*"

// PostfixUser is the user Postfix's smtpd processes run as (mail_owner).
const PostfixUser = "postfix"

// DefaultPeerUsers returns the default Config.PeerUsers: the Postfix user
// and root. On a machine without a postfix user only root is kept (a
// warning is logged); an unknown user in any other list is an error.
func DefaultPeerUsers() []string { return []string{PostfixUser, "root"} }

// lookupUser resolves a user name; tests replace it.
var lookupUser = user.Lookup

// peerUsers is Config.PeerUsers resolved to uids.
type peerUsers struct {
	any     bool                // "*": no check
	uids    map[uint32]struct{} // allowed uids
	exempt  map[uint32]struct{} // uids not subject to MaxConnsPerUser: root and postfix
	missing []string            // default names not found on this machine
}

// resolvePeerUsers turns names or numeric uids into uids.
func resolvePeerUsers(names []string) (peerUsers, error) {
	var p peerUsers
	switch {
	case len(names) == 0:
		return p, errors.New(`peer_users: empty; list the users allowed to connect (default ["postfix", "root"]) or ["*"] for anyone`)
	case slices.Contains(names, AnyPeerUser):
		if len(names) != 1 {
			return p, fmt.Errorf(`peer_users: "*" must be the only entry, got %q`, names)
		}
		p.any = true
		return p, nil
	}
	isDefault := slices.Equal(names, DefaultPeerUsers())
	p.uids = make(map[uint32]struct{}, len(names))
	p.exempt = map[uint32]struct{}{0: {}}
	if u, err := lookupUser(PostfixUser); err == nil {
		if n, err := strconv.ParseUint(u.Uid, 10, 32); err == nil {
			p.exempt[uint32(n)] = struct{}{}
		}
	}
	var errs []error
	for _, name := range names {
		uid, err := lookupID(name, lookupUser, func(u *user.User) string { return u.Uid })
		if err != nil {
			var unknown user.UnknownUserError
			if isDefault && name == PostfixUser && errors.As(err, &unknown) {
				p.missing = append(p.missing, name)
				continue
			}
			errs = append(errs, fmt.Errorf("peer_users: %w", err))
			continue
		}
		p.uids[uint32(uid)] = struct{}{}
	}
	return p, errors.Join(errs...)
}

func (p *peerUsers) allows(uid uint32) bool {
	_, ok := p.uids[uid]
	return p.any || ok
}

func (p *peerUsers) capped(uid uint32) bool {
	_, ok := p.exempt[uid]
	return !p.any && !ok
}

// userConns counts open connections per peer uid, for MaxConnsPerUser.
type userConns struct {
	mu sync.Mutex
	n  map[uint32]int
}

// acquire takes a slot for uid unless it already has max.
func (u *userConns) acquire(uid uint32, max int) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n == nil {
		u.n = make(map[uint32]int)
	}
	if u.n[uid] >= max {
		return false
	}
	u.n[uid]++
	return true
}

func (u *userConns) release(uid uint32) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.n[uid]--; u.n[uid] <= 0 {
		delete(u.n, uid)
	}
}

// errNoPeerUID: the peer's socket was not found, or has no owner any more
// (it was closed; a TIME_WAIT socket reports uid 0 and must not count as
// root).
var errNoPeerUID = errors.New("peer socket not found or already closed")

// peerUID finds the uid owning the other end of c: SO_PEERCRED for a unix
// socket, the kernel's socket table for a TCP connection from a loopback
// address. check is false for a TCP peer from another address: its uid
// cannot be known, and AllowPeers alone decides.
func peerUID(c net.Conn, d *sockDiag) (uid uint32, check bool, err error) {
	switch c := c.(type) {
	case *net.UnixConn:
		uid, err := unixPeerUID(c)
		return uid, true, err
	case *net.TCPConn:
		remote := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		local := c.LocalAddr().(*net.TCPAddr).AddrPort()
		if !remote.Addr().Unmap().IsLoopback() {
			return 0, false, nil
		}
		uid, err := d.tcpOwner(remote, local)
		return uid, true, err
	}
	return 0, true, fmt.Errorf("peer uid of a %T", c)
}

// tcpOwner returns the uid owning the TCP socket whose local address is
// peer and remote address is us: by sock_diag netlink, or, when netlink is
// unavailable, from /proc/net/tcp and /proc/net/tcp6.
func (d *sockDiag) tcpOwner(peer, us netip.AddrPort) (uint32, error) {
	uid, err := d.lookup(peer, us)
	if err == nil || errors.Is(err, errNoPeerUID) {
		return uid, err
	}
	uid, perr := procTCPOwner(peer, us)
	if perr != nil {
		return 0, fmt.Errorf("sock_diag: %v; /proc/net/tcp: %w", err, perr)
	}
	return uid, nil
}
