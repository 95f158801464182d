package main

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/daemon"
	"github.com/banner-mta/banner/banner/logwatch"
)

func generate(tb testing.TB, lines int, ratio float64, seed uint64, rfc bool) []byte {
	tb.Helper()
	var b bytes.Buffer
	w := bufio.NewWriter(&b)
	g := newGen(seed, ratio, rfc, time.Date(2026, 11, 24, 0, 0, 0, 0, time.UTC))
	for i := 0; i < lines; i++ {
		g.line(w)
	}
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	return b.Bytes()
}

func matcher(tb testing.TB) *logwatch.Matcher {
	tb.Helper()
	cfg := logwatch.DefaultMatcherConfig()
	cfg.OwnRejectMarker = "blocked by banner"
	cfg.Location = time.UTC
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { return now }
	m, err := logwatch.NewMatcher(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func TestGenerate(t *testing.T) {
	for _, rfc := range []bool{false, true} {
		data := generate(t, 20000, 0.05, 7, rfc)
		if !bytes.Equal(data, generate(t, 20000, 0.05, 7, rfc)) {
			t.Fatal("not deterministic")
		}
		rep, err := logwatch.Analyze(bytes.NewReader(data), matcher(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Lines != 20000 || rep.BadTimestamps != 0 {
			t.Fatalf("report %+v", rep)
		}
		// 5% rejects, 14 of 20 reject kinds are counted, 1 is banner's own
		share := float64(rep.Matched) / float64(rep.Lines)
		if share < 0.025 || share > 0.045 {
			t.Errorf("matched share %.3f", share)
		}
		for _, p := range rep.Patterns {
			if p.Matches == 0 {
				t.Errorf("pattern %s never matched", p.Name)
			}
		}
		if rep.OwnRejects == 0 {
			t.Error("no own rejects")
		}
	}
}

func TestRunFlags(t *testing.T) {
	out := filepath.Join(t.TempDir(), "mail.log")
	if err := run(100, 0.5, 1, true, out, "2026-01-02T03:04:05Z"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n != 100 || !strings.HasPrefix(string(b), "2026-01-02T03:04:05") {
		t.Fatalf("%d lines, starts %.30q", n, b)
	}
	for _, c := range []struct {
		lines int
		ratio float64
		start string
	}{{-1, 0, "2026-01-02T03:04:05Z"}, {1, 2, "2026-01-02T03:04:05Z"}, {1, 0, "yesterday"}} {
		if err := run(c.lines, c.ratio, 1, false, out, c.start); err == nil {
			t.Errorf("run(%d, %v, %q) accepted", c.lines, c.ratio, c.start)
		}
	}
}

// BenchmarkAnalyze measures logwatch.Analyze (bufio line splitting plus the
// default built-in patterns) on a realistic mail.log with 5% rejects.
// Run with -cpu=1 for the one-core figure.
func BenchmarkAnalyze(b *testing.B) {
	for _, rfc := range []bool{false, true} {
		name := "classic"
		if rfc {
			name = "rfc3339"
		}
		b.Run(name, func(b *testing.B) {
			const lines = 200000
			data := generate(b, lines, 0.05, 1, rfc)
			m := matcher(b)
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := logwatch.Analyze(bytes.NewReader(data), m, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}

// BenchmarkTestLog measures what `banner test-log` does with a log but
// print: the blocks read and matched in parallel (logwatch.AnalyzeTop on
// GOMAXPROCS workers), every match and delivery made an event, and the
// engine's ban simulation over them, on 200k generated lines with 5%
// rejects and the default configuration. Run with -benchmem: the bytes and
// allocations per op guard the reading path (a log input once allocated
// more than the log's size).
func BenchmarkTestLog(b *testing.B) {
	const lines = 200000
	data := generate(b, lines, 0.05, 1, false)
	cfg := config.Default()
	m, err := daemon.LogMatcher(cfg, "")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		res, err := daemon.TestLog(cfg, m, bytes.NewReader(data), logwatch.TopN)
		if err != nil {
			b.Fatal(err)
		}
		if res.Report.Lines != lines {
			b.Fatalf("read %d lines, want %d", res.Report.Lines, lines)
		}
	}
	b.ReportMetric(float64(lines)*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
}
