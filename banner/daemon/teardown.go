package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/control"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/store"
)

// ErrRunning is wrapped by Teardown's error when a daemon manages the
// firewall of the configuration: it holds the chain's or a set's lock, its
// control socket answers, or it holds the store.
var ErrRunning = errors.New("the banner daemon is running")

// daemonProbeTimeout bounds the control-socket request that tells whether
// the daemon runs.
const daemonProbeTimeout = 5 * time.Second

// TeardownResult is what Teardown did.
type TeardownResult struct {
	// Backend is the configured backend; with "none" nothing is removed.
	Backend string
	// Firewall lists what was removed and what was kept, and why.
	Firewall firewall.TeardownReport
	// ActiveBans is how many unexpired bans the store (kept) holds; -1 when
	// there is no store file.
	ActiveBans int
	// StoreErr says why the store's bans could not be counted.
	StoreErr error
}

// Teardown removes banner's firewall hooks as cfg configures them, holding
// the chain's and sets' locks while it works so that no daemon starts
// meanwhile. It refuses (ErrRunning) while a daemon runs, unless force,
// when it goes on and passes each refusal to warn. The store is never
// changed.
func Teardown(ctx context.Context, cfg *config.File, force bool, warn func(string)) (TeardownResult, error) {
	res := TeardownResult{Backend: cfg.Firewall.Backend}
	hint := "stop banner first: systemctl stop banner (or pass -force)"
	locks, err := firewall.Lock(cfg.FirewallConfig(nil))
	switch {
	case errors.Is(err, firewall.ErrLocked) && !force:
		return res, fmt.Errorf("%w: %w; %s", ErrRunning, err, hint)
	case errors.Is(err, firewall.ErrLocked):
		warn(fmt.Sprintf("%v; -force: tearing down anyway, but a running daemon restores its hooks at its next reconcile", err))
	case err != nil:
		return res, err
	}
	defer locks.Release()

	running, err := daemonRunning(ctx, cfg.Control.Socket)
	if err != nil && !force {
		return res, fmt.Errorf("%w; %s", err, hint)
	}
	if err != nil {
		warn(fmt.Sprintf("%v; -force: tearing down anyway (a running daemon restores its hooks at its next reconcile)", err))
	}
	if running && !force {
		return res, fmt.Errorf("%w (its control socket %s answers): %s", ErrRunning, cfg.Control.Socket, hint)
	}
	if running {
		warn(fmt.Sprintf("%v (its control socket %s answers); -force: tearing down anyway, but it restores its hooks at its next reconcile", ErrRunning, cfg.Control.Socket))
	}

	// Read the store before changing anything: a daemon holding it is
	// running even if its socket is elsewhere.
	res.ActiveBans, res.StoreErr = activeBans(cfg.Store.Path, time.Now())
	if errors.Is(res.StoreErr, ErrRunning) && !force {
		return res, fmt.Errorf("%w: %s", res.StoreErr, hint)
	}

	fw, err := firewall.New(cfg.FirewallConfig(slog.New(slog.DiscardHandler)))
	if err != nil {
		return res, err
	}
	res.Backend = fw.Name()
	if fw.Name() == firewall.BackendNone {
		return res, nil
	}
	res.Firewall, err = fw.Teardown(ctx)
	return res, err
}

// daemonRunning asks the control socket for the daemon's status. It is
// false with no error when nothing listens there, true when anything
// answers, and an error when it cannot tell (say, the daemon hangs).
func daemonRunning(ctx context.Context, sock string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, daemonProbeTimeout)
	defer cancel()
	_, err := control.Do(ctx, sock, control.Request{Cmd: control.CmdStatus})
	var opErr *net.OpError
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, control.ErrDaemonNotRunning):
		return false, nil
	case errors.As(err, &opErr) && opErr.Op == "dial":
		return false, fmt.Errorf("cannot tell whether the banner daemon is running: %w", err)
	default:
		// Connected, but the answer was an error or never came: something
		// listens.
		return true, nil
	}
}

// activeBans counts the bans in the store at path that have not expired. It
// returns -1 when there is no store file, and never creates one. A store
// locked by another process is reported as ErrRunning.
func activeBans(path string, now time.Time) (int, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return -1, nil
	}
	st, err := store.OpenReadOnly(path)
	if errors.Is(err, store.ErrLocked) {
		return 0, fmt.Errorf("%w (it holds the store %s)", ErrRunning, path)
	}
	if err != nil {
		return 0, err
	}
	defer st.Close()
	bans, err := st.Bans()
	n := 0
	for _, b := range bans {
		if b.Until.After(now) {
			n++
		}
	}
	return n, err
}
