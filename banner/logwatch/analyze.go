package logwatch

import (
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/banner-mta/banner/banner"
)

// TopN is how many addresses a Report from Analyze lists per pattern.
const TopN = 10

// Report is the result of Analyze: what the patterns match in a log.
type Report struct {
	Lines          uint64 `json:"lines"`
	Matched        uint64 `json:"matched"`
	OwnRejects     uint64 `json:"own_rejects"`
	RBLErrors      uint64 `json:"rbl_errors"`
	IgnoredService uint64 `json:"ignored_service"` // matches from IgnoreServices services, not emitted
	BadTimestamps  uint64 `json:"bad_timestamps"`
	// NoSyslogPrefix counts lines without a syslog prefix banner reads
	// (see README: log format); the built-in patterns cannot match them.
	NoSyslogPrefix uint64 `json:"no_syslog_prefix"`
	LongLines      uint64 `json:"long_lines"`
	// JournalEntries counts lines that were journal entries in JSON
	// (journalctl -o json), matched from their fields; JournalOther those
	// of other programs than Postfix, skipped.
	JournalEntries uint64 `json:"journal_entries,omitempty"`
	JournalOther   uint64 `json:"journal_other,omitempty"`
	// MatchPanics counts lines whose matching panicked (a bug), skipped;
	// FirstPanic describes the first one.
	MatchPanics uint64          `json:"match_panics,omitempty"`
	FirstPanic  string          `json:"first_panic,omitempty"`
	Duration    time.Duration   `json:"-"`
	Seconds     float64         `json:"seconds"`
	LinesPerSec float64         `json:"lines_per_sec"`
	Patterns    []PatternReport `json:"patterns"`
}

// PatternReport is one pattern's part of a Report.
type PatternReport struct {
	Name    string      `json:"name"`
	Kind    banner.Kind `json:"kind"`
	Matches uint64      `json:"matches"`
	Addrs   int         `json:"addresses"` // distinct addresses
	Top     []AddrCount `json:"top"`       // the addresses with most matches (TopN, or as AnalyzeTop was asked)
}

// AddrCount is an address and how many lines matched it.
type AddrCount struct {
	Addr  netip.Addr `json:"addr"`
	Count uint64     `json:"count"`
}

// maxAnalyzeLine: longer lines are skipped by Analyze.
const maxAnalyzeLine = 64 * 1024

// Analyze reads a whole log from r and matches every line with m. emit, if
// not nil, gets every Match in order (e.g. to simulate the engine on them).
// Banner's own policy rejects and matches from ignored services are counted,
// not emitted.
func Analyze(r io.Reader, m *Matcher, emit func(Match)) (*Report, error) {
	return AnalyzeTop(r, m, emit, TopN)
}

// AnalyzeTop is Analyze listing the top addresses with most matches per
// pattern (every address when top <= 0).
//
// The log is read in blocks of whole lines; the blocks are matched in
// parallel (one worker per GOMAXPROCS, at most maxAnalyzeWorkers) and their
// results taken in order, so the report, emit's calls and their order are
// those of one pass over the lines: the delivery table and the counts are
// kept by the calling goroutine alone.
func AnalyzeTop(r io.Reader, m *Matcher, emit func(Match), top int) (*Report, error) {
	start := time.Now()
	rep := &Report{}
	counts := map[string]map[netip.Addr]uint64{}
	deliv := NewDeliveries(0)
	workers := min(runtime.GOMAXPROCS(0), maxAnalyzeWorkers)
	free := make(chan *analyzeBlock, 2*workers+2)
	order := make(chan *analyzeBlock, 2*workers)
	work := make(chan *analyzeBlock, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var je journalEntry
			for blk := range work {
				blk.match(m, &je)
				close(blk.done)
			}
		}()
	}
	go func() {
		readBlocks(r, free, order, work)
		close(work)
		close(order)
	}()
	var readErr error
	for blk := range order {
		<-blk.done
		for i := range blk.hits {
			h := &blk.hits[i]
			n := rep.Lines + h.n
			if h.perr != "" {
				rep.MatchPanics++
				if rep.FirstPanic == "" {
					rep.FirstPanic = fmt.Sprintf("line %d: %s: %q", n, h.perr, trimEOL(h.line))
				}
				continue
			}
			res := &h.match
			if h.out == NoMatch {
				if d, ok := deliv.apply(&h.deliv); ok && emit != nil {
					d.Origin = "line " + strconv.FormatUint(n, 10)
					emit(d)
				}
				continue
			}
			if rep.count(h.out, res, counts) && emit != nil {
				res.Origin = "line " + strconv.FormatUint(n, 10)
				emit(*res)
			}
		}
		rep.Lines += blk.lines
		rep.LongLines += blk.long
		rep.NoSyslogPrefix += blk.noPrefix
		rep.JournalEntries += blk.journal
		rep.JournalOther += blk.journalOther
		if blk.err != nil && readErr == nil {
			readErr = fmt.Errorf("logwatch: reading log after line %d: %w", rep.Lines, blk.err)
		}
		blk.reset()
		select {
		case free <- blk:
		default:
		}
	}
	wg.Wait()
	if readErr != nil {
		return nil, readErr
	}
	rep.Duration = time.Since(start)
	rep.Seconds = rep.Duration.Seconds()
	if rep.Seconds > 0 {
		rep.LinesPerSec = float64(rep.Lines) / rep.Seconds
	}
	for _, name := range m.Names() {
		pr := PatternReport{Name: name, Kind: m.Kind(name)}
		for a, n := range counts[name] {
			pr.Matches += n
			pr.Top = append(pr.Top, AddrCount{a, n})
		}
		pr.Addrs = len(pr.Top)
		sort.Slice(pr.Top, func(i, j int) bool {
			if pr.Top[i].Count != pr.Top[j].Count {
				return pr.Top[i].Count > pr.Top[j].Count
			}
			return pr.Top[i].Addr.Less(pr.Top[j].Addr)
		})
		if top > 0 && len(pr.Top) > top {
			pr.Top = pr.Top[:top]
		}
		rep.Patterns = append(rep.Patterns, pr)
	}
	return rep, nil
}

// safeMatchLine is m.matchLine with a panic recovered: perr then says what
// panicked.
func safeMatchLine(m *Matcher, line []byte) (res Match, out Outcome, sl syslogLine, prefixed bool, perr string) {
	defer func() {
		if v := recover(); v != nil {
			perr = fmt.Sprint(v)
		}
	}()
	res, out, sl, prefixed = m.matchSplit(line)
	return res, out, sl, prefixed, ""
}

// isJSONLine reports whether line looks like a JSON object (journalctl
// -o json), not a syslog line.
func isJSONLine(line []byte) bool {
	for _, c := range line {
		if c != ' ' && c != '\t' {
			return c == '{'
		}
	}
	return false
}

// safeMatchRecord is m.matchRecord with a panic recovered.
func safeMatchRecord(m *Matcher, rec *Record) (res Match, out Outcome, prefixed bool, perr string) {
	defer func() {
		if v := recover(); v != nil {
			perr = fmt.Sprint(v)
		}
	}()
	res, out, prefixed = m.matchRecord(rec)
	return res, out, prefixed, ""
}

// WriteText prints the report for people.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	pct := 0.0
	if r.Lines > 0 {
		pct = 100 * float64(r.Matched) / float64(r.Lines)
	}
	fmt.Fprintf(tw, "lines read:\t%d\n", r.Lines)
	if r.JournalEntries > 0 {
		fmt.Fprintf(tw, "journal entries (JSON):\t%d, %d of other programs skipped\n", r.JournalEntries, r.JournalOther)
	}
	fmt.Fprintf(tw, "lines matched:\t%d (%.2f%%)\n", r.Matched, pct)
	fmt.Fprintf(tw, "own policy rejects:\t%d (not counted again)\n", r.OwnRejects)
	fmt.Fprintf(tw, "bad timestamps:\t%d\n", r.BadTimestamps)
	if r.NoSyslogPrefix > 0 {
		fmt.Fprintf(tw, "lines without a syslog prefix:\t%d (not matched by built-in patterns; want \"Mmm dd hh:mm:ss host postfix/smtpd[pid]: ...\" or an ISO timestamp: journalctl -o short-iso)\n", r.NoSyslogPrefix)
	}
	if r.RBLErrors > 0 {
		fmt.Fprintf(tw, "RBL rejects on list errors:\t%d (not counted: fix Postfix's DNSBL setup)\n", r.RBLErrors)
	}
	if r.IgnoredService > 0 {
		fmt.Fprintf(tw, "matches from ignored services:\t%d (not counted: ignore_services)\n", r.IgnoredService)
	}
	if r.LongLines > 0 {
		fmt.Fprintf(tw, "overlong lines skipped:\t%d\n", r.LongLines)
	}
	if r.MatchPanics > 0 {
		fmt.Fprintf(tw, "lines skipped, matching panicked:\t%d (a bug in banner: please report; first: %s)\n", r.MatchPanics, r.FirstPanic)
	}
	if r.Duration > 0 {
		fmt.Fprintf(tw, "speed:\t%.0f lines/s (%.3fs)\n", r.LinesPerSec, r.Seconds)
	}
	fmt.Fprintf(tw, "\npattern\tkind\tmatches\taddresses\n")
	for _, p := range r.Patterns {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", p.Name, p.Kind, p.Matches, p.Addrs)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range r.Patterns {
		if len(p.Top) == 0 {
			continue
		}
		fmt.Fprintf(tw, "\ntop addresses for %s:\n", p.Name)
		for _, a := range p.Top {
			fmt.Fprintf(tw, "  %s\t%d\n", a.Addr, a.Count)
		}
	}
	return tw.Flush()
}

// count adds a line's outcome to the report, and a match to counts (per
// pattern, per address); it reports whether the line matched a pattern.
func (r *Report) count(out Outcome, res *Match, counts map[string]map[netip.Addr]uint64) bool {
	switch out {
	case OwnReject:
		r.OwnRejects++
	case RBLError:
		r.RBLErrors++
	case IgnoredService:
		r.IgnoredService++
	case Matched:
		r.Matched++
		if res.BadTime {
			r.BadTimestamps++
		}
		c := counts[res.Pattern]
		if c == nil {
			c = map[netip.Addr]uint64{}
			counts[res.Pattern] = c
		}
		c[res.Addr]++
		return true
	}
	return false
}
