package logwatch

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/banner-mta/banner/internal/testenv"
)

// analyzeSerial is Analyze as one loop over bufio.Reader.ReadSlice, the
// way it was before the blocks were matched in parallel: the reference
// TestAnalyzeBlocksSameAsOneLoop holds AnalyzeTop to.
func analyzeSerial(r io.Reader, m *Matcher, emit func(Match)) (*Report, error) {
	rep := &Report{}
	counts := map[string]map[netip.Addr]uint64{}
	br := bufio.NewReaderSize(r, maxAnalyzeLine)
	skipping := false
	var je journalEntry
	deliv := NewDeliveries(0)
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			if !skipping {
				rep.LongLines++
			}
			skipping = true
			continue
		}
		if len(line) > 0 {
			if skipping {
				skipping = false
			} else {
				rep.Lines++
				var res Match
				var out Outcome
				var prefixed bool
				var perr string
				cur := &Record{Line: line}
				if isJSONLine(line) && parseJournalEntry(trimEOL(line), &je) == nil {
					rep.JournalEntries++
					if !isPostfixIdentifier(je.Identifier) || !je.HasMessage {
						rep.JournalOther++
						continue
					}
					cur = &Record{Identifier: je.Identifier, PID: je.PID, Time: je.Time, Message: je.Message, Cursor: string(je.Cursor)}
					res, out, prefixed, perr = safeMatchRecord(m, cur)
				} else {
					res, out, _, prefixed, perr = safeMatchLine(m, line)
				}
				if perr != "" {
					rep.MatchPanics++
					continue
				}
				if out == NoMatch && !prefixed {
					rep.NoSyslogPrefix++
				}
				if out == NoMatch {
					if res, ok := deliv.Record(m, cur); ok && emit != nil {
						res.Origin = fmt.Sprintf("line %d", rep.Lines)
						emit(res)
					}
				}
				if rep.count(out, &res, counts) && emit != nil {
					res.Origin = fmt.Sprintf("line %d", rep.Lines)
					emit(res)
				}
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("logwatch: reading log after line %d: %w", rep.Lines, err)
		}
	}
	for _, name := range m.Names() {
		pr := PatternReport{Name: name, Kind: m.Kind(name)}
		for _, n := range counts[name] {
			pr.Matches += n
		}
		pr.Addrs = len(counts[name])
		rep.Patterns = append(rep.Patterns, pr)
	}
	return rep, nil
}

// chunkReader returns what it reads in pieces of random sizes, then err
// (io.EOF if nil).
type chunkReader struct {
	data []byte
	rnd  *rand.Rand
	err  error
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		if c.err != nil {
			return 0, c.err
		}
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), 1+c.rnd.IntN(300<<10))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

// TestAnalyzeBlocksSameAsOneLoop: AnalyzeTop, reading blocks and matching
// them in parallel, reports and emits exactly what one loop over the lines
// does, over inputs of several blocks with lines that straddle blocks,
// overlong lines at and around the limit and longer than a block, journal
// JSON entries, lines without a syslog prefix, a last line without its
// newline, read in pieces of random sizes, and with a read error.
func TestAnalyzeBlocksSameAsOneLoop(t *testing.T) {
	sample, err := os.ReadFile(testenv.Fixture(t, "maillog/sample.log"))
	if err != nil {
		t.Fatal(err)
	}
	journal := `{"__CURSOR":"s=a;i=1","__REALTIME_TIMESTAMP":"1764000000000001","SYSLOG_IDENTIFIER":"postfix/smtpd","_PID":"42","MESSAGE":"NOQUEUE: reject: RCPT from x[192.0.2.7]: 550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<a@b.example> to=<nobody@example.test> proto=ESMTP helo=<x>"}` + "\n" +
		`{"__CURSOR":"s=a;i=2","SYSLOG_IDENTIFIER":"sshd","MESSAGE":"not mail"}` + "\n"
	specials := []string{
		strings.Repeat("x", maxAnalyzeLine-1) + "\n", // fits
		strings.Repeat("x", maxAnalyzeLine) + "\n",   // one too long
		strings.Repeat("y", maxAnalyzeLine+1) + "\n",
		strings.Repeat("z", analyzeBlockSize+12345) + "\n", // longer than a block
		strings.Repeat("w", 3*analyzeBlockSize) + "\n",
		journal,
		"no prefix here at all\n",
		"\n",
		"Nov 24 10:00:00 mx1 postfix/smtpd[6296]: 8B7E0984605: client=unknown[198.51.100.8]\n" +
			"Nov 24 10:00:01 mx1 postfix/qmgr[6293]: 8B7E0984605: from=<sender@example.net>, size=392, nrcpt=1 (queue active)\n",
		smtpd + "too many errors after RCPT from a[192.0.2.1]\n",
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	var in bytes.Buffer
	for in.Len() < 6*analyzeBlockSize {
		lines := bytes.SplitAfter(sample, []byte("\n"))
		for _, l := range lines {
			in.Write(l)
			if rnd.IntN(400) == 0 {
				in.WriteString(specials[rnd.IntN(len(specials))])
			}
		}
	}
	for _, s := range specials {
		in.WriteString(s)
	}
	m := sampleMatcher(t)
	for _, tc := range []struct {
		name string
		data []byte
		err  error
	}{
		{"whole", in.Bytes(), nil},
		{"last line unterminated", append(bytes.Clone(in.Bytes()), smtpd+"too many errors after RCPT from a[192.0.2.9]"...), nil},
		{"long last line unterminated", append(bytes.Clone(in.Bytes()), strings.Repeat("v", maxAnalyzeLine)...), nil},
		{"read error", in.Bytes()[:4*analyzeBlockSize+777], errors.New("disk on fire")},
		{"empty", nil, nil},
		{"one line", []byte(smtpd + "too many errors after RCPT from a[192.0.2.1]\n"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want, got []Match
			wrep, werr := analyzeSerial(&chunkReader{data: tc.data, rnd: rand.New(rand.NewPCG(3, 4)), err: tc.err}, m, func(r Match) { want = append(want, r) })
			grep, gerr := AnalyzeTop(&chunkReader{data: tc.data, rnd: rand.New(rand.NewPCG(5, 6)), err: tc.err}, m, func(r Match) { got = append(got, r) }, 0)
			if fmt.Sprint(werr) != fmt.Sprint(gerr) {
				t.Fatalf("error %v, want %v", gerr, werr)
			}
			if werr == nil {
				g := *grep
				g.Duration, g.Seconds, g.LinesPerSec = 0, 0, 0
				for i := range g.Patterns {
					g.Patterns[i].Top = nil
				}
				if !reflect.DeepEqual(&g, wrep) {
					t.Errorf("report\n%+v, want\n%+v", &g, wrep)
				}
				if wrep.Lines == 0 && len(tc.data) > 1000 {
					t.Fatal("reference read nothing")
				}
			}
			if len(got) != len(want) {
				t.Fatalf("%d matches emitted, want %d", len(got), len(want))
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("match %d: %+v, want %+v", i, got[i], want[i])
				}
			}
			if tc.name == "whole" {
				kinds := map[string]int{}
				for _, r := range want {
					kinds[r.Pattern]++
				}
				if kinds[PatternDelivered] == 0 || wrep.JournalEntries == 0 || wrep.LongLines == 0 || wrep.NoSyslogPrefix == 0 {
					t.Fatalf("the input lacks a case: %v, %+v", kinds, wrep)
				}
			}
			if wrep != nil {
				t.Logf("%d lines, %d long, %d matches emitted", wrep.Lines, wrep.LongLines, len(want))
			}
		})
	}
}
