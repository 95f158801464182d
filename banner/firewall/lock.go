package firewall

import (
	"errors"
	"fmt"
	"net"
	"syscall"
)

// ErrLocked is returned by [Lock] when another banner process (a daemon,
// or a teardown in progress) holds the lock on the chain or one of the sets.
var ErrLocked = errors.New("another banner process manages this firewall")

// Locks are held by the one banner process that manages a chain and its
// sets in a network namespace. Two daemons sharing either would remove
// each other's bans as strays, and a daemon starting while teardown runs
// would put back what teardown removes.
type Locks struct{ conns []net.PacketConn }

// Lock takes the locks on what cfg's backend manages: its chain and, for
// the ipset backend, its sets (set6 only with IPv6). Each is an abstract
// unix socket, "@banner/firewall/<chain>" or "@banner/ipset/<set>": it
// belongs to the network namespace, as chains and sets do, and vanishes
// with the process, so no lock is ever stale. The none backend takes
// none. If any is held elsewhere, Lock releases what it took and returns
// an error wrapping ErrLocked that names the object.
func Lock(cfg Config) (*Locks, error) {
	var names []lockName
	switch cfg.Backend {
	case BackendNone:
	case BackendIPSet:
		names = append(names, lockName{"chain", cfg.Chain}, lockName{"set", cfg.Set4})
		if cfg.IPv6 {
			names = append(names, lockName{"set", cfg.Set6})
		}
	default:
		names = append(names, lockName{"chain", cfg.Chain})
	}
	l := &Locks{}
	for _, n := range names {
		c, err := n.take()
		if err != nil {
			l.Release()
			return nil, err
		}
		l.conns = append(l.conns, c)
	}
	return l, nil
}

// Held reports how many locks l holds.
func (l *Locks) Held() int {
	if l == nil {
		return 0
	}
	return len(l.conns)
}

// Release gives the locks up. It may be called more than once, and on nil.
func (l *Locks) Release() {
	if l == nil {
		return
	}
	for _, c := range l.conns {
		c.Close()
	}
	l.conns = nil
}

// lockName names one firewall object: kind "chain" or "set".
type lockName struct{ kind, name string }

func (n lockName) path() string {
	if n.kind == "chain" {
		return "@banner/firewall/" + n.name
	}
	return "@banner/ipset/" + n.name
}

func (n lockName) take() (net.PacketConn, error) {
	c, err := net.ListenPacket("unixgram", n.path())
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, &lockedError{n}
	}
	if err != nil {
		return nil, fmt.Errorf("firewall: locking %s %s: %w", n.kind, n.name, err)
	}
	return c, nil
}

// lockedError names the object whose lock another process holds; it is
// ErrLocked to errors.Is.
type lockedError struct{ n lockName }

func (e *lockedError) Error() string {
	return fmt.Sprintf("firewall: another banner daemon (or teardown) manages %s %s in this network namespace "+
		"(it holds the lock %s: ss -xap | grep banner/ shows the process)", e.n.kind, e.n.name, e.n.path())
}

func (e *lockedError) Is(target error) bool { return target == ErrLocked }
