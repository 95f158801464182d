package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/control"
)

func cmdUnban(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "unban", "[-config F] [-forget] IP|CIDR | -all", "Lift a ban, through the running daemon")
	cfg := configFlag(fs)
	all := fs.Bool("all", false, "lift every ban")
	forget := fs.Bool("forget", false, "also forget the escalation history and score of the address or network (a false positive: its next ban is a first ban again); works on unbanned addresses too")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *all {
		if len(pos) != 0 || *forget {
			return fmt.Errorf("%w: -all takes no address and no -forget", errUsage)
		}
		resp, err := controlDo(ctx, env, *cfg, control.Request{Cmd: control.CmdUnbanAll})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "unbanned %d\n", resp.Count)
		return nil
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want exactly one IP or CIDR, or -all", errUsage)
	}
	p, err := banner.ParsePrefix(pos[0])
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	unbanned := true
	if _, err := controlDo(ctx, env, *cfg, control.Request{Cmd: control.CmdUnban, Prefix: pos[0]}); err != nil {
		// With -forget, "not banned" is fine (forgetting is the point), but
		// not "covered by a wider ban": that needs the admin's attention.
		if !*forget || !errors.Is(err, banner.ErrNotBanned) || errors.Is(err, banner.ErrCovered) {
			return err
		}
		unbanned = false
	}
	if unbanned {
		fmt.Fprintf(env.stdout, "unbanned %s\n", pos[0])
	}
	// Forget after the unban: a ban in force would keep its count.
	if *forget {
		resp, err := controlDo(ctx, env, *cfg, control.Request{Cmd: control.CmdForget, Prefix: pos[0]})
		if err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "forgot the escalation history of %s (%d record(s))\n", pos[0], resp.Count)
	}
	// A wider ban may still cover it: say so rather than let "unbanned"
	// suggest the address can connect again.
	if resp, err := controlDo(ctx, env, *cfg, control.Request{Cmd: control.CmdList}); err == nil {
		for _, b := range resp.Bans {
			if bp, err := netip.ParsePrefix(b.Prefix); err == nil && bp.Bits() < p.Bits() && bp.Contains(p.Addr()) {
				fmt.Fprintf(env.stdout, "note: %s is still covered by the ban of %s until %s\n",
					pos[0], b.Prefix, b.Until.Local().Format(time.RFC3339))
			}
		}
	}
	return nil
}
