package policyd

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/user"
	"strconv"
	"time"
)

// Config configures a Server. Start from DefaultConfig.
type Config struct {
	// Listen lists the addresses ListenAndServe listens on:
	// "inet:127.0.0.1:10040", "127.0.0.1:10040", "[::1]:10040" or
	// "unix:/run/banner/policy.sock". Validate refuses a TCP address
	// without a fixed port (empty or 0: Postfix could not name it);
	// Server.Listen takes port 0 (tests).
	Listen []string
	// MaxLineBytes is the longest attribute line accepted, without "\n".
	MaxLineBytes int
	// MaxAttrs is the most attribute lines in one request.
	MaxAttrs int
	// MaxRequestBytes is the largest request accepted, newlines included.
	MaxRequestBytes int
	// ReadTimeout bounds reading one request once its first byte arrived
	// (a slowloris defence). Socket deadlines are moved only when less than
	// 90% of the timeout is left, so a request gets 90-100% of it.
	ReadTimeout time.Duration
	// IdleTimeout closes a connection that sends nothing between requests,
	// after IdleTimeout plus at most min(ReadTimeout, IdleTimeout).
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one reply (90-100% of it, as ReadTimeout).
	WriteTimeout time.Duration
	// RequestTimeout is the per-request deadline: when the handler has not
	// answered by then, FailAction is sent and the handler's context is
	// cancelled. A watchdog ticking every RequestTimeout/20 enforces it, so
	// the fail action goes out up to 5% late.
	RequestTimeout time.Duration
	// FailAction is sent when the handler misses RequestTimeout or returns
	// an action unfit for the wire. It must pass ValidAction.
	FailAction string
	// MaxConns is the most concurrent connections; more are closed at once.
	MaxConns int
	// AllowPeers lists the TCP peers allowed to connect; others are closed
	// at once. Unix socket peers are always allowed.
	AllowPeers []netip.Prefix
	// PeerUsers lists the users (names or numeric uids) whose sockets may
	// connect; connections from other users' sockets are closed at once.
	// The owner is found with SO_PEERCRED on unix sockets and in the
	// kernel's socket table (sock_diag netlink, else /proc/net/tcp) for a
	// TCP peer from a loopback address. A TCP peer from another address
	// has no uid banner can know: AllowPeers alone decides for it. When the
	// owner cannot be found (the peer closed its socket before accept, or
	// both lookups fail) the connection is refused. ["*"] turns the check
	// off; an empty list is an error; so is a user that does not exist,
	// except postfix in the default list (DefaultPeerUsers).
	PeerUsers []string
	// MaxConnsPerUser is the most concurrent connections from the sockets
	// of one peer user other than root and postfix, whose smtpd processes
	// need up to MaxConns. Not applied with PeerUsers ["*"] nor to TCP
	// peers from non-loopback addresses.
	MaxConnsPerUser int
	// SocketMode is the file mode of unix listening sockets.
	SocketMode os.FileMode
	// SocketUser and SocketGroup, names or numeric IDs, own unix listening
	// sockets; "" leaves the owner (the process's) alone. A chrooted smtpd
	// runs as user postfix, so a socket under /var/spool/postfix/private
	// needs SocketGroup "postfix" (with SocketMode 0660).
	SocketUser, SocketGroup string
	// Logger receives connection and protocol errors; nil means slog.Default().
	Logger *slog.Logger
}

// Default values, also documented in DefaultConfig.
const (
	DefaultAddr            = "inet:127.0.0.1:10040"
	DefaultMaxLineBytes    = 8 << 10
	DefaultMaxAttrs        = 100
	DefaultMaxRequestBytes = 64 << 10
	DefaultReadTimeout     = 10 * time.Second
	DefaultIdleTimeout     = 330 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
	DefaultRequestTimeout  = 5 * time.Second
	DefaultFailAction      = "DUNNO"
	DefaultMaxConns        = 1000
	DefaultMaxConnsPerUser = 100
	DefaultSocketMode      = os.FileMode(0o660)
)

// DefaultConfig returns the defaults: listen on inet:127.0.0.1:10040; lines
// up to 8 KiB (Postfix lines are short, but a ccert_subject or an SMTPUTF8
// address can be long, and smtpd's own line limit is 2 KiB by default);
// 100 attributes (Postfix 3.7 sends 30); 64 KiB per request; 10 s to read
// a started request; 330 s idle (Postfix closes idle policy connections
// after 300 s); 10 s to write a reply; a 5 s per-request deadline (Postfix
// is told timeout=10s) answered with DUNNO; 1000 connections; loopback
// peers only (127.0.0.0/8, ::1), and of those only sockets of postfix and
// root (DefaultPeerUsers), other users 100 connections each; unix sockets
// mode 0660.
func DefaultConfig() Config {
	return Config{
		Listen:          []string{DefaultAddr},
		MaxLineBytes:    DefaultMaxLineBytes,
		MaxAttrs:        DefaultMaxAttrs,
		MaxRequestBytes: DefaultMaxRequestBytes,
		ReadTimeout:     DefaultReadTimeout,
		IdleTimeout:     DefaultIdleTimeout,
		WriteTimeout:    DefaultWriteTimeout,
		RequestTimeout:  DefaultRequestTimeout,
		FailAction:      DefaultFailAction,
		MaxConns:        DefaultMaxConns,
		AllowPeers: []netip.Prefix{
			netip.MustParsePrefix("127.0.0.0/8"),
			netip.MustParsePrefix("::1/128"),
		},
		PeerUsers:       DefaultPeerUsers(),
		MaxConnsPerUser: DefaultMaxConnsPerUser,
		SocketMode:      DefaultSocketMode,
	}
}

// Validate checks c; its errors name the field as spelled in the TOML file.
func (c Config) Validate() error {
	var errs []error
	for _, a := range c.Listen {
		network, addr, err := parseListenAddr(a)
		if err == nil && network == "tcp" {
			err = fixedPort(a, addr)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("listen: %w", err))
		}
	}
	positive := []struct {
		name string
		v    int64
	}{
		{"max_line_bytes", int64(c.MaxLineBytes)},
		{"max_attributes", int64(c.MaxAttrs)},
		{"max_request_bytes", int64(c.MaxRequestBytes)},
		{"read_timeout", int64(c.ReadTimeout)},
		{"idle_timeout", int64(c.IdleTimeout)},
		{"write_timeout", int64(c.WriteTimeout)},
		{"request_timeout", int64(c.RequestTimeout)},
		{"max_connections", int64(c.MaxConns)},
		{"max_connections_per_user", int64(c.MaxConnsPerUser)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			errs = append(errs, fmt.Errorf("%s: must be > 0, got %d", p.name, p.v))
		}
	}
	if c.MaxLineBytes > 0 && c.MaxRequestBytes > 0 && c.MaxRequestBytes < c.MaxLineBytes {
		errs = append(errs, fmt.Errorf("max_request_bytes: %d is less than max_line_bytes %d",
			c.MaxRequestBytes, c.MaxLineBytes))
	}
	if c.MaxLineBytes > 1<<20 || c.MaxRequestBytes > 16<<20 {
		errs = append(errs, fmt.Errorf("max_line_bytes/max_request_bytes: %d/%d exceeds 1 MiB/16 MiB",
			c.MaxLineBytes, c.MaxRequestBytes))
	}
	if err := ValidAction(c.FailAction); err != nil {
		errs = append(errs, fmt.Errorf("fail_action: %w", err))
	}
	if _, _, err := c.socketOwner(); err != nil {
		errs = append(errs, err)
	}
	if _, err := resolvePeerUsers(c.PeerUsers); err != nil {
		errs = append(errs, err)
	}
	for _, p := range c.AllowPeers {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("allow_peers: invalid prefix %v", p))
		}
	}
	if c.SocketMode&^os.ModePerm != 0 {
		errs = append(errs, fmt.Errorf("socket_mode: %#o has bits other than permissions", c.SocketMode))
	}
	return errors.Join(errs...)
}

// socketOwner resolves SocketUser and SocketGroup; -1 means "leave alone".
func (c Config) socketOwner() (uid, gid int, err error) {
	uid, gid = -1, -1
	if c.SocketUser != "" {
		if uid, err = lookupID(c.SocketUser, user.Lookup, func(u *user.User) string { return u.Uid }); err != nil {
			return -1, -1, fmt.Errorf("socket_user: %w", err)
		}
	}
	if c.SocketGroup != "" {
		if gid, err = lookupID(c.SocketGroup, user.LookupGroup, func(g *user.Group) string { return g.Gid }); err != nil {
			return -1, -1, fmt.Errorf("socket_group: %w", err)
		}
	}
	return uid, gid, nil
}

// lookupID turns a name or a numeric ID into a numeric ID.
func lookupID[T any](name string, lookup func(string) (T, error), id func(T) string) (int, error) {
	if n, err := strconv.ParseUint(name, 10, 31); err == nil {
		return int(n), nil
	}
	v, err := lookup(name)
	if err != nil {
		return -1, fmt.Errorf("%q: %w", name, err)
	}
	n, err := strconv.Atoi(id(v))
	if err != nil {
		return -1, fmt.Errorf("%q: non-numeric id: %w", name, err)
	}
	return n, nil
}

// fixedPort refuses a TCP listen address whose port is empty or 0 (a, as
// written; addr, as parseListenAddr returned it): the kernel would pick a
// random port, which Postfix's check_policy_service cannot name.
// (Server.Listen itself accepts port 0, for tests.)
func fixedPort(a, addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", a, err)
	}
	if port == "" {
		return fmt.Errorf("listen address %q: no port (Postfix's check_policy_service needs a fixed one, e.g. inet:127.0.0.1:10040)", a)
	}
	if p, err := net.LookupPort("tcp", port); err == nil && p == 0 {
		return fmt.Errorf("listen address %q: port 0 would be a random port, which Postfix's check_policy_service cannot name; give a fixed one, e.g. inet:127.0.0.1:10040", a)
	}
	return nil
}
