// Package control is the unix-socket protocol between the banner CLI and the
// running daemon: one JSON request per connection, one JSON response. The
// socket is root-only (mode 0600, and the peer's uid is checked).
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/banner-mta/banner/banner"
	"golang.org/x/sys/unix"
)

// Commands understood by the daemon.
const (
	CmdBan      = "ban"
	CmdUnban    = "unban"
	CmdUnbanAll = "unban-all"
	CmdForget   = "forget"
	CmdList     = "list"
	CmdStatus   = "status"
	CmdExplain  = "explain" // Request.Prefix is the address (explain.go)
	CmdBanMany  = "ban-many"
)

// maxRequest bounds a request: most are a few hundred bytes, a ban-many
// of 100,000 addresses about 2 MB. Only root may connect.
const maxRequest = 64 << 20

// MaxBanMany bounds the prefixes of one ban-many request.
const MaxBanMany = 2_000_000

// Request is what the CLI sends.
type Request struct {
	Cmd    string `json:"cmd"`
	Prefix string `json:"prefix,omitempty"`
	// For is the ban duration in Go notation; empty means the escalated default.
	For    string `json:"for,omitempty"`
	Reason string `json:"reason,omitempty"`
	// Prefixes are the addresses and CIDRs of a ban-many request.
	Prefixes []string `json:"prefixes,omitempty"`
	// List holds them too, one a line (AppendList): one JSON string,
	// encoded and decoded several times faster than as many. A request
	// may use both.
	List string `json:"list,omitempty"`
}

// AppendList appends ps to a Request.List.
func AppendList(list []byte, ps []netip.Prefix) []byte {
	for _, p := range ps {
		list = p.AppendTo(list)
		list = append(list, '\n')
	}
	return list
}

// banManyCount is about how many prefixes a ban-many request holds (List's
// empty lines count too).
func banManyCount(req Request) int {
	n := len(req.Prefixes) + strings.Count(req.List, "\n")
	if req.List != "" && !strings.HasSuffix(req.List, "\n") {
		n++
	}
	return n
}

// banManyPrefixes parses the prefixes of a ban-many request: Prefixes,
// then the lines of List.
func banManyPrefixes(req Request) ([]netip.Prefix, error) {
	ps := make([]netip.Prefix, 0, banManyCount(req))
	for _, s := range req.Prefixes {
		p, err := banner.ParsePrefix(s)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	for rest := req.List; rest != ""; {
		line, after, _ := strings.Cut(rest, "\n")
		rest = after
		if line == "" {
			continue
		}
		p, err := banner.ParsePrefix(line)
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// Response is what the daemon answers.
type Response struct {
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
	// Code classifies Error (see the Code constants) so that the CLI can
	// tell failures apart without reading their text.
	Code   Code            `json:"code,omitempty"`
	Ban    *BanInfo        `json:"ban,omitempty"`
	Bans   []BanInfo       `json:"bans,omitempty"`
	Count  int             `json:"count,omitempty"`
	Status json.RawMessage `json:"status,omitempty"`
	// Explain is the answer to CmdExplain.
	Explain json.RawMessage `json:"explain,omitempty"`
	// Bulk is the answer to CmdBanMany.
	Bulk *BulkInfo `json:"bulk,omitempty"`
}

// BulkInfo is what a ban-many did.
type BulkInfo struct {
	Banned   int `json:"banned"`
	Already  int `json:"already"`
	Refusals int `json:"refusals"`
	// Refused lists the first refusals: "PREFIX: why".
	Refused []string `json:"refused,omitempty"`
	// Warning: saved, but the firewall update failed (retried).
	Warning string `json:"warning,omitempty"`
}

// BulkHandler is the optional part of a Handler that answers ban-many.
type BulkHandler interface {
	BanMany(ctx context.Context, ps []netip.Prefix, d time.Duration, reason string) (BulkInfo, error)
}

// BanInfo describes one active ban as `banner list` shows it.
type BanInfo struct {
	Prefix string    `json:"prefix"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
	Count  int       `json:"count"`
	Reason string    `json:"reason"`
	Source string    `json:"source"`
	// Node is the fleet node the ban came from ("" for this node's own).
	Node string `json:"node,omitempty"`
	// Groups are the firewall port groups the ban closes ("main", "sasl",
	// "main+sasl") and Ports their TCP ports, sorted.
	Groups string   `json:"groups,omitempty"`
	Ports  []uint16 `json:"ports,omitempty"`
	// Already: the ban request found this ban in force and left it as it
	// was (no -for given).
	Already bool `json:"already,omitempty"`
	// Warning: the ban is saved but something else failed (the firewall
	// update, which the daemon retries).
	Warning string `json:"warning,omitempty"`
}

// Handler carries out control requests; the daemon implements it.
type Handler interface {
	Ban(ctx context.Context, p netip.Prefix, d time.Duration, reason string) (BanInfo, error)
	Unban(ctx context.Context, p netip.Prefix) error
	UnbanAll(ctx context.Context) (int, error)
	// Forget drops the escalation history and scores inside p and returns
	// how many records it dropped.
	Forget(ctx context.Context, p netip.Prefix) (int, error)
	List(ctx context.Context) []BanInfo
	Status(ctx context.Context) any
}

// Server serves the control socket.
type Server struct {
	h      Handler
	log    *slog.Logger
	ln     net.Listener
	wg     sync.WaitGroup
	mu     sync.Mutex
	closed bool
}

// Listen creates the socket at path with mode 0600 (its directory is created
// 0700 if missing). A stale socket file from a dead daemon is replaced; a
// live one is an error, since two daemons must not run at once.
func Listen(path string, h Handler, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	// Create the socket's own directory (/run/banner when systemd did not),
	// but no more: a typo in the path should fail, not build a tree.
	if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("control socket directory: %w", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("control socket %s: exists and is not a socket", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("control socket %s: another banner daemon is listening on it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale control socket: %w", err)
		}
	}
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return &Server{h: h, log: log, ln: ln}, nil
}

// Addr is the socket's path.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Serve answers requests until ctx ends or Close is called.
func (s *Server) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				s.wg.Wait()
				return nil
			}
			return fmt.Errorf("control socket accept: %w", err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, c)
		}()
	}
}

// Close stops the server and removes the socket file.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.ln.Close() // net.UnixListener unlinks the socket file
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	uid, uidErr := peerUID(c)
	// The request is read before a refusal is written, so that the peer's
	// write does not fail on a closed socket and it reads the reason.
	line, err := bufio.NewReaderSize(io.LimitReader(c, maxRequest), 4096).ReadBytes('\n')
	if uidErr != nil || uid != 0 {
		s.log.Warn("control: refusing non-root peer", "uid", uid, "err", uidErr)
		writeResponse(c, Response{Error: "permission denied: the control socket is for root only (run banner as root, e.g. with sudo)", Code: CodePermission})
		return
	}
	if err != nil && !(errors.Is(err, io.EOF) && len(line) > 0) {
		s.log.Warn("control: reading request", "err", err)
		return
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		writeResponse(c, Response{Error: fmt.Sprintf("malformed request: %v", err), Code: CodeBadRequest})
		return
	}
	writeResponse(c, s.handle(ctx, req))
}

func (s *Server) handle(ctx context.Context, req Request) Response {
	switch req.Cmd {
	case CmdBan:
		p, err := banner.ParsePrefix(req.Prefix)
		if err != nil {
			return errorResponse(err)
		}
		var d time.Duration
		if req.For != "" {
			if d, err = time.ParseDuration(req.For); err != nil || d <= 0 {
				return Response{Error: fmt.Sprintf("invalid ban duration %q", req.For), Code: CodeBadRequest}
			}
		}
		b, err := s.h.Ban(ctx, p, d, req.Reason)
		if err != nil {
			return errorResponse(err)
		}
		return Response{OK: true, Ban: &b}
	case CmdUnban:
		p, err := banner.ParsePrefix(req.Prefix)
		if err != nil {
			return errorResponse(err)
		}
		if err := s.h.Unban(ctx, p); err != nil {
			return errorResponse(err)
		}
		return Response{OK: true, Count: 1}
	case CmdForget:
		p, err := banner.ParsePrefix(req.Prefix)
		if err != nil {
			return errorResponse(err)
		}
		n, err := s.h.Forget(ctx, p)
		if err != nil {
			return errorResponse(err)
		}
		return Response{OK: true, Count: n}
	case CmdUnbanAll:
		n, err := s.h.UnbanAll(ctx)
		if err != nil {
			r := errorResponse(err)
			r.Count = n
			return r
		}
		return Response{OK: true, Count: n}
	case CmdBanMany:
		bh, ok := s.h.(BulkHandler)
		if !ok {
			return Response{Error: "ban-many is not supported", Code: CodeBadRequest}
		}
		if n := banManyCount(req); n > MaxBanMany {
			return Response{Error: fmt.Sprintf("ban-many: %d prefixes, at most %d", n, MaxBanMany), Code: CodeBadRequest}
		}
		ps, err := banManyPrefixes(req)
		if err != nil {
			return errorResponse(err)
		}
		var d time.Duration
		if req.For != "" {
			var err error
			if d, err = time.ParseDuration(req.For); err != nil || d <= 0 {
				return Response{Error: fmt.Sprintf("invalid ban duration %q", req.For), Code: CodeBadRequest}
			}
		}
		bi, err := bh.BanMany(ctx, ps, d, req.Reason)
		if err != nil {
			return errorResponse(err)
		}
		return Response{OK: true, Bulk: &bi, Count: bi.Banned}
	case CmdList:
		return Response{OK: true, Bans: s.h.List(ctx)}
	case CmdStatus:
		raw, err := json.Marshal(s.h.Status(ctx))
		if err != nil {
			return errorResponse(fmt.Errorf("encoding status: %w", err))
		}
		return Response{OK: true, Status: raw}
	case CmdExplain:
		return s.explain(ctx, req)
	default:
		return Response{Error: fmt.Sprintf("unknown command %q", req.Cmd), Code: CodeBadRequest}
	}
}

func writeResponse(w io.Writer, r Response) {
	b, _ := json.Marshal(r)
	_, _ = w.Write(append(b, '\n'))
}

func peerUID(c net.Conn) (int, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return -1, errors.New("not a unix socket")
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return -1, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, err
	}
	if serr != nil {
		return -1, serr
	}
	return int(cred.Uid), nil
}

// ErrDaemonNotRunning is returned by Do when nothing listens on the socket.
var ErrDaemonNotRunning = errors.New("banner daemon not running")

// Do sends one request to the daemon at path and returns its response. A
// response with OK false is returned as an error carrying the daemon's text.
func Do(ctx context.Context, path string, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return Response{}, fmt.Errorf("%w: nothing listens on %s (start it with `banner run`, or pass the -config that names its socket)", ErrDaemonNotRunning, path)
		}
		if errors.Is(err, os.ErrPermission) {
			return Response{}, &Error{Code: CodePermission, Msg: fmt.Sprintf("permission denied on %s: the control socket is for root only (run banner as root, e.g. with sudo)", path)}
		}
		return Response{}, fmt.Errorf("connecting to banner daemon at %s: %w", path, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	b, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	_, werr := c.Write(append(b, '\n'))
	// Even when the write failed, the daemon may have said why (a refusal).
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		if werr != nil {
			return Response{}, fmt.Errorf("sending to banner daemon: %w", werr)
		}
		return Response{}, fmt.Errorf("reading banner daemon's answer: %w", err)
	}
	if !resp.OK {
		return resp, &Error{Code: resp.Code, Msg: resp.Error}
	}
	return resp, nil
}
