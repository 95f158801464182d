package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/logwatch"
)

// durationKeys lists every Duration key of the file format, found by
// reflection so that a new one cannot be missed: "ban.bantime", and
// "policy.immediate[].bantime" for a key in an array of tables.
func durationKeys(t reflect.Type, prefix string) []string {
	var keys []string
	switch {
	case t == durationType:
		return []string{prefix}
	case t.Kind() == reflect.Struct && isTable(t):
		for i := range t.NumField() {
			sf := t.Field(i)
			tag, _, _ := strings.Cut(sf.Tag.Get("toml"), ",")
			if !sf.IsExported() || tag == "" || tag == "-" {
				continue
			}
			keys = append(keys, durationKeys(sf.Type, join(prefix, tag))...)
		}
	case t.Kind() == reflect.Slice:
		keys = append(keys, durationKeys(t.Elem(), prefix+"[]")...)
	case t.Kind() == reflect.Map:
		keys = append(keys, durationKeys(t.Elem(), prefix+".x")...)
	}
	return keys
}

// durationDoc writes a document setting key (from durationKeys) to value,
// on line 3; it returns the text and the key as errors name it.
func durationDoc(key, value string) (text, want string) {
	// Split "a.b[].c" at the last table: "[[a.b]]" then "c = ...".
	table, name := "", key
	header := "[%s]"
	if i := strings.LastIndex(key, "[]."); i >= 0 {
		table, name, header = key[:i], key[i+3:], "[[%s]]"
		want = table + "[0]." + name
	} else if i := strings.LastIndexByte(key, '.'); i >= 0 {
		table, name = key[:i], key[i+1:]
		want = key
	}
	if strings.HasSuffix(name, "[]") { // an array of durations
		name = strings.TrimSuffix(name, "[]")
		value = "[" + value + "]"
		want = strings.TrimSuffix(want, "[]") + "[0]"
	}
	return fmt.Sprintf(header+"\n\n%s = %s\n", table, name, value), want
}

// TestDurationsMustBeStrings: every duration key refuses a bare number
// (go-toml would store 3600 as 3600 ns), a float, a boolean and other
// non-strings, naming file, line and key; and takes a string.
func TestDurationsMustBeStrings(t *testing.T) {
	keys := durationKeys(fileType, "")
	for _, k := range []string{"ban.bantime", "dnsbl.query_timeout", "policy.request_timeout", "policy.immediate[].bantime", "recipients.reload_interval"} {
		if !strings.Contains(strings.Join(keys, " "), k) {
			t.Fatalf("durationKeys misses %s: %q", k, keys)
		}
	}
	if len(keys) < 21 { // as of this writing
		t.Fatalf("only %d duration keys found: %q", len(keys), keys)
	}
	for _, key := range keys {
		for _, tc := range []struct{ value, want string }{
			{"3600", `3600: write durations as strings with a unit, e.g. "1h" (a bare number is not seconds)`},
			{"0", `0: write durations as strings with a unit, e.g. "1h" (a bare number is not seconds)`},
			{"1_800", `1_800: write durations as strings with a unit, e.g. "1h" (a bare number is not seconds)`},
			{"1.5", `1.5: write durations as strings with a unit, e.g. "1h" (a bare number is not seconds)`},
			{"-2", `-2: write durations as strings with a unit`},
			{"true", `true: write durations as strings with a unit, e.g. "1h"`},
			{"[\"1h\"]", `an array: write durations as strings`},
			{"{ h = 1 }", `a table: write durations as strings`},
			{"1979-05-27", `1979-05-27: write durations as strings`},
			{`"3600"`, `invalid duration "3600"`},
		} {
			text, k := durationDoc(key, tc.value)
			_, err := Parse("banner.toml", []byte(text))
			if err == nil {
				t.Errorf("%s = %s: no error for\n%s", key, tc.value, text)
				continue
			}
			if want := fmt.Sprintf("banner.toml:3: %s: %s", k, tc.want); !strings.Contains(err.Error(), want) {
				t.Errorf("%s = %s: error\n%v\nlacks %q", key, tc.value, err, want)
			}
		}
		// A string with a unit gets past the type check (other rules of
		// the section may still fail: only the key's own error matters).
		text, k := durationDoc(key, `"2h"`)
		if _, err := Parse("banner.toml", []byte(text)); err != nil && strings.Contains(err.Error(), k+":") {
			t.Errorf("%s = \"2h\": %v", key, err)
		}
	}
}

func TestDurationValue(t *testing.T) {
	f, err := Parse("t.toml", []byte("[ban]\nbantime = \"2h\"\nmaxtime = \"1w\"\n\n[dnsbl]\nquery_timeout = \"2s\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Ban.BanTime != Duration(7200e9) || f.DNSBL.QueryTimeout != Duration(2e9) {
		t.Errorf("bantime %v, query_timeout %v", f.Ban.BanTime, f.DNSBL.QueryTimeout)
	}
}

// TestErrorsInFileOrder: unknown keys and type errors are all reported, in
// file order, so a type error does not hide an unknown key before it.
func TestErrorsInFileOrder(t *testing.T) {
	_, err := Parse("t.toml", []byte("[ban]\nbantme = \"1h\"\nmaxretry = \"three\"\n\n[dnsbl]\nquery_timeout = 2\ntimeout = \"1s\"\n"))
	if err == nil {
		t.Fatal("no error")
	}
	want := "t.toml:2: ban.bantme: unknown key: did you mean \"bantime\"?\n" +
		"t.toml:3: ban.maxretry: wrong type: want a number, got the string \"three\"\n" +
		"t.toml:6: dnsbl.query_timeout: 2: write durations as strings with a unit, e.g. \"1h\" (a bare number is not seconds)\n" +
		"t.toml:7: dnsbl.timeout: unknown key (README's configuration reference lists the keys)"
	if err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
	var ce *Error
	if !errors.As(err, &ce) || ce.Line != 2 || ce.Key != "ban.bantme" {
		t.Errorf("first *Error %+v", ce)
	}
}

// TestPatternErrors: an admin pattern's regex error quotes the regex as
// written, not its <HOST> expansion, and each problem is reported once.
func TestPatternErrors(t *testing.T) {
	_, err := Parse("t.toml", []byte("[[logwatch.pattern]]\nname = \"x\"\nregex = \"foo(<HOST>\"\n"))
	if err == nil {
		t.Fatal("no error")
	}
	if want := "t.toml:3: logwatch.pattern[0].regex: invalid regex: error parsing regexp: missing closing ): `foo(<HOST>`"; err.Error() != want {
		t.Errorf("error\n%v\nwant\n%s", err, want)
	}
	_, err = Parse("t.toml", []byte("[logwatch]\npoll_interval = \"1s\"\n\n[[logwatch.pattern]]\nregex = \"<HOST> x\"\n\n[[logwatch.pattern]]\nname = \"y\"\nregex = \"y\"\n"))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	if n := strings.Count(msg, "must not be empty"); n != 1 {
		t.Errorf("\"must not be empty\" %d times in\n%s", n, msg)
	}
	for _, w := range []string{"t.toml:4: logwatch.pattern[0].name: must not be empty", "t.toml:9: logwatch.pattern[1].regex: must contain <HOST>"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error\n%s\nlacks %q", msg, w)
		}
	}
	if strings.Contains(msg, "\x00") || strings.Contains(msg, "0-9") {
		t.Errorf("error shows internals:\n%q", msg)
	}
}

// TestPackageValidateAtLoad: whatever `banner run` would refuse from the
// configuration alone, Parse (and so `banner run -check`) refuses too; and
// whatever Parse accepts passes every package's Validate.
func TestPackageValidateAtLoad(t *testing.T) {
	bad := []struct{ text, want string }{
		{"[recipients]\ndomains = [\"example.test\"]\n", "t.toml:1: recipients.files: must not be empty"},
		{"[recipients]\ndomains = [\"example.test\", \"a@b\"]\nfiles = [\"/etc/postfix/vmailbox\"]\n", "t.toml:2: recipients.domains[1]: invalid domain"},
		{"[recipients]\ndomains = [\"example.test\"]\n\nfiles = [\"/a\", \"/a\"]\n", "t.toml:4: recipients.files[1]: \"/a\" listed twice"},
		{"[recipients]\ndomains = [\"example.test\"]\nfiles = [\"/a\"]\nrecipient_delimiter = \"@\"\n", "t.toml:4: recipients.recipient_delimiter"},
		{"[policy]\nmax_line = 0\n", "t.toml:2: policy.max_line"},
		{"[policy]\ndnsbl_action = \"FOO\"\n", "t.toml:2: policy.dnsbl_action"},
		{"[[policy.immediate]]\nzone = \"zen.spamhaus.org\"\ncodes = \"x\"\nbantime = \"0s\"\n", "t.toml:4: policy.immediate[0].bantime: must be > 0"},
		{"[dnsbl]\nthreshold = 3\n\nzones = [\"zen.spamhaus.org=bad\"]\n", "t.toml:4: dnsbl.zones[0]"},
		{"[dnsbl]\n\nresolvers = [\"127.0.0.1\", \"resolver.example\"]\n", "t.toml:3: dnsbl.resolvers[1]"},
		{"[ban]\nfactor = 0.5\n", "t.toml:2: ban.factor"},
		{"[firewall]\nchain = \"INPUT\"\n", "t.toml:2: firewall.chain"},
		{"[logwatch]\nfiles = [\"/a\", \"/a\"]\n", "t.toml:2: logwatch.files[1]"},
		{"[metrics]\nlisten = \"127.0.0.1:99999\"\n", "t.toml:2: metrics.listen"},
		{"[policy]\n\nlisten = [\"inet:127.0.0.1:\"]\n", "t.toml:3: policy.listen: listen address \"inet:127.0.0.1:\": no port"},
		{"[policy]\nlisten = [\"unix:/run/banner/policy.sock\", \"inet:127.0.0.1:0\"]\n", "t.toml:2: policy.listen: listen address \"inet:127.0.0.1:0\": port 0 would be a random port"},
	}
	for _, tt := range bad {
		_, err := Parse("t.toml", []byte(tt.text))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %v, want %q", tt.text, err, tt.want)
		}
	}
	for _, text := range []string{"", "[recipients]\ndomains = [\"example.test\"]\nfiles = [\"/etc/postfix/vmailbox\"]\n"} {
		f, err := Parse("t.toml", []byte(text))
		if err != nil {
			t.Fatalf("Parse(%q): %v", text, err)
		}
		pc, err := f.PolicyConfig(nil)
		wc, werr := f.LogWatchConfig(nil)
		for name, err := range map[string]error{
			"policy": err, "policy.Validate": pc.Validate(), "policyd": f.PolicydConfig(nil).Validate(),
			"dnsbl": f.DNSBLConfig(nil).Validate(), "engine": f.EngineConfig(nil).Validate(),
			"firewall": f.FirewallConfig(nil).Validate(), "logwatch": werr, "recipients": f.RecipientsConfig(nil).Validate(),
		} {
			if err != nil && (name != "recipients" || len(f.Recipients.Domains) > 0) {
				t.Errorf("%q: %s: %v", text, name, err)
			}
		}
		if _, err := logwatch.NewMatcher(wc.MatcherConfig()); err != nil {
			t.Errorf("%q: matcher: %v", text, err)
		}
	}
}

// TestKeysAnyCase: keys match regardless of case, as the decoder has
// always matched them, so files written "BanTime" keep loading.
func TestKeysAnyCase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "t.toml")
	if err := os.WriteFile(path, []byte("[Ban]\nBanTime = \"2h\"\nMaxRetry = 7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Ban.MaxRetry != 7 || time.Duration(f.Ban.BanTime) != 2*time.Hour {
		t.Errorf("ban = %+v", f.Ban)
	}
}

func TestUnknownKeySuggestion(t *testing.T) {
	for _, tc := range []struct{ toml, want string }{
		{"[ban]\nmaxretyr = 3\n", `ban.maxretyr: unknown key: did you mean "maxretry"?`},
		{"[ban]\nban_time = \"1h\"\n", `ban.ban_time: unknown key: did you mean "bantime"?`},
		{"[dnsbl]\nzone = []\n", `dnsbl.zone: unknown key: did you mean "zones"?`},
		{"[fierwall]\n", `fierwall: unknown key: did you mean "firewall"?`},
		{"[ban]\nfoo = 1\n", `ban.foo: unknown key (README's configuration reference lists the keys)`},
	} {
		path := filepath.Join(t.TempDir(), "t.toml")
		if err := os.WriteFile(path, []byte(tc.toml), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.toml, err, tc.want)
		}
	}
}
