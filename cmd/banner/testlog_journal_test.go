package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/banner-mta/banner/internal/journaltest"
)

// TestTestLogJournal: test-log reads journalctl's output from stdin (-o
// json, -o short-iso, -o short-precise) and the journal itself (-journal,
// with -since), all over the same real journal, with the same matches.
func TestTestLogJournal(t *testing.T) {
	journaltest.Require(t)
	dir := journaltest.Dir(t)
	w := journaltest.NewWriter(t, filepath.Join(dir, "a.journal"))
	for i := range 6 {
		w.Postfix("postfix/smtpd", fmt.Sprintf("NOQUEUE: reject: RCPT from unknown[198.51.100.7]: 550 5.1.1 <u%d@example.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<> to=<u%d@example.test> proto=ESMTP helo=<x>", i, i))
	}
	w.Entry("SYSLOG_IDENTIFIER", "dovecot", "SYSLOG_FACILITY", "2", "MESSAGE", "imap-login: x")
	w.Close()
	journalctlArgs = []string{"--directory=" + dir}
	defer func() { journalctlArgs = nil }()

	type result struct {
		Report struct {
			Lines          uint64 `json:"lines"`
			Matched        uint64 `json:"matched"`
			JournalEntries uint64 `json:"journal_entries"`
			JournalOther   uint64 `json:"journal_other"`
		} `json:"report"`
		Bans []json.RawMessage `json:"would_ban"`
	}
	parse := func(t *testing.T, out string) result {
		t.Helper()
		var r result
		if err := json.Unmarshal([]byte(out[:strings.LastIndexByte(out, '}')+1]), &r); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		return r
	}
	for _, format := range []string{"json", "short-iso", "short-precise"} {
		t.Run("stdin "+format, func(t *testing.T) {
			out, err := exec.Command("journalctl", "--directory="+dir, "-o", format, "SYSLOG_FACILITY=2").Output()
			if err != nil {
				t.Fatal(err)
			}
			old := stdin
			stdin = bytes.NewReader(out)
			defer func() { stdin = old }()
			got, code := cli(t, "test-log", "-json", "-")
			if code != 0 {
				t.Fatalf("exit %d: %s", code, got)
			}
			r := parse(t, got)
			if r.Report.Matched != 6 || len(r.Bans) != 1 {
				t.Fatalf("%s: %+v, %d bans\n%s", format, r.Report, len(r.Bans), got)
			}
		})
	}
	t.Run("-journal", func(t *testing.T) {
		got, code := cli(t, "test-log", "-json", "-journal")
		r := parse(t, got)
		if code != 0 || r.Report.Matched != 6 || r.Report.JournalEntries != 7 || r.Report.JournalOther != 1 || len(r.Bans) != 1 {
			t.Fatalf("exit %d: %s", code, got)
		}
		got, code = cli(t, "test-log", "-json", "-journal", "-since", "+1h")
		if r := parse(t, got); code != 0 || r.Report.Lines != 0 {
			t.Fatalf("-since in the future: exit %d: %s", code, got)
		}
		if _, code := cli(t, "test-log", "-since", "-1h", "x.log"); code != 2 {
			t.Fatalf("-since without -journal: exit %d", code)
		}
	})
}
