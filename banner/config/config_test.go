package config

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/logwatch"
)

// The sample configuration documents the defaults: it must decode to exactly
// Default().
func TestSampleIsDefault(t *testing.T) {
	path := filepath.Join("..", "..", "conf", "banner.toml")
	f, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	f.path, f.lines = "", nil
	if !reflect.DeepEqual(f, d) {
		t.Errorf("conf/banner.toml differs from Default():\nfile:    %+v\ndefault: %+v", *f, *d)
	}
}

func TestEmptyFileIsDefault(t *testing.T) {
	f, err := Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.Ban.BanTime != Duration(time.Hour) || f.Firewall.Backend != "auto" || f.Firewall.NFTTable != "banner" || f.Firewall.NFTPriority != -10 {
		t.Errorf("empty file did not give defaults: %+v", f)
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string // substrings of the error
	}{
		{"unknown key", "[ban]\nmaxretry = 3\nbantme = \"1h\"\n", []string{"t.toml:3", "ban.bantme", "unknown key"}},
		{"unknown section", "[bans]\nmaxretry = 3\n", []string{"t.toml:", "bans", "unknown key"}},
		{"wrong type", "[ban]\nmaxretry = \"three\"\n", []string{"t.toml:2", "ban.maxretry"}},
		{"bad duration", "[ban]\n\nbantime = \"one hour\"\n", []string{"t.toml:3", "ban.bantime", "invalid duration"}},
		{"bare number duration", "[ban]\nbantime = 3600\n", []string{`t.toml:2: ban.bantime: 3600: write durations as strings with a unit, e.g. "1h" (a bare number is not seconds)`}},
		{"boolean duration", "[ban]\nbantime = true\n", []string{"t.toml:2: ban.bantime: true: write durations as strings"}},
		{"float duration", "[dnsbl]\nquery_timeout = 1.5\n", []string{"t.toml:2: dnsbl.query_timeout: 1.5: write durations as strings", "not seconds"}},
		{"number as address", "[ban]\nallowlist = [10]\n", []string{"t.toml:2: ban.allowlist[0]: 10: write addresses as strings"}},
		{"port out of range", "[firewall]\nports = [25, 70000]\n", []string{"t.toml:2: firewall.ports[1]: 70000: out of range 0..65535"}},
		{"inline immediate", "[policy]\nimmediate = [\n  { zone = \"zen.spamhaus.org\", codes = \"127.0.0.2\", bantime = \"1h\" },\n  { zone = \"zen.spamhaus.org\", codes = \"127.0.0.4\", bantime = 3 },\n]\n", []string{"t.toml:4: policy.immediate[1].bantime: 3: write durations"}},
		{"negative duration", "[ban]\nbantime = \"-1h\"\n", []string{"ban.bantime", "negative"}},
		{"bad prefix", "[ban]\nallowlist = [\"192.0.2.0/24\", \"300.1.1.1\"]\n", []string{"t.toml:2", "ban.allowlist", "300.1.1.1"}},
		{"host bits", "[ban]\nallowlist = [\"192.0.2.7/24\"]\n", []string{"host bits set", "192.0.2.0/24"}},
		{"syntax", "[ban\nmaxretry = 3\n", []string{"t.toml:1"}},
		{"bantime over maxtime", "[ban]\nbantime = \"2w\"\nmaxtime = \"1w\"\n", []string{"t.toml:3", "ban.maxtime", "must be >= bantime"}},
		{"port 0", "[firewall]\nports = [25, 0]\n", []string{"t.toml:2", "firewall.ports"}},
		{"backend", "[firewall]\nbackend = \"pf\"\n", []string{"t.toml:2", "firewall.backend"}},
		{"listen", "[policy]\nlisten = [\"tcp:1.2.3.4\"]\n", []string{"t.toml:2", "policy.listen"}},
		{"immediate codes", "[[policy.immediate]]\nzone = \"zen.spamhaus.org\"\ncodes = \"127.0.0.[9..4]\"\nbantime = \"1h\"\n", []string{"t.toml:3", "policy.immediate[0].codes"}},
		{"pattern without HOST", "[[logwatch.pattern]]\nname = \"x\"\nregex = \"foo\"\n", []string{"logwatch.pattern[0]", "<HOST>"}},
		{"log level", "[log]\nlevel = \"loud\"\n", []string{"t.toml:2", "log.level"}},
		{"builtin weight zero", "[logwatch]\nbuiltin_weights = { rbl = 0.0 }\n", []string{"t.toml:2", "logwatch.builtin_weights.rbl", "must be > 0"}},
		{"builtin weight unknown", "[logwatch]\nbuiltin_weights = { rbll = 2.0 }\n", []string{"t.toml:2", "logwatch.builtin_weights", "rbll"}},
		{"builtin weight negative", "[logwatch]\nbuiltin_weights = { rbl = -1.0 }\n", []string{"logwatch.builtin_weights", ">= 0"}},
		{"poll interval", "[logwatch]\npoll_interval = \"0s\"\n", []string{"t.toml:2", "logwatch.poll_interval", "> 0"}},
		{"max line", "[logwatch]\nmax_line = 10\n", []string{"t.toml:2", "logwatch.max_line"}},
		{"ignore services empty entry", "[logwatch]\nfiles = []\nignore_services = [\"submission\", \"\"]\n", []string{"t.toml:3", "logwatch.ignore_services", `entry 1 ("")`}},
		{"ignore services wrong type", "[logwatch]\nignore_services = \"submission\"\n", []string{"t.toml:2", "logwatch.ignore_services"}},
		{"ignore services misspelt", "[logwatch]\nignore_service = [\"smtps\"]\n", []string{"t.toml:2", "logwatch.ignore_service", "unknown key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("t.toml", []byte(tt.text))
			if err == nil {
				t.Fatalf("no error for %q", tt.text)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	sample, err := os.ReadFile(filepath.Join("..", "..", "conf", "banner.toml"))
	if err == nil {
		f.Add(sample)
	}
	f.Add([]byte("[ban]\nmaxretry = 3\n"))
	f.Add([]byte("[[logwatch.pattern]]\nname='a'\nregex='<HOST>'\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.toml", data)
		if err == nil && cfg == nil {
			t.Fatal("nil config without error")
		}
		if err != nil && err.Error() == "" {
			t.Fatal("empty error message")
		}
	})
}

func TestOwnRejectMarker(t *testing.T) {
	d := Default()
	if got, want := ownRejectMarker(d.Policy.DNSBLAction, d.Policy.BannedAction), "Service unavailable; Client host ["; got != want {
		t.Errorf("marker %q, want %q", got, want)
	}
	if got := ownRejectMarker("REJECT {client}", "554 5.7.1 go away"); got != "" {
		t.Errorf("marker %q, want none", got)
	}
}

// TestLogWatchMapping: the [logwatch] knobs reach the watcher and matcher.
func TestLogWatchMapping(t *testing.T) {
	f, err := Parse("t.toml", []byte("[logwatch]\npoll_interval = \"1s\"\nrotate_grace = \"5m\"\nmax_line = 4096\nbuiltin_weights = { unknown_user = 0.5 }\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := f.LogWatchConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.PollInterval != time.Second || c.RotateGrace != 5*time.Minute || c.MaxLineLen != 4096 || c.BuiltinWeights["unknown_user"] != 0.5 {
		t.Errorf("watcher config %+v", c)
	}
	m, err := logwatch.NewMatcher(f.MatcherConfig())
	if err != nil {
		t.Fatal(err)
	}
	r, _ := m.MatchLine([]byte("Nov 24 10:00:00 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from x[192.0.2.7]: 550 5.1.1 <a@example.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<> to=<a@example.test> proto=ESMTP helo=<x>"))
	if r.Weight != 0.5 {
		t.Errorf("unknown_user match weight %v, want 0.5 (%+v)", r.Weight, r)
	}
}

// TestIgnoreServicesMapping: [logwatch] ignore_services reaches the watcher
// and the matcher (`banner test-log` builds its matcher from MatcherConfig);
// the default is logwatch's, and [] ignores nothing.
func TestIgnoreServicesMapping(t *testing.T) {
	sub := []byte("Nov 24 10:00:00 mx postfix/submission/smtpd[1]: NOQUEUE: reject: RCPT from x[192.0.2.7]: 550 5.1.1 <a@example.test>: Recipient address rejected: User unknown in virtual mailbox table; from=<> to=<a@example.test> proto=ESMTP helo=<x>")
	smtps := []byte("Nov 24 10:00:00 mx postfix/smtps/smtpd[1]: too many errors after AUTH from x[192.0.2.8]")
	cases := []struct {
		text      string
		want      []string
		sub, smtp logwatch.Outcome
	}{
		{"", logwatch.DefaultIgnoreServices, logwatch.IgnoredService, logwatch.IgnoredService},
		{"[logwatch]\nignore_services = []\n", []string{}, logwatch.Matched, logwatch.Matched},
		{"[logwatch]\nignore_services = [\"submission\"]\n", []string{"submission"}, logwatch.IgnoredService, logwatch.Matched},
	}
	for _, tc := range cases {
		f, err := Parse("t.toml", []byte(tc.text))
		if err != nil {
			t.Fatal(err)
		}
		c, err := f.LogWatchConfig(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(c.IgnoreServices, tc.want) || !slices.Equal(f.MatcherConfig().IgnoreServices, tc.want) {
			t.Errorf("%q: watcher %q, matcher %q, want %q", tc.text, c.IgnoreServices, f.MatcherConfig().IgnoreServices, tc.want)
		}
		for _, mc := range []logwatch.MatcherConfig{f.MatcherConfig(), c.MatcherConfig()} {
			m, err := logwatch.NewMatcher(mc)
			if err != nil {
				t.Fatal(err)
			}
			if _, out := m.MatchLine(sub); out != tc.sub {
				t.Errorf("%q: submission line outcome %d, want %d", tc.text, out, tc.sub)
			}
			if _, out := m.MatchLine(smtps); out != tc.smtp {
				t.Errorf("%q: smtps line outcome %d, want %d", tc.text, out, tc.smtp)
			}
		}
	}
}

// TestLoadSameLogFileTwice: Load refuses two [logwatch] files that are one
// file on this machine (a symlink, a hard link, a symlinked directory with
// "//"), at the second entry's line, naming both entries; Parse, which
// sees only the text, cannot tell and accepts them. Two spellings of one
// path ("//") are refused by Parse already.
func TestLoadSameLogFileTwice(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	if err := os.WriteFile(path, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{
		os.Symlink(path, filepath.Join(dir, "symlink.log")),
		os.Link(path, filepath.Join(dir, "hardlink.log")),
		os.Symlink(dir, filepath.Join(dir, "logdir")),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		second string
		parse  bool // Parse refuses it already
	}{
		{filepath.Join(dir, "symlink.log"), false},
		{filepath.Join(dir, "hardlink.log"), false},
		{filepath.Join(dir, "logdir") + "//mail.log", false},
		{dir + "//mail.log", true},
	}
	for _, tc := range cases {
		t.Run(tc.second, func(t *testing.T) {
			text := "[logwatch]\n\nfiles = [\"" + path + "\", \"" + tc.second + "\"]\n"
			cfg := filepath.Join(t.TempDir(), "banner.toml")
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			_, perr := Parse(cfg, []byte(text))
			_, lerr := Load(cfg)
			want := cfg + `:3: logwatch.files[1]: "` + tc.second + `" is the same file as files[0] "` + path + `"`
			if tc.parse {
				want = cfg + `:3: logwatch.files[1]: "` + tc.second + `" listed twice: it is files[0] "` + path + `" written another way`
				if perr == nil || perr.Error() != lerr.Error() {
					t.Errorf("Parse = %v, want Load's error", perr)
				}
			} else if perr != nil {
				t.Errorf("Parse = %v, want nil (the text alone cannot tell)", perr)
			}
			if lerr == nil || !strings.HasPrefix(lerr.Error(), want) || strings.Count(lerr.Error(), "\n") != 0 {
				t.Fatalf("Load = %v\nwant one error starting %q", lerr, want)
			}
		})
	}
}
