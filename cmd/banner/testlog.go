package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/daemon"
	"github.com/banner-mta/banner/banner/logwatch"
)

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
