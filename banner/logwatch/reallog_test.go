package logwatch

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/banner-mta/banner/internal/testenv"
)

// TestRealPostfixLogMatches runs the built-in patterns over a mail.log that
// a real Postfix 3.7.11 wrote (the shared fixture
// testdata/maillog/postfix-3.7.11.log) and compares what matched, line by
// line, with its golden list of expected matches beside it.
func TestRealPostfixLogMatches(t *testing.T) {
	logPath := testenv.Fixture(t, "maillog/postfix-3.7.11.log")
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	m := sampleMatcher(t)
	var got strings.Builder
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		r, out := m.MatchLine(sc.Bytes())
		if out != Matched {
			continue
		}
		fmt.Fprintf(&got, "%d %s %s %s\n", n, r.Addr, r.Kind, r.Key)
	}
	goldenPath := strings.TrimSuffix(logPath, ".log") + ".matches"
	if *update {
		if err := os.WriteFile(goldenPath, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(goldenPath)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got.String() != string(want) {
		t.Errorf("matches differ from %s (go test -update to accept):\n%s", goldenPath, got.String())
	}
}
