package main

import (
	"context"
	"fmt"

	"github.com/banner-mta/banner/banner/daemon"
	"github.com/banner-mta/banner/banner/firewall"
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

func cmdTeardown(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "teardown", "[-config F] [-force]", teardownSummary)
	flagsUsage := fs.Usage
	fs.Usage = func() {
		flagsUsage()
		fmt.Fprintf(env.stdout, "\n%s\n", teardownHelp)
	}
	cfgPath := configFlag(fs)
	force := fs.Bool("force", false, "tear down even if the daemon seems to be running (it restores its hooks at its next reconcile)")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := loadOrDefault(env, *cfgPath)
	if err != nil {
		return err
	}

	res, err := daemon.Teardown(ctx, cfg, *force, func(w string) { fmt.Fprintf(env.stderr, "warning: %s\n", w) })
	if res.Backend == firewall.BackendNone && err == nil {
		fmt.Fprintf(env.stdout, "nothing to remove: backend %q puts nothing in the kernel (run teardown with the configuration that set the firewall up)\n", firewall.BackendNone)
	}
	for _, r := range res.Firewall.Removed {
		fmt.Fprintf(env.stdout, "removed %s\n", r)
	}
	for _, k := range res.Firewall.Kept {
		fmt.Fprintf(env.stdout, "kept %s\n", k)
	}
	if err != nil {
		return err
	}
	fc := cfg.Firewall
	if res.Backend != firewall.BackendNone && len(res.Firewall.Removed) == 0 {
		what := fmt.Sprintf("no chain %s and no INPUT jump to it for %s", fc.Chain, families(fc.IPv6))
		switch {
		case res.Backend == firewall.BackendIPSet && fc.IPv6:
			what += fmt.Sprintf(", no set %s or %s", fc.Set4, fc.Set6)
		case res.Backend == firewall.BackendIPSet:
			what += ", no set " + fc.Set4
		}
		fmt.Fprintf(env.stdout, "nothing to remove: %s\n", what)
	}
	switch {
	case res.StoreErr == nil && res.ActiveBans < 0:
		fmt.Fprintf(env.stdout, "no store at %s: no bans to keep\n", cfg.Store.Path)
	case res.StoreErr == nil:
		fmt.Fprintf(env.stdout, "kept the store %s: %s and the escalation history; the next `banner run` puts the bans back in the firewall\n",
			cfg.Store.Path, pluralBans(res.ActiveBans))
	default:
		fmt.Fprintf(env.stdout, "kept the store %s (bans and escalation history) untouched; could not count its bans: %v\n", cfg.Store.Path, res.StoreErr)
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
