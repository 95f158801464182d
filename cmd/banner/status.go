package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/banner-mta/banner/banner/control"
	"github.com/banner-mta/banner/banner/daemon"
	"github.com/banner-mta/banner/banner/logwatch"
	"github.com/banner-mta/banner/dnsbl"
)

// writeStatusText prints the daemon's status for a human.
func writeStatusText(w io.Writer, raw json.RawMessage) error {
	var s daemon.Status
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("decoding status: %w", err)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	p := func(format string, a ...any) { fmt.Fprintf(tw, format+"\n", a...) }

	p("banner %s, up %s (config %s)", s.Version, s.Uptime, s.Config)
	p("")
	p("policy service\t%s", strings.Join(s.Listeners, ", "))
	p("  connections\t%d open, %d accepted, %d refused (peer), %d rejected (limit)",
		s.Policyd.Current, s.Policyd.Accepted, s.Policyd.Refused, s.Policyd.Rejected)
	p("  requests\t%d, %d answered with fail_action after request_timeout", s.Policyd.Requests, s.Policyd.Timeouts)
	p("  decisions\t%s", counts(s.Decisions.Decisions))
	p("")
	d := s.DNSBL
	ratio := 0.0
	if d.CacheHits+d.CacheMisses > 0 {
		ratio = 100 * float64(d.CacheHits) / float64(d.CacheHits+d.CacheMisses)
	}
	p("dnsbl\t%d lookups, %d listed, %d with a zone unanswered", d.Lookups, d.Listed, d.Unknown)
	p("  cache\t%d hits, %d misses (%.1f%% hits), %d queries sent", d.CacheHits, d.CacheMisses, ratio, d.Queries)
	e := d.Errors
	p("  errors\t%d timeout, %d servfail, %d refused, %d blocked (127.255.255.x), %d bogus, %d network",
		e.Timeout, e.ServFail, e.Refused, e.Blocked, e.Bogus, e.Network)
	for _, z := range d.Zones {
		state := "ok"
		if z.Failing {
			state = "FAILING since " + z.LastError.Local().Format("2006-01-02 15:04:05") + ": " + z.LastErrorText
		} else if !z.LastError.IsZero() {
			state = "ok (last error " + z.LastError.Local().Format("2006-01-02 15:04:05") + ": " + z.LastErrorText + ")"
		}
		if z.Down {
			state = fmt.Sprintf("DOWN since %s, next probe %s, %d lookups skipped; %s",
				z.DownSince.Local().Format("2006-01-02 15:04:05"), z.NextProbe.Local().Format("15:04:05"), z.Skipped, state)
		}
		p("  zone %s\t%d queries%s, %d listings, %d cached; %s", z.Zone, z.Queries, quantileText(z.Latency), z.Listings, z.CacheEntries, state)
	}
	p("")
	en := s.Engine
	p("bans\t%d active; %d issued, %d lifted by hand, %d expired", en.ActiveBans, en.Bans, en.Unbans, en.Expiries)
	p("  events\t%s", counts(en.Events))
	p("  not counted\t%d allowlisted, %d echoes, %d repeated recipients, %d while banned, %d stale, %d queue full",
		en.DroppedAllowlisted, en.DroppedEcho, en.DroppedRepeat, en.DroppedWhileBanned, en.DroppedStale, en.DroppedQueueFull)
	p("  allowlist\t%s", strings.Join(s.Allowlist, ", "))
	p("  good senders\t%d remembered (clients whose mail Postfix accepted); %d addresses with an event trail (banner explain)", en.GoodSenders, en.Trails)
	choice := s.Firewall.Choice
	if choice == "" {
		choice = s.Firewall.Backend
	}
	p("  firewall\t%s", choice)
	p("  \tchain %s, tcp ports %v; %d added, %d removed, %d errors, %d hook repairs",
		s.Firewall.Chain, s.Firewall.Ports, s.Firewall.Stats.Adds, s.Firewall.Stats.Removes, s.Firewall.Stats.Errors,
		s.Firewall.Stats.HookRepairs)
	if g := s.Firewall.SASL; g != nil {
		p("  	sasl bans: %s, tcp ports %v", g.Chain, g.Ports)
	}
	if s.Firewall.Stats.LastError != "" {
		p("  last firewall error\t%s", s.Firewall.Stats.LastError)
	}
	if s.Firewall.Stats.LastHookRepair != "" {
		p("  last hook repair\t%s: %s", s.Firewall.Stats.LastHookRepairTime.Local().Format("2006-01-02 15:04:05"), s.Firewall.Stats.LastHookRepair)
	}
	p("  reconcile\t%d runs, %d re-added, %d strays removed; %d store errors",
		en.Reconciles, en.ReconcileReAdded, en.ReconcileStrays, en.StoreErrors)
	if en.StorePending > 0 {
		p("  STORE FAILING\tsince %s: %d ban/unban records not saved (retried); bans hold until banner stops, but a restart loses them: free space for %s",
			en.StoreFailingSince.Local().Format("2006-01-02 15:04:05"), en.StorePending, s.Store)
	}
	if lw := s.LogWatch; lw != nil {
		p("")
		p("log watcher\t%d lines read, %d rotations, %d truncations, %d own rejects, %d matches from ignored services",
			lw.Lines, lw.Rotations, lw.Truncations, lw.OwnRejects, lw.IgnoredService)
		if lw.NoSyslogPrefix > 0 {
			p("\t%d lines without a syslog prefix: built-in patterns cannot match them (see README, log format)", lw.NoSyslogPrefix)
		}
		if lw.MatchPanics > 0 {
			p("\t%d LINES SKIPPED: matching them panicked (a bug in banner: the log has the first one; please report it)", lw.MatchPanics)
		}
		p("  matched\t%s", counts(lw.Matched))
		if j := lw.Journal; j != nil {
			state := "journalctl running"
			if !j.Running {
				state = "JOURNALCTL NOT RUNNING"
				if j.LastError != "" {
					state += ": " + j.LastError
				}
			}
			last := "no entry yet"
			if !j.LastEntry.IsZero() {
				last = "last entry " + j.LastEntry.Local().Format("2006-01-02 15:04:05")
			}
			cursor := j.Cursor
			if cursor == "" {
				cursor = "none yet"
			}
			p("  journal\t%s; %d Postfix entries, %d other mail entries skipped, %d restarts; %s%s; cursor %s", state, j.Entries, j.Other, j.Restarts, last, lagText(lw.Lags, "journal"), cursor)
			if j.CursorLost > 0 {
				p("\tthe saved cursor was no longer in the journal %d time(s) (vacuumed while banner was stopped): entries in between were not read", j.CursorLost)
			}
		}
		for _, f := range lw.Files {
			switch {
			case !f.Open && f.Error != "" && f.Inode != 0:
				// rotated to a file that cannot be opened; the previous
				// one is still read
				p("  file %s\tNEW FILE NOT READ: %s; still reading the previous file (inode %d, offset %d, %d lines)",
					f.Path, f.Error, f.Inode, f.Offset, f.Lines)
			case !f.Open && f.Error != "":
				p("  file %s\tNOT READ: %s", f.Path, f.Error)
			case !f.Open:
				p("  file %s\tnot opened yet", f.Path)
			default:
				last := "no line yet"
				if !f.LastLine.IsZero() {
					last = "last line read " + f.LastLine.Local().Format("2006-01-02 15:04:05")
				}
				p("  file %s\tinode %d, offset %d of %d bytes, %d lines; %s%s", f.Path, f.Inode, f.Offset, f.Size, f.Lines, last, lagText(lw.Lags, f.Path))
			}
		}
	}
	if r := s.Recipients; r != nil {
		p("")
		p("recipients\t%d entries, %d catch-alls in %d domains (%d ignored entries of other domains)",
			r.Entries, r.CatchAlls, r.Domains, r.Ignored)
		p("  reloads\t%d ok, %d failed; current table loaded %s",
			r.Reloads, r.ReloadErrors, r.LastReload.Format(time.RFC3339))
		p("  checked\t%d known, %d unknown, %d not protected", r.Known, r.Unknown, r.NotProtected)
	}
	if f := s.Fleet; f != nil {
		state := "connected"
		if !f.Connected {
			state = "NOT connected (working alone)"
			if f.LastError != "" {
				state += ": " + f.LastError
			}
		}
		p("")
		p("fleet\tnode %s, %s", f.Node, state)
		p("  stream\tlast id %s (epoch %d), lag %s, %d queued to send", f.LastID, f.Epoch, f.Lag.Round(time.Millisecond), f.Queued)
		p("  messages\t%d sent, %d dropped (queue full), %d received, %d malformed, %d replayed, %d snapshots, %d resyncs",
			f.Sent, f.Dropped, f.Received, f.Malformed, f.Replayed, f.Snapshots, f.Resyncs)
		ef := s.Engine.Fleet
		p("  applied\t%d applied, %d refused (allowlisted here), %d with nothing to do", ef.Applied, ef.Refused, ef.Ignored)
		nodes := make([]string, 0, len(f.NodesSeen))
		for n := range f.NodesSeen {
			nodes = append(nodes, n)
		}
		sort.Strings(nodes)
		for _, n := range nodes {
			p("  node %s\tlast seen %s", n, f.NodesSeen[n].Local().Format("2006-01-02 15:04:05"))
		}
	}
	return nil
}

// counts prints a map of counters as "a=1 b=2", sorted by key.
func counts[K ~string](m map[K]uint64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, string(k))
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", k, m[K(k)])
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

func cmdStatus(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "status", "[-config F] [-json]", "Show the running daemon's state")
	cfg := configFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseNoArgs(fs, args); err != nil {
		return err
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

// lagText describes source's lag ("; lag 1.2s"), or "" before it has one.
func lagText(lags []logwatch.Lag, source string) string {
	for _, l := range lags {
		if l.Source == source && !l.At.IsZero() {
			return fmt.Sprintf("; lag %v (of the newest timed entry, at %s)", l.Lag.Round(time.Millisecond), l.At.Local().Format("15:04:05"))
		}
	}
	return ""
}

// quantileText gives the bucket bounds under which half and 99% of a
// zone's queries answered (" (half within 5ms, 99% within 50ms)"), or "" with
// no query yet.
func quantileText(l dnsbl.Latency) string {
	if l.Count == 0 || len(l.Buckets) != len(dnsbl.LatencyBounds) {
		return ""
	}
	within := func(q float64) string {
		for i, n := range l.Buckets {
			if float64(n) >= q*float64(l.Count) {
				return dnsbl.LatencyBounds[i].String()
			}
		}
		return "more than " + dnsbl.LatencyBounds[len(dnsbl.LatencyBounds)-1].String()
	}
	return fmt.Sprintf(" (half within %s, 99%% within %s)", within(0.5), within(0.99))
}
