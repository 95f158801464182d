package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/daemon"
	"github.com/banner-mta/banner/banner/logwatch"
	"github.com/banner-mta/banner/dnsbl"
)

func newLogger(w io.Writer, cfg *config.File) *slog.Logger {
	level, _ := cfg.LogLevel()
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func cmdRun(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "run", "[-config F] [-check]", "Run the daemon: policy service, log watcher and firewall feeder")
	cfgPath := configFlag(fs)
	check := fs.Bool("check", false, "only validate the configuration, print warnings about settings that are\nlegal but almost surely wrong and about this machine (files, directories,\ncommands banner needs), then exit: 1 on errors, 0 with warnings only")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, pos[0])
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if *check {
		ws := append(cfg.Warnings(), daemon.Preflight(cfg)...)
		config.SortWarnings(ws) // the file's and the machine's, in file order
		for _, w := range ws {
			fmt.Fprintf(env.stdout, "warning: %s\n", w)
		}
		fmt.Fprintf(env.stdout, "%s: configuration OK%s\n", *cfgPath, warningCount(len(ws)))
		return nil
	}
	log := newLogger(env.stderr, cfg)
	slog.SetDefault(log)
	logWarnings(log, cfg.Warnings())
	d, err := daemon.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				d.Reload()
			}
		}
	}()
	return d.Run(ctx)
}

// warningCount is ", N warnings" for the -check summary, "" for none.
func warningCount(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return ", 1 warning"
	}
	return fmt.Sprintf(", %d warnings", n)
}

// logWarnings logs the configuration's warnings at start-up, except those
// the daemon's parts log themselves.
func logWarnings(log *slog.Logger, ws []config.Warning) {
	for _, w := range ws {
		if w.LoggedByDaemon {
			continue
		}
		at := w.Path
		if w.Line > 0 {
			at = fmt.Sprintf("%s:%d", w.Path, w.Line)
		}
		log.Warn("configuration: "+w.Msg, "key", w.Key, "at", at)
	}
}

// loadOrDefault reads the configuration; a missing default file means the
// built-in defaults, so check and test-log work on a machine without one.
func loadOrDefault(env *cliEnv, path string) (*config.File, error) {
	cfg, err := config.Load(path)
	if err != nil && path == config.DefaultPath && errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(env.stderr, "note: %s not found; using the built-in defaults\n", path)
		return config.Default(), nil
	}
	return cfg, err
}

func cmdCheck(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "check", "[-config F] [-json] IP", "Look an address up in the configured DNSBLs, without the daemon")
	flagsUsage := fs.Usage
	fs.Usage = func() {
		flagsUsage()
		fmt.Fprintf(env.stdout, "\n%s.\n", checkHelp)
	}
	cfgPath := configFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want exactly one IP address", errUsage)
	}
	ip, err := netip.ParseAddr(pos[0])
	if err != nil || ip.Zone() != "" {
		return fmt.Errorf("%w: invalid IP address %q", errUsage, pos[0])
	}
	fail := func(err error) error { return &exitStatus{code: checkError, err: err} }
	cfg, err := loadOrDefault(env, *cfgPath)
	if err != nil {
		return fail(err)
	}
	res, zones, err := daemon.Check(ctx, cfg, ip, slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		return fail(err)
	}
	if *asJSON {
		err = writeJSON(env.stdout, res)
	} else {
		err = dnsbl.WriteReport(env.stdout, res)
	}
	if err != nil {
		return fail(err)
	}
	if code := checkVerdict(res, zones); code != checkListed {
		return &exitStatus{code: code}
	}
	return nil
}

func cmdTestLog(_ context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "test-log", "[-config F] [-pattern RE] [-json] [-top N] FILE...|-", "Run the log patterns over log files (mail.log*), like fail2ban-regex; gzip-compressed logs (mail.log.2.gz) are read as they are, - reads standard input")
	cfgPath := configFlag(fs)
	pattern := fs.String("pattern", "", "test only this regular expression with a <HOST> tag (instead of the configured patterns)")
	asJSON := fs.Bool("json", false, "print JSON")
	top := fs.Int("top", logwatch.TopN, "list this many addresses with most matches per pattern (0: all)")
	journal := fs.Bool("journal", false, "read Postfix's entries in the local systemd journal (through journalctl) instead of files")
	since := fs.String("since", "", "with -journal: from this time on, in journalctl's --since syntax (\"2026-12-01\", \"-1h\", \"today\")")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *top < 0 {
		return fmt.Errorf("%w: -top %d: want 0 (all) or more", errUsage, *top)
	}
	switch {
	case *journal && len(pos) > 0:
		return fmt.Errorf("%w: -journal reads the journal: give no files", errUsage)
	case *since != "" && !*journal:
		return fmt.Errorf("%w: -since goes with -journal", errUsage)
	case !*journal && (len(pos) == 0 || (len(pos) > 1 && slices.Contains(pos, "-"))):
		return fmt.Errorf("%w: want log files, or - alone for standard input, or -journal", errUsage)
	}
	cfg, err := loadOrDefault(env, *cfgPath)
	if err != nil {
		return err
	}
	m, err := daemon.LogMatcher(cfg, *pattern)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if *journal {
		return testLogJournal(env, cfg, m, *since, *top, *asJSON)
	}
	in, err := logwatch.OpenLogs(pos, stdin)
	if err != nil {
		return err
	}
	defer in.Close()
	res, err := daemon.TestLog(cfg, m, in, *top)
	if err != nil {
		return fmt.Errorf("reading %s: %w", in.Name(), err)
	}
	if err := printTestLog(env, res, *asJSON); err != nil {
		return err
	}
	return in.Err(res.Report.Lines)
}

// journalctlArgs are the arguments test-log -journal puts before its own
// (tests: a journal directory).
var journalctlArgs []string

// testLogJournal is test-log -journal: the local journal's Postfix entries
// through journalctl.
func testLogJournal(env *cliEnv, cfg *config.File, m *logwatch.Matcher, since string, top int, asJSON bool) error {
	in, err := logwatch.OpenJournal(context.Background(), "", journalctlArgs, since)
	if err != nil {
		return err
	}
	res, err := daemon.TestLog(cfg, m, in, top)
	if cerr := in.Close(); err == nil && cerr != nil {
		return cerr
	}
	if err != nil {
		return fmt.Errorf("reading the journal: %w", err)
	}
	return printTestLog(env, res, asJSON)
}

// printTestLog prints test-log's result.
func printTestLog(env *cliEnv, res daemon.TestLogResult, asJSON bool) error {
	report, bans, ecfg := res.Report, res.Bans, res.Engine
	if asJSON {
		if bans == nil {
			bans = []banner.Ban{}
		}
		if err := writeJSON(env.stdout, struct {
			Report *logwatch.Report `json:"report"`
			Bans   []banner.Ban     `json:"would_ban"`
		}{report, bans}); err != nil {
			return err
		}
		return nil
	}
	if err := report.WriteText(env.stdout); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "\nWould ban %d address(es) under [ban] maxretry=%v findtime=%v bantime=%v:\n",
		len(bans), ecfg.MaxRetry, ecfg.FindTime, ecfg.BanTime)
	for _, b := range bans {
		fmt.Fprintf(env.stdout, "  %-40s at %s for %s (ban #%d, %s)\n", b.Prefix, b.Since.Format(time.RFC3339),
			b.Until.Sub(b.Since), b.Count, b.Reason)
	}
	return nil
}
