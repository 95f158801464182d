package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/control"
)

func cmdList(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "list", "[-config F] [-json]", "List active bans")
	cfg := configFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	resp, err := controlDo(ctx, env, *cfg, control.Request{Cmd: control.CmdList})
	if err != nil {
		return err
	}
	bans := resp.Bans
	sort.Slice(bans, func(i, j int) bool { return bans[i].Until.Before(bans[j].Until) })
	if *asJSON {
		if bans == nil {
			bans = []control.BanInfo{}
		}
		return writeJSON(env.stdout, bans)
	}
	writeBanTable(env.stdout, bans, time.Now())
	return nil
}

// portList prints ports as "25,465,587", "-" for none.
func portList(ports []uint16) string {
	if len(ports) == 0 {
		return "-"
	}
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(int(p))
	}
	return strings.Join(s, ",")
}

func writeBanTable(w io.Writer, bans []control.BanInfo, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IP\tSINCE\tUNTIL\tLEFT\tBANS\tPORTS\tSOURCE\tREASON")
	for _, b := range bans {
		src := b.Source
		if b.Node != "" {
			src = "fleet:" + b.Node // the fleet node the ban came from
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", b.Prefix,
			b.Since.Local().Format("2006-01-02 15:04:05"), b.Until.Local().Format("2006-01-02 15:04:05"),
			banner.FormatDuration(b.Until.Sub(now).Round(time.Second)), b.Count, portList(b.Ports), src, b.Reason)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d active ban(s)\n", len(bans))
}
