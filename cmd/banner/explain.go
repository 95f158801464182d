package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/control"
	"github.com/banner-mta/banner/banner/daemon"
	"github.com/banner-mta/banner/banner/engine"
	"github.com/banner-mta/banner/banner/logwatch"
)

const explainArgs = "[-config F] [-json] [-log FILE [-at TIME|end] [-no-dns]] IP"

func cmdExplain(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "explain", explainArgs, "Tell one address's story: the events banner saw about it, its score and how it adds up, "+
		"its DNSBL answers now, the allowlist entry protecting it, its bans and what the next offence would bring; "+
		"from the running daemon, or with -log from a log alone")
	cfgPath := configFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	logFile := fs.String("log", "", "tell the story from this log `file` (gzip too; - for stdin) instead of asking the daemon")
	noDNS := fs.Bool("no-dns", false, "with -log: do not ask the DNSBLs")
	atFlag := fs.String("at", "", "with -log: tell the story as of this `time` (RFC 3339), or \"end\" for the log's last event; default now")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *logFile == "" && (*atFlag != "" || *noDNS) {
		return fmt.Errorf("%w: -at and -no-dns go with -log", errUsage)
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want one IP address", errUsage)
	}
	addr, err := netip.ParseAddr(pos[0])
	if err != nil {
		return fmt.Errorf("%w: %q is not an IP address", errUsage, pos[0])
	}
	addr = addr.Unmap()
	var x daemon.Explanation
	if *logFile == "" {
		resp, err := controlDo(ctx, env, *cfgPath, control.Request{Cmd: control.CmdExplain, Prefix: addr.String()})
		if err != nil {
			return err
		}
		if err := json.Unmarshal(resp.Explain, &x); err != nil {
			return fmt.Errorf("decoding the daemon's explanation: %w", err)
		}
	} else {
		cfg, err := loadOrDefault(env, *cfgPath)
		if err != nil {
			return err
		}
		in, err := logwatch.OpenLogs([]string{*logFile}, stdin)
		if err != nil {
			return err
		}
		defer in.Close()
		at := time.Now()
		switch *atFlag {
		case "":
		case "end":
			at = time.Time{}
		default:
			if at, err = time.Parse(time.RFC3339, *atFlag); err != nil {
				return fmt.Errorf("%w: -at %q: want an RFC 3339 time or \"end\"", errUsage, *atFlag)
			}
		}
		x, err = daemon.ExplainLog(ctx, cfg, in, in.Name(), addr, at, !*noDNS, nil)
		if err != nil {
			return fmt.Errorf("reading %s: %w", in.Name(), err)
		}
		if err := in.Err(0); err != nil {
			return err
		}
	}
	if *asJSON {
		return writeJSON(env.stdout, x)
	}
	return writeExplanation(env.stdout, &x)
}

// groupPorts returns the ports of group g as x names them (a group not
// configured is the main group's).
func groupPorts(x *daemon.Explanation, g banner.Groups) []uint16 {
	if p, ok := x.Ports[g.String()]; ok {
		return p
	}
	return x.Ports[banner.GroupMain.String()]
}

// writeExplanation prints x for a human, the events newest last.
func writeExplanation(w io.Writer, x *daemon.Explanation) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	p := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }
	at := func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05") }
	dur := func(d time.Duration) string { return shortDur(d.Round(time.Second)) }

	p("%s\tscored and banned as %s; story from the %s, as of %s", x.Addr, x.Prefix, x.From, at(x.At))
	switch {
	case x.Allowlisted != nil:
		p("allowlist\tprotected by %s: never scored or banned", *x.Allowlisted)
	case x.AllowedName != "":
		p("allowlist\tprotected by allow_fcrdns: its forward-confirmed reverse name is %s; never scored or banned", x.AllowedName)
	default:
		p("allowlist\tnot allowlisted")
	}
	switch {
	case x.GoodFor <= 0:
		p("good sender\toff (good_sender_days = 0)")
	case x.GoodSince != nil:
		p("good sender\tyes: last delivery %s; until %s its recipient probes weigh 1/%s (good_sender_factor)",
			at(*x.GoodSince), at(x.GoodSince.Add(x.GoodFor)), num(x.GoodFactor))
	default:
		p("good sender\tno delivery seen within %s", dur(x.GoodFor))
	}
	if b := x.Ban; b != nil {
		p("ban\tBANNED as %s until %s (%s left) on tcp ports %s: ban #%d of %s, %s; %s", b.Prefix, at(b.Until), dur(b.Until.Sub(x.At)),
			portList(x.BanPorts), b.Count, dur(b.Until.Sub(b.Since)), lengthWhy(&x.Explanation, b.Count, b.Until.Sub(b.Since), string(b.Source)), b.Reason)
	} else {
		p("ban\tnot banned")
	}
	if x.BanCount > 0 {
		p("history\t%d ban(s) counted for escalation, the last ending %s; forgotten %s after that without a ban",
			x.BanCount, at(x.LastEnd), dur(x.Forget))
	} else {
		p("history\tno ban counted for escalation")
	}
	terms := make([]string, 0, len(x.Terms))
	for _, t := range x.Terms {
		terms = append(terms, num(t.Weight))
	}
	sum := "0"
	if len(terms) > 0 {
		sum = strings.Join(terms, " + ") + " = " + num(x.Score)
	}
	p("score\t%s of maxretry %s within findtime %s", sum, num(x.MaxRetry), dur(x.FindTime))
	for _, t := range x.Terms {
		why := "weight " + num(t.Weight)
		if t.Good {
			why = fmt.Sprintf("weight %s = %s / good_sender_factor %s", num(t.Weight), num(t.Weight*x.GoodFactor), num(x.GoodFactor))
		}
		p("  %s\t%s %s: %s", at(t.Time), t.Kind, t.Key, why)
	}
	for _, k := range x.Kinds {
		terms := make([]string, 0, len(k.Terms))
		for _, t := range k.Terms {
			terms = append(terms, num(t.Weight))
		}
		sum := "0"
		if len(terms) > 0 {
			sum = strings.Join(terms, " + ") + " = " + num(k.Score)
		}
		p("score %s\t%s of maxretry %s within findtime %s ([ban.%s]: a window of its own; its bans close tcp ports %s)",
			k.Kind, sum, num(k.MaxRetry), dur(k.FindTime), k.Kind, portList(groupPorts(x, k.Groups)))
		for _, t := range k.Terms {
			p("  %s\t%s %s: weight %s", at(t.Time), t.Kind, t.Key, num(t.Weight))
		}
		switch {
		case x.Allowlisted != nil || x.AllowedName != "":
		case x.BannedGroups.Has(k.Groups):
			p("next %s\tnot counted while banned on its ports", k.Kind)
		default:
			p("next %s\t%d more %s event(s) of weight 1 within %s ban it on tcp ports %s: ban #%d for %s", k.Kind, k.ToBan, k.Kind,
				dur(k.FindTime), portList(groupPorts(x, k.Groups)), x.NextCount, dur(x.NextBanFor))
		}
	}
	switch {
	case x.Allowlisted != nil || x.AllowedName != "":
		p("next offence\tnothing: allowlisted")
	case x.Ban != nil && x.BannedGroups.Has(banner.GroupMain):
		p("next offence\tnot counted while banned; after the ban the next one would be ban #%d for %s", x.Ban.Count+1,
			dur(escalated(&x.Explanation, x.Ban.Count+1)))
	default:
		probes := fmt.Sprintf("%d more recipient probe(s)", x.ProbesToBan)
		if x.GoodSince != nil {
			probes += fmt.Sprintf(" (1/%s each: a good sender)", num(x.GoodFactor))
		}
		p("next offence\t%s or %d more other event(s) of weight 1 within %s ban it: ban #%d for %s (%s)", probes, x.OthersToBan,
			dur(x.FindTime), x.NextCount, dur(x.NextBanFor), lengthWhy(&x.Explanation, x.NextCount, x.NextBanFor, ""))
	}
	if !x.DNSBLAsked {
		p("dnsbl\tnot asked")
	}
	for _, z := range x.DNSBL {
		how := "fresh"
		if z.Cached {
			how = "cached"
		}
		state := "not listed"
		switch {
		case z.Error != "":
			state = "no answer: " + z.Error
		case z.Matched:
			state = fmt.Sprintf("LISTED %v (weight %s)", z.Answers, num(z.Weight))
		case len(z.Answers) > 0:
			state = fmt.Sprintf("answers %v, not matching the filter", z.Answers)
		}
		p("dnsbl %s\t%s (%s, TTL %s)", z.Zone, state, how, dur(z.TTL))
	}
	if x.DNSBLError != "" {
		p("dnsbl\t%s", x.DNSBLError)
	}
	p("")
	if len(x.Events) == 0 {
		p("no events seen")
		return tw.Flush()
	}
	p("events, newest last (%d):", len(x.Events))
	p("TIME\tSOURCE\tKIND\tKEY\tOUTCOME\tDETAIL")
	for _, e := range x.Events {
		detail := e.Reason
		switch e.Outcome {
		case engine.OutcomeScored:
			detail = fmt.Sprintf("+%s, score %s; %s", num(e.Weight), num(e.Score), e.Reason)
		case engine.OutcomeBan:
			detail = fmt.Sprintf("ban #%d for %s (%s): %s", e.Count, dur(e.BanFor), lengthWhy(&x.Explanation, e.Count, e.BanFor, e.Source), e.Reason)
		}
		if e.Origin != "" {
			detail += " [" + e.Origin + "]"
		}
		p("%s\t%s\t%s\t%s\t%s\t%s", at(e.Time), orDash(e.Source), orDash(e.Kind), orDash(e.Key), e.Outcome, detail)
	}
	return tw.Flush()
}

// escalated is bantime x factor^(n-1), at most maxtime.
func escalated(x *engine.Explanation, n int) time.Duration {
	d := float64(x.BanTime) * math.Pow(x.Factor, float64(n-1))
	if d >= float64(x.MaxTime) || math.IsNaN(d) {
		return x.MaxTime
	}
	return time.Duration(d)
}

// lengthWhy says why the n-th ban lasts d.
func lengthWhy(x *engine.Explanation, n int, d time.Duration, source string) string {
	esc := escalated(x, n)
	switch {
	case source == "file" && d != esc:
		return "banned by banner ban -file, its length set by -for"
	case source == "file":
		return fmt.Sprintf("banned by banner ban -file, bantime %s x factor %s^%d", shortDur(x.BanTime), num(x.Factor), n-1)
	case source == "cli" && d != esc:
		return "set by banner ban -for"
	case d == esc && d == x.MaxTime && n > 1:
		return fmt.Sprintf("bantime %s x factor %s^%d, capped at maxtime %s", shortDur(x.BanTime), num(x.Factor), n-1, shortDur(x.MaxTime))
	case d == esc:
		return fmt.Sprintf("bantime %s x factor %s^%d", shortDur(x.BanTime), num(x.Factor), n-1)
	case d > esc:
		return fmt.Sprintf("an immediate rule's bantime, longer than the escalated %s", shortDur(esc))
	default:
		return fmt.Sprintf("the escalated length is %s", shortDur(esc))
	}
}

// shortDur is banner.FormatDuration without zero minutes and seconds:
// 10m, 1h, 2h30m, 30d.
func shortDur(d time.Duration) string {
	s := banner.FormatDuration(d)
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', 4, 64) }

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
