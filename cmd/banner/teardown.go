package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/banner-mta/banner/banner/control"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/store"
)

const teardownSummary = "Remove banner's firewall hooks (INPUT jumps, chain, sets), to uninstall or switch backends; the stored bans are kept"

const teardownHelp = `teardown removes, as configured in [firewall], every INPUT jump to banner's
chain (any ports, with or without the SYN match), the chain with its rules
and, with the ipset backend, the sets set4 and set6. With the iptables
backend it also removes the sets set4 and set6 if the ipset backend left
them (the backend was switched without a teardown) and nothing uses them;
a set still in use, or managed by a running banner, is kept, and a "kept"
line says why. It prints one line per thing removed, or "nothing to
remove"; running it again is harmless. Rules banner did not make outside
its chain are never touched: if one still uses the chain or a set
(a jump from another chain, a --match-set outside the chain in any table:
filter, raw, mangle, nat, security), teardown names it and changes nothing.
It also refuses, naming the set, when the kernel counts more references to
a set than banner's chain accounts for (a rule of the other iptables
variant, legacy or nft; a list:set; an nft rule using the set).

Run it with the configuration that set the firewall up, before changing
backend, chain or set names. It refuses while the daemon runs (it holds
the lock on the chain or a set, its control socket answers, or it holds the
store), since the daemon would put its hooks back at its next reconcile:
stop banner first (systemctl stop banner), or pass -force. While teardown
runs it holds those locks itself, so no daemon starts meanwhile.

The store (bans and escalation history) is kept: the next banner run puts
the active bans back in the firewall.

Exit status: 0 success (also when there was nothing to remove), 1 failure
(daemon running, a firewall command failed), 2 usage error`

// daemonProbeTimeout bounds the control-socket request that tells whether
// the daemon runs.
const daemonProbeTimeout = 5 * time.Second

var errDaemonRunning = errors.New("the banner daemon is running")

func cmdTeardown(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "teardown", "[-config F] [-force]", teardownSummary)
	flagsUsage := fs.Usage
	fs.Usage = func() {
		flagsUsage()
		fmt.Fprintf(env.stdout, "\n%s\n", teardownHelp)
	}
	cfgPath := configFlag(fs)
	force := fs.Bool("force", false, "tear down even if the daemon seems to be running (it restores its hooks at its next reconcile)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	cfg, err := loadOrDefault(env, *cfgPath)
	if err != nil {
		return err
	}

	// Hold the chain's and sets' locks while tearing down: a daemon that
	// manages them holds them too, whatever its control socket and store,
	// and one starting meanwhile waits for nothing but fails on them.
	locks, err := firewall.Lock(cfg.FirewallConfig(nil))
	switch {
	case errors.Is(err, firewall.ErrLocked) && !*force:
		return fmt.Errorf("%w: %w; stop banner first: systemctl stop banner (or pass -force)", errDaemonRunning, err)
	case errors.Is(err, firewall.ErrLocked):
		fmt.Fprintf(env.stderr, "warning: %v; -force: tearing down anyway, but a running daemon restores its hooks at its next reconcile\n", err)
	case err != nil:
		return err
	}
	defer locks.Release()

	running, err := daemonRunning(ctx, cfg.Control.Socket)
	if err != nil && !*force {
		return fmt.Errorf("%w; stop banner first: systemctl stop banner (or pass -force)", err)
	}
	if err != nil {
		fmt.Fprintf(env.stderr, "warning: %v; -force: tearing down anyway (a running daemon restores its hooks at its next reconcile)\n", err)
	}
	if running && !*force {
		return fmt.Errorf("%w (its control socket %s answers): stop banner first: systemctl stop banner (or pass -force)", errDaemonRunning, cfg.Control.Socket)
	}
	if running {
		fmt.Fprintf(env.stderr, "warning: %v (its control socket %s answers); -force: tearing down anyway, but it restores its hooks at its next reconcile\n", errDaemonRunning, cfg.Control.Socket)
	}

	// Read the store before changing anything: a daemon holding it is
	// running even if its socket is elsewhere.
	bans, storeErr := activeBans(cfg.Store.Path, time.Now())
	if errors.Is(storeErr, errDaemonRunning) && !*force {
		return fmt.Errorf("%w: stop banner first: systemctl stop banner (or pass -force)", storeErr)
	}

	fw, err := firewall.New(cfg.FirewallConfig(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	fc := cfg.Firewall
	var rep firewall.TeardownReport
	if fw.Name() == firewall.BackendNone {
		fmt.Fprintf(env.stdout, "nothing to remove: backend %q puts nothing in the kernel (run teardown with the configuration that set the firewall up)\n", firewall.BackendNone)
	} else {
		rep, err = fw.Teardown(ctx)
		for _, r := range rep.Removed {
			fmt.Fprintf(env.stdout, "removed %s\n", r)
		}
		for _, k := range rep.Kept {
			fmt.Fprintf(env.stdout, "kept %s\n", k)
		}
		if err != nil {
			return err
		}
		if len(rep.Removed) == 0 {
			what := fmt.Sprintf("no chain %s and no INPUT jump to it for %s", fc.Chain, families(fc.IPv6))
			switch {
			case fw.Name() == firewall.BackendIPSet && fc.IPv6:
				what += fmt.Sprintf(", no set %s or %s", fc.Set4, fc.Set6)
			case fw.Name() == firewall.BackendIPSet:
				what += ", no set " + fc.Set4
			}
			fmt.Fprintf(env.stdout, "nothing to remove: %s\n", what)
		}
	}

	switch {
	case storeErr == nil && bans < 0:
		fmt.Fprintf(env.stdout, "no store at %s: no bans to keep\n", cfg.Store.Path)
	case storeErr == nil:
		fmt.Fprintf(env.stdout, "kept the store %s: %s and the escalation history; the next `banner run` puts the bans back in the firewall\n",
			cfg.Store.Path, pluralBans(bans))
	default:
		fmt.Fprintf(env.stdout, "kept the store %s (bans and escalation history) untouched; could not count its bans: %v\n", cfg.Store.Path, storeErr)
	}
	return nil
}

func families(ipv6 bool) string {
	if ipv6 {
		return "IPv4 and IPv6"
	}
	return "IPv4 (ipv6 = false)"
}

func pluralBans(n int) string {
	if n == 1 {
		return "1 active ban"
	}
	return fmt.Sprintf("%d active bans", n)
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
// locked by another process is reported as errDaemonRunning.
func activeBans(path string, now time.Time) (int, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return -1, nil
	}
	st, err := store.OpenReadOnly(path)
	if errors.Is(err, store.ErrLocked) {
		return 0, fmt.Errorf("%w (it holds the store %s)", errDaemonRunning, path)
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
	if err != nil {
		return n, err
	}
	return n, nil
}
