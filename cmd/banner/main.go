// Command banner is a Postfix policy service and SMTP firewall feeder: it
// answers Postfix's check_policy_service from cached DNSBL lookups, watches
// mail.log for reject patterns, and bans clients that keep offending with
// time-limited DROPs on the SMTP port.
//
// Run `banner -h` for the subcommands.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/banner-mta/banner/banner/config"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

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
		{"explain", explainArgs, "tell one address's story: events, score, DNSBL answers, allowlist, bans, next offence", cmdExplain},
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

// parseNoArgs parses the flags of a command that takes no positional
// arguments.
func parseNoArgs(fs *flag.FlagSet, args []string) error {
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	return nil
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

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// stdin is what `banner test-log -` reads; tests replace it.
var stdin io.Reader = os.Stdin
