package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/banner-mta/banner/internal/testenv"
)

// TestTestLogRealPostfixLog: test-log over the log a real Postfix 3.7.11
// wrote counts exactly the clients and kinds of the fixture's golden list
// of matches (testdata/maillog/postfix-3.7.11.matches, which logwatch's
// own test checks line by line).
func TestTestLogRealPostfixLog(t *testing.T) {
	logPath := testenv.Fixture(t, "maillog/postfix-3.7.11.log")
	golden, err := os.ReadFile(testenv.Fixture(t, "maillog/postfix-3.7.11.matches"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, l := range strings.Split(strings.TrimSpace(string(golden)), "\n") {
		if f := strings.Fields(l); len(f) >= 3 {
			want = append(want, f[1]+" "+f[2])
		}
	}
	var out, errb bytes.Buffer
	cfg := filepath.Join("..", "..", "conf", "banner.toml")
	if code := run(context.Background(), []string{"test-log", "-config", cfg, "-json", logPath}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var res struct {
		Report struct {
			Patterns []struct {
				Kind string `json:"kind"`
				Top  []struct {
					Addr  string `json:"addr"`
					Count int    `json:"count"`
				} `json:"top"`
			} `json:"patterns"`
		} `json:"report"`
	}
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("%v:\n%s", err, out.String())
	}
	var got []string
	for _, p := range res.Report.Patterns {
		for _, a := range p.Top {
			for range a.Count {
				got = append(got, a.Addr+" "+p.Kind)
			}
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("test-log counted %q, the fixture's golden matches are %q", got, want)
	}
}
