package logwatch

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/journaltest"
)

// BenchmarkJournalIngest measures the journal source (journalctl --follow
// -o json, parsing, the Postfix filter and the matcher, to the emit of
// each match) over a real journal of 200,000 Postfix entries, against its
// floors in the same run, interleaved: journalctl writing the same entries
// with the same arguments (without --follow) to /dev/null ("floor"), and
// plain `journalctl -o json` of them to /dev/null ("floor_plain", every
// field). One iteration is one round of all; the metrics are medians.
//
//	go test ./banner/logwatch -run '^$' -bench BenchmarkJournalIngest -benchtime 5x
func BenchmarkJournalIngest(b *testing.B) {
	journaltest.Require(b)
	const entries = 200000
	dir := filepath.Join(b.TempDir(), "journal")
	os.Mkdir(dir, 0o755)
	w := journaltest.NewWriter(b, filepath.Join(dir, "bench.journal"))
	for i := range entries {
		l := numLine(i % 5000)
		w.Postfix("postfix/smtpd", strings.TrimSuffix(l[strings.Index(l, "NOQUEUE"):], "\n"))
	}
	w.Close()
	devnull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer devnull.Close()
	src := newJournalSource(JournalConfig{Args: []string{"--directory=" + dir}, FromStart: true})
	floorArgs := slices.DeleteFunc(src.journalArgs("", time.Time{}, true), func(a string) bool { return a == "--follow" })
	run := func(args ...string) time.Duration {
		cmd := exec.Command("journalctl", args...)
		cmd.Stdout = devnull
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	banner := func() time.Duration {
		c := newCollector()
		cfg := testConfig("")
		cfg.Files = nil
		cfg.Journal, cfg.JournalArgs, cfg.FromStart = true, []string{"--directory=" + dir}, true
		wt, err := New(cfg, c.emit)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		t0 := time.Now()
		go func() { done <- wt.Run(ctx) }()
		for wt.Stats().Journal == nil || wt.Stats().Journal.Entries < entries {
			time.Sleep(200 * time.Microsecond)
		}
		d := time.Since(t0)
		cancel()
		<-done
		if c.count() != entries {
			b.Fatalf("%d matches, want %d", c.count(), entries)
		}
		return d
	}
	var floor, plain, ours []time.Duration
	b.ResetTimer()
	for range b.N {
		floor = append(floor, run(floorArgs...))
		ours = append(ours, banner())
		plain = append(plain, run("--directory="+dir, "-o", "json", "--no-pager"))
	}
	b.StopTimer()
	med := func(d []time.Duration) float64 {
		s := slices.Clone(d)
		slices.Sort(s)
		return float64(entries) / s[len(s)/2].Seconds()
	}
	b.ReportMetric(med(ours), "banner_lines/s")
	b.ReportMetric(med(floor), "floor_lines/s")
	b.ReportMetric(med(plain), "floor_plain_lines/s")
	b.ReportMetric(med(ours)/med(floor), "x_floor")
	b.ReportMetric(med(ours)/med(plain), "x_floor_plain")
}
