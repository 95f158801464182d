package main

import (
	"context"
	"fmt"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/control"
)

func cmdBan(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "ban", "[-config F] [-for DURATION] [-reason TEXT] IP|CIDR | -file F", "Ban an address or network now, through the running daemon")
	cfg := configFlag(fs)
	dur := fs.String("for", "", "ban `duration` (90s, 10m, 24h, 2d, 1w); default: the escalated bantime")
	reason := fs.String("reason", "banned by hand", "reason shown by banner list")
	file := fs.String("file", "", "ban every address or CIDR listed in `file` (one a line, # or ; comments; - for stdin), all with -for and -reason")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *file != "" {
		if len(pos) != 0 {
			return fmt.Errorf("%w: -file takes no IP or CIDR arguments", errUsage)
		}
		return banFile(ctx, env, *cfg, *file, *dur, *reason)
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want exactly one IP or CIDR", errUsage)
	}
	if _, err := banner.ParsePrefix(pos[0]); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	req := control.Request{Cmd: control.CmdBan, Prefix: pos[0], Reason: *reason}
	if *dur != "" {
		d, err := banner.ParseDuration(*dur)
		if err != nil {
			return fmt.Errorf("%w: -for: %v", errUsage, err)
		}
		if d <= 0 {
			return fmt.Errorf("%w: -for %s: must be > 0", errUsage, *dur)
		}
		req.For = d.String()
	}
	resp, err := controlDo(ctx, env, *cfg, req)
	if err != nil {
		return err
	}
	b := resp.Ban
	if b.Already {
		fmt.Fprintf(env.stdout, "%s is already banned until %s (ban #%d, %s); left as it is: -for DURATION sets a new length\n",
			b.Prefix, b.Until.Local().Format(time.RFC3339), b.Count, b.Reason)
		return nil
	}
	fmt.Fprintf(env.stdout, "banned %s until %s (%s, ban #%d)\n", b.Prefix, b.Until.Local().Format(time.RFC3339), banner.FormatDuration(b.Until.Sub(b.Since).Round(time.Second)), b.Count)
	if b.Warning != "" {
		fmt.Fprintf(env.stderr, "banner ban: warning: %s\n", b.Warning)
	}
	return nil
}
