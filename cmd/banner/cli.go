package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/control"
	"github.com/banner-mta/banner/banner/daemon"
)

// errUsage marks a command-line mistake: exit status 2 and the usage text.
var errUsage = errors.New("usage")

type command struct {
	name    string
	args    string
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv is what every subcommand gets: its output streams.
type cliEnv struct {
	stdout, stderr io.Writer
}

func commands() []command {
	return []command{
		{"run", "[-config F] [-check]", "run the daemon: policy service, log watcher, firewall feeder", cmdRun},
		{"ban", "[-config F] [-for DURATION] [-reason TEXT] IP|CIDR", "ban an address or network now (through the daemon)", cmdBan},
		{"unban", "[-config F] [-forget] IP|CIDR | -all", "lift a ban (through the daemon); -forget also resets its escalation", cmdUnban},
		{"list", "[-config F] [-json]", "list active bans", cmdList},
		{"status", "[-config F] [-json]", "show the daemon's listeners, counters, cache and DNSBL state", cmdStatus},
		{"check", "[-config F] [-json] IP", "look an address up in the configured DNSBLs (no daemon needed)", cmdCheck},
		{"test-log", "[-config F] [-pattern RE] [-json] [-top N] FILE...|-", "run the log patterns over logs (gzip too; - for stdin), like fail2ban-regex", cmdTestLog},
		{"teardown", "[-config F] [-force]", "remove banner's firewall hooks (daemon stopped); the stored bans are kept", cmdTeardown},
		{"version", "", "print the version", cmdVersion},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: banner <command> [flags] [args]\n\ncommands:\n")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nRun `banner <command> -h` for a command's flags. The configuration defaults to %s.\n", config.DefaultPath)
}

// run is main without the process: it returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	if name == "-h" || name == "--help" || name == "help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != name {
			continue
		}
		err := c.run(ctx, &cliEnv{stdout: stdout, stderr: stderr}, args[1:])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, new(*exitStatus)): // check.go
			return exitWith(stderr, name, err)
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "banner %s: %v\nusage: banner %s %s\n", name, strings.TrimPrefix(err.Error(), "usage: "), name, c.args)
			return 2
		default:
			fmt.Fprintf(stderr, "banner %s: %v\n", name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "banner: unknown command %q\n\n", name)
	usage(stderr)
	return 2
}

// newFlags makes a FlagSet whose -h prints the command's usage and flags.
func newFlags(env *cliEnv, name, args, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stdout, "usage: banner %s %s\n\n%s.\n\nflags:\n", name, args, summary)
		fs.SetOutput(env.stdout)
		fs.PrintDefaults()
		fs.SetOutput(env.stderr)
	}
	return fs
}

func configFlag(fs *flag.FlagSet) *string {
	return fs.String("config", config.DefaultPath, "configuration `file`")
}

// parseInterspersed parses flags that may come before or after positional
// arguments ("banner ban 203.0.113.0/24 -for 24h") and returns the positionals.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// controlSocket finds the daemon's socket from the configuration. The
// configuration file may be absent on a machine that only uses defaults.
// controlSocket returns the control socket named by the configuration at
// path. A configuration that does not load (say, broken by an edit the
// daemon refused on SIGHUP) must not lock the admin out of an emergency
// unban: then the socket is read from the file leniently, or else the
// default is used, with a warning on warn.
func controlSocket(path string, warn io.Writer) (string, error) {
	f, err := config.Load(path)
	if err == nil {
		return f.Control.Socket, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		if path == config.DefaultPath {
			return config.Default().Control.Socket, nil
		}
		return "", err
	}
	sock, how := config.Default().Control.Socket, "the default control socket"
	if s := config.ControlSocketLenient(path); s != "" {
		sock, how = s, "its control.socket"
	}
	fmt.Fprintf(warn, "warning: %v\nwarning: using %s %s to reach the daemon anyway\n", err, how, sock)
	return sock, nil
}

func controlDo(ctx context.Context, env *cliEnv, cfgPath string, req control.Request) (control.Response, error) {
	sock, err := controlSocket(cfgPath, env.stderr)
	if err != nil {
		return control.Response{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return control.Do(ctx, sock, req)
}

func cmdBan(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "ban", "[-config F] [-for DURATION] [-reason TEXT] IP|CIDR", "Ban an address or network now, through the running daemon")
	cfg := configFlag(fs)
	dur := fs.String("for", "", "ban `duration` (90s, 10m, 24h, 2d, 1w); default: the escalated bantime")
	reason := fs.String("reason", "banned by hand", "reason shown by banner list")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want exactly one IP or CIDR", errUsage)
	}
	if _, err := banner.ParsePrefix(pos[0]); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	req := control.Request{Cmd: control.CmdBan, Prefix: pos[0], Reason: *reason}
	if *dur != "" {
		d, err := config.ParseDuration(*dur)
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
	fmt.Fprintf(env.stdout, "banned %s until %s (%s, ban #%d)\n", b.Prefix, b.Until.Local().Format(time.RFC3339), b.Until.Sub(b.Since).Round(time.Second), b.Count)
	if b.Warning != "" {
		fmt.Fprintf(env.stderr, "banner ban: warning: %s\n", b.Warning)
	}
	return nil
}

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

func cmdList(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "list", "[-config F] [-json]", "List active bans")
	cfg := configFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
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

func writeBanTable(w io.Writer, bans []control.BanInfo, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "IP\tSINCE\tUNTIL\tLEFT\tBANS\tSOURCE\tREASON")
	for _, b := range bans {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", b.Prefix,
			b.Since.Local().Format("2006-01-02 15:04:05"), b.Until.Local().Format("2006-01-02 15:04:05"),
			b.Until.Sub(now).Round(time.Second), b.Count, b.Source, b.Reason)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d active ban(s)\n", len(bans))
}

func cmdStatus(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "status", "[-config F] [-json]", "Show the running daemon's state")
	cfg := configFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	resp, err := controlDo(ctx, env, *cfg, control.Request{Cmd: control.CmdStatus})
	if err != nil {
		return err
	}
	if *asJSON {
		_, err := fmt.Fprintf(env.stdout, "%s\n", resp.Status)
		return err
	}
	return writeStatusText(env.stdout, resp.Status)
}

func cmdVersion(_ context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "version", "", "Print the version")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "banner %s\n", daemon.Version())
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// stdin is what `banner test-log -` reads; tests replace it.
var stdin io.Reader = os.Stdin
