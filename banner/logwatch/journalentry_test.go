package logwatch

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"
)

// TestParseJournalEntry: the shapes journalctl(1) documents for -o json.
func TestParseJournalEntry(t *testing.T) {
	tests := []struct {
		name, in       string
		ident, msg     string
		pid            int
		hasMsg, hasErr bool
	}{
		{name: "plain", in: `{"__CURSOR":"s=a;i=1","__REALTIME_TIMESTAMP":"1700000000000001","SYSLOG_IDENTIFIER":"postfix/smtpd","_PID":"42","MESSAGE":"connect from x[192.0.2.1]"}`,
			ident: "postfix/smtpd", msg: "connect from x[192.0.2.1]", pid: 42, hasMsg: true},
		{name: "escapes", in: `{"__CURSOR":"c","MESSAGE":"a\"b\\c\/d\u00e9\ud83d\ude00\t","SYSLOG_IDENTIFIER":"postfix/smtpd"}`,
			ident: "postfix/smtpd", msg: "a\"b\\c/d\u00e9\U0001F600\t", hasMsg: true},
		{name: "bytes (not UTF-8)", in: `{"__CURSOR":"c","MESSAGE":[104,105,255,10]}`, msg: "hi\xff\n", hasMsg: true},
		{name: "too long: null", in: `{"__CURSOR":"c","MESSAGE":null}`},
		{name: "repeated field: first value", in: `{"__CURSOR":"c","MESSAGE":[null,"one","two"],"SYSLOG_PID":"7"}`, msg: "one", hasMsg: true, pid: 7},
		{name: "repeated byte arrays", in: `{"__CURSOR":"c","MESSAGE":[[255],"x"]}`, msg: "\xff", hasMsg: true},
		{name: "unknown fields skipped", in: `{"A":{"x":[1,2,{"y":null}]},"B":true,"C":-1.5e3,"__CURSOR":"c","MESSAGE":"m"}`, msg: "m", hasMsg: true},
		{name: "_PID before SYSLOG_PID", in: `{"__CURSOR":"c","SYSLOG_PID":"7","_PID":"8"}`, pid: 8},
		{name: "not an object", in: `["x"]`, hasErr: true},
		{name: "truncated", in: `{"__CURSOR":"c","MESSAGE":"ab`, hasErr: true},
		{name: "trailing garbage", in: `{"__CURSOR":"c"} x`, hasErr: true},
		{name: "raw control char", in: "{\"MESSAGE\":\"a\x01\"}", hasErr: true},
		{name: "byte over 255", in: `{"MESSAGE":[256]}`, hasErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e journalEntry
			err := parseJournalEntry([]byte(tt.in), &e)
			if (err != nil) != tt.hasErr {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				return
			}
			if string(e.Identifier) != tt.ident || string(e.Message) != tt.msg || e.PID != tt.pid || e.HasMessage != tt.hasMsg {
				t.Fatalf("got %q %q %d %v", e.Identifier, e.Message, e.PID, e.HasMessage)
			}
		})
	}
	var e journalEntry
	parseJournalEntry([]byte(tests[0].in), &e)
	if !e.Time.Equal(time.UnixMicro(1700000000000001)) {
		t.Errorf("time %v", e.Time)
	}
}

func TestIsPostfixIdentifier(t *testing.T) {
	for id, want := range map[string]bool{
		"postfix/smtpd": true, "postfix/submission/smtpd": true, "postfix-out/smtpd": true,
		"postfix": false, "postfix/": false, "postfix-/smtpd": false, "postfix-out/": false,
		"postfixadmin": false, "dovecot": false, "": false,
	} {
		if got := isPostfixIdentifier([]byte(id)); got != want {
			t.Errorf("%q: %v", id, got)
		}
	}
}

// FuzzJournalEntry: no input panics, and where encoding/json reads the
// line as an object of string fields, the parser agrees with it.
func FuzzJournalEntry(f *testing.F) {
	f.Add([]byte(`{"__CURSOR":"s=a;i=1","__REALTIME_TIMESTAMP":"1700000000000001","SYSLOG_IDENTIFIER":"postfix/smtpd","_PID":"42","MESSAGE":"connect from x[192.0.2.1]"}`))
	f.Add([]byte(`{"__CURSOR":"c","MESSAGE":"a\"b\\c\/d\u00e9\ud83d\ude00\ud800x"}`))
	f.Add([]byte(`{"__CURSOR":"c","MESSAGE":[104,105,255,10],"X":[["a"],null]}`))
	f.Add([]byte(`{"MESSAGE":[null,"one","two"],"A":{"b":[1,{"c":true}]}}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var e journalEntry
		err := parseJournalEntry(line, &e)
		var m map[string]string
		if json.Unmarshal(line, &m) != nil || !json.Valid(line) || m == nil {
			return // m == nil: "null", which encoding/json takes for an empty map
		}
		if !utf8.Valid(line) || bytes.Contains(line, []byte(`\u`)) {
			// journalctl writes no invalid UTF-8 in strings (it writes
			// byte arrays), and encoding/json replaces it.
			return
		}
		if err != nil {
			t.Fatalf("valid object of strings refused: %v", err)
		}
		if v, ok := m["MESSAGE"]; ok && string(e.Message) != v {
			t.Fatalf("MESSAGE %q, encoding/json %q", e.Message, v)
		}
		if v, ok := m["SYSLOG_IDENTIFIER"]; ok && string(e.Identifier) != v {
			t.Fatalf("SYSLOG_IDENTIFIER %q, encoding/json %q", e.Identifier, v)
		}
	})
}
