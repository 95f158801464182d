package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/blocklist"
	"github.com/banner-mta/banner/banner/control"
)

// banFile is `banner ban -file F`: the list goes to the daemon in one
// ban-many request, stored in one transaction and put in the kernel in one
// batch.
func banFile(ctx context.Context, env *cliEnv, cfgPath, path, dur, reason string) error {
	var r io.Reader = stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	l, err := blocklist.Parse(r)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, b := range l.Bad {
		fmt.Fprintf(env.stderr, "banner ban: %s:%v (skipped)\n", path, b)
	}
	if len(l.Prefixes) == 0 {
		return fmt.Errorf("%s: no address or prefix to ban", path)
	}
	req := control.Request{Cmd: control.CmdBanMany, Reason: reason,
		List: string(control.AppendList(make([]byte, 0, 16*len(l.Prefixes)), l.Prefixes))}
	if dur != "" {
		d, err := banner.ParseDuration(dur)
		if err != nil {
			return fmt.Errorf("%w: -for: %v", errUsage, err)
		}
		if d <= 0 {
			return fmt.Errorf("%w: -for %s: must be > 0", errUsage, dur)
		}
		req.For = d.String()
	}
	resp, err := controlDo(ctx, env, cfgPath, req)
	if err != nil {
		return err
	}
	b := resp.Bulk
	if b == nil {
		return fmt.Errorf("the daemon answered no result (an older banner?)")
	}
	fmt.Fprintf(env.stdout, "banned %d, already banned %d, refused %d (of %d listed)\n", b.Banned, b.Already, b.Refusals, len(l.Prefixes))
	for _, why := range b.Refused {
		fmt.Fprintf(env.stdout, "  refused: %s\n", why)
	}
	if more := b.Refusals - len(b.Refused); more > 0 {
		fmt.Fprintf(env.stdout, "  ... and %d more refused\n", more)
	}
	if b.Warning != "" {
		fmt.Fprintf(env.stderr, "banner ban: warning: %s\n", b.Warning)
	}
	return nil
}
