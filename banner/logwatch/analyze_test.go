package logwatch

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// testdata/maillog/sample.log (top level) is `go run ./cmd/mailloggen -lines 2000 -seed 1
// -reject-ratio 0.05`.
func sampleMatcher(t testing.TB, extra ...Pattern) *Matcher {
	t.Helper()
	return newTestMatcher(t, func(c *MatcherConfig) {
		c.OwnRejectMarker = "blocked by banner"
		c.Now = func() time.Time { return time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC) }
		c.Patterns = extra
	})
}

func TestAnalyzeGolden(t *testing.T) {
	data, err := os.ReadFile(testenv.Fixture(t, "maillog/sample.log"))
	if err != nil {
		t.Fatal(err)
	}
	m := sampleMatcher(t, Pattern{Name: "sasl", Regex: `^warning: [-._\w]+\[<HOST>\]: SASL (?:LOGIN|PLAIN) authentication failed`})
	var got []Match
	rep, err := Analyze(bytes.NewReader(data), m, func(r Match) { got = append(got, r) })
	if err != nil {
		t.Fatal(err)
	}
	if uint64(len(got)) != rep.Matched || rep.Lines != 2000 {
		t.Fatalf("%d matches emitted, report says %d of %d lines", len(got), rep.Matched, rep.Lines)
	}
	rep.Duration, rep.Seconds, rep.LinesPerSec = 0, 0, 0
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	js, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"analyze.txt.golden": text.Bytes(), "analyze.json.golden": append(js, '\n')} {
		p := filepath.Join("testdata", name)
		if *update {
			if err := os.WriteFile(p, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (run go test -update)", err)
		}
		if !bytes.Equal(b, want) {
			t.Errorf("%s differs (go test -update to accept):\n%s", name, b)
		}
	}
}

func TestAnalyzeLongAndUnterminated(t *testing.T) {
	m := sampleMatcher(t)
	in := strings.Repeat("x", 100000) + "\n" + smtpd + "too many errors after RCPT from a[192.0.2.1]\n" +
		strings.Repeat("y", 70000) + "\n" + smtpd + "too many errors after RCPT from a[192.0.2.2]"
	rep, err := Analyze(strings.NewReader(in), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Lines != 2 || rep.Matched != 2 || rep.LongLines != 2 {
		t.Fatalf("%+v", rep)
	}
}

// BenchmarkMatchLine: the matcher alone on testdata/maillog/sample.log (top level) (5% rejects).
// The lines/s figure is for one core with -cpu=1.
func BenchmarkMatchLine(b *testing.B) {
	data, err := os.ReadFile(testenv.Fixture(b, "maillog/sample.log"))
	if err != nil {
		b.Fatal(err)
	}
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	for _, c := range []struct {
		name string
		pats []Pattern
	}{
		{"builtin", nil},
		{"builtin+1admin", []Pattern{{Name: "sasl", Regex: `^warning: [-._\w]+\[<HOST>\]: SASL (?:LOGIN|PLAIN) authentication failed`}}},
	} {
		b.Run(c.name, func(b *testing.B) {
			m := sampleMatcher(b, c.pats...)
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, l := range lines {
					m.MatchLine(l)
				}
			}
			b.ReportMetric(float64(len(lines))*float64(b.N)/b.Elapsed().Seconds(), "lines/s")
		})
	}
}

// TestAnalyzeNoSyslogPrefix: lines in a format banner does not read (as
// journalctl -o cat prints them) are counted and named in the report, so an
// admin who feeds such a log learns why nothing matched; lines banner reads
// (short-precise and RFC 5424 too) are not counted.
func TestAnalyzeNoSyslogPrefix(t *testing.T) {
	m, err := NewMatcher(DefaultMatcherConfig())
	if err != nil {
		t.Fatal(err)
	}
	const reject = `NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org; from=<a@b.example> to=<c@d.example> proto=ESMTP helo=<x>`
	in := strings.Join([]string{
		"postfix/smtpd[1]: " + reject, // journalctl -o cat
		"smtpd[1]: " + reject,         // no host either
		"- - " + reject,               // nothing like a prefix
		"Nov 24 10:00:01.123456 mx postfix/smtpd[1]: " + reject,                    // short-precise: read
		"<22>1 2026-11-24T10:00:01Z mx postfix/smtpd 1 - - " + reject,              // RFC 5424: read
		"Nov 24 10:00:01 mx postfix/smtpd[1]: " + reject,                           // read
		"2026-11-24T10:00:01+00:00 mx postfix/smtpd[1]: connect from x[192.0.2.2]", // read, no match
	}, "\n") + "\n"
	rep, err := Analyze(strings.NewReader(in), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.NoSyslogPrefix != 3 || rep.Matched != 3 {
		t.Errorf("no_syslog_prefix %d, matched %d; want 3 and 3", rep.NoSyslogPrefix, rep.Matched)
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "lines without a syslog prefix:  3") || !strings.Contains(b.String(), "journalctl -o short-iso") {
		t.Errorf("report does not point at the format:\n%s", b.String())
	}
}
