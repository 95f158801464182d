package config

import (
	"path/filepath"
	"strings"
	"testing"
)

// warningText joins warnings one per line, for matching.
func warningText(ws []Warning) string {
	var b strings.Builder
	for _, w := range ws {
		b.WriteString(w.String())
		b.WriteByte('\n')
	}
	return b.String()
}

func TestDefaultsHaveNoWarnings(t *testing.T) {
	for _, path := range []string{"", filepath.Join("..", "..", "conf", "banner.toml")} {
		f := Default()
		if path != "" {
			var err error
			if f, err = Load(path); err != nil {
				t.Fatal(err)
			}
		}
		if ws := f.Warnings(); len(ws) != 0 {
			t.Errorf("%q: warnings for the defaults:\n%s", path, warningText(ws))
		}
	}
}

// TestWarnings: settings that are legal but almost surely wrong are
// accepted by Parse and named, with file, line and key, by Warnings.
func TestWarnings(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string // substrings of the warnings, in order
		daemon     bool     // the DNSBL checker logs it itself at start-up
	}{
		{"report-only zones", "[dnsbl]\nzones = [\"zen.spamhaus.org*0\"]\n\n[policy]\nimmediate = []\n",
			[]string{"t.toml:2: dnsbl.zones: no zone has a positive weight"}, false},
		{"cbl beside zen", "[dnsbl]\nzones = [\"zen.spamhaus.org=127.0.0.[2..11]*3\", \"cbl.abuseat.org\"]\n",
			[]string{"t.toml:2: dnsbl.zones: cbl.abuseat.org is the Spamhaus XBL", "fix: remove cbl.abuseat.org"}, true},
		{"public resolver", "[dnsbl]\nthreshold = 3.0\nresolvers = [\"127.0.0.1:53\", \"1.1.1.1\"]\n",
			[]string{"t.toml:3: dnsbl.resolvers: Spamhaus does not answer queries from public resolvers", "resolver 1.1.1.1, operator Cloudflare", "dqs_key"}, true},
		{"public resolver with a DQS key", "[dnsbl]\nresolvers = [\"8.8.8.8:53\"]\ndqs_key = \"abc123\"\n", nil, false},
		{"built-in immediate rule without zen", "[dnsbl]\nzones = [\"b.barracudacentral.org*3\"]\n",
			[]string{"t.toml: policy.immediate: built-in rule: zone \"zen.spamhaus.org\" is not in dnsbl.zones (b.barracudacentral.org)", "immediate = []"}, false},
		{"immediate zone alone below threshold",
			"[dnsbl]\nzones = [\"zen.spamhaus.org=127.0.0.[2..11]*2\", \"b.barracudacentral.org*2\"]\nthreshold = 3\n",
			[]string{"t.toml: policy.immediate[0].zone: zone zen.spamhaus.org adds at most 2", "fires only when other zones list the client too"}, false},
		{"allowlist everything v4", "[ban]\n\nallowlist = [\"192.0.2.0/24\", \"0.0.0.0/0\"]\n",
			[]string{"t.toml:3: ban.allowlist: 0.0.0.0/0 is very broad", "every IPv4 address", "never banned nor even checked against the DNSBLs"}, false},
		{"allowlist everything v6", "[ban]\nallowlist = [\"::/0\"]\n", []string{"::/0 is very broad", "every IPv6 address"}, false},
		{"allowlist /7 and /15", "[ban]\nallowlist = [\"10.0.0.0/7\", \"2000::/15\", \"10.0.0.0/8\", \"2001::/16\"]\n",
			[]string{"10.0.0.0/7 is very broad", "1/128 of the IPv4 Internet", "2000::/15 is very broad"}, false},
		{"fail_action rejects", "[policy]\nrequest_timeout = \"3s\"\nfail_action = \"REJECT try later\"\n",
			[]string{"t.toml:3: policy.fail_action: \"REJECT try later\" rejects the mail for good", "request_timeout (3s)", "DUNNO"}, false},
		{"dns_error_action defers", "[policy]\ndns_error_action = \"DEFER_IF_PERMIT DNSBL lookup failed\"\n",
			[]string{"t.toml:2: policy.dns_error_action:", "refuses the mail for now (4xx", "every DNS hiccup"}, false},
		{"dns_error_action 5xx", "[policy]\ndns_error_action = \"554 5.7.1 no\"\n", []string{"policy.dns_error_action", "5xx"}, false},
		{"fail_action discards", "[policy]\nfail_action = \"DISCARD\"\n", []string{"policy.fail_action", "throws the mail away"}, false},
		{"dns_error_action without zones", "[dnsbl]\nzones = []\n\n[policy]\ndns_error_action = \"DEFER\"\n", nil, false},
		{"ssh port", "[firewall]\nports = [25, 22, 587]\n",
			[]string{"t.toml:2: firewall.ports: 22 (SSH): not a mail port", "banner blocks these ports for banned clients"}, false},
		{"mail ports only", "[firewall]\nports = [25, 465, 587]\n\n[logwatch]\nignore_services = []\n", nil, false},
		{"submission ports firewalled, their rejects ignored", "[firewall]\nports = [25, 587]\n",
			[]string{"t.toml:2: firewall.ports: [firewall] ports blocks 587 for banned clients, but [logwatch] ignore_services holds \"submission\", \"submissions\", \"smtps\"", "set ignore_services = [] under [logwatch]"}, false},
		{"submissions port firewalled, smtps ignored", "[firewall]\nports = [25, 465, 587]\n\n[logwatch]\nignore_services = [\"smtps\"]\n",
			[]string{"t.toml:5: logwatch.ignore_services: [firewall] ports blocks 465 and 587", "holds \"smtps\""}, false},
		{"submission ignored, port 25 only", "[logwatch]\nignore_services = [\"submission\"]\n", nil, false},
		{"mixed-case service, as logwatch compares", "[firewall]\nports = [25, 587]\n\n[logwatch]\nignore_services = [\"Submission\"]\n",
			[]string{"t.toml:5: logwatch.ignore_services: [firewall] ports blocks 587", "holds \"Submission\""}, false},
		{"submission ports, dry run", "[firewall]\nbackend = \"none\"\nports = [25, 587]\n", nil, false},
		{"dnsbl_action accepts", "[policy]\ndnsbl_action = \"DUNNO\"\n",
			[]string{"t.toml:2: policy.dnsbl_action: \"DUNNO\" does not refuse mail from clients the DNSBLs list, it lets the mail through", "554 5.7.1"}, false},
		{"dnsbl_action OK", "[policy]\ndnsbl_action = \"ok\"\n", []string{"policy.dnsbl_action: \"ok\" does not refuse"}, false},
		{"dnsbl_action warns only", "[policy]\ndnsbl_action = \"WARN listed on {zone}\"\n", []string{"policy.dnsbl_action: \"WARN listed on {zone}\""}, false},
		{"dnsbl_action without zones", "[dnsbl]\nzones = []\n\n[policy]\ndnsbl_action = \"DUNNO\"\n", nil, false},
		{"dnsbl_action defers", "[policy]\ndnsbl_action = \"450 4.7.1 try later ({zone})\"\nbanned_action = \"DEFER_IF_PERMIT banned\"\n", nil, false},
		{"banned_action accepts", "[policy]\nbanned_action = \"PREPEND X-Banned: yes\"\n",
			[]string{"t.toml:2: policy.banned_action: \"PREPEND X-Banned: yes\" does not refuse mail from a banned client", "it lets the mail through"}, false},
		{"banned_action discards", "[policy]\nbanned_action = \"DISCARD\"\n", []string{"policy.banned_action", "throws the mail away"}, false},
		{"banned_action rejects", "[policy]\nbanned_action = \"REJECT go away\"\n", nil, false},
		{"request_timeout at Postfix's limit", "[policy]\nrequest_timeout = \"10s\"\n",
			[]string{"t.toml:2: policy.request_timeout: 10s is not below the 10s Postfix waits", "default_action"}, false},
		{"request_timeout over Postfix's limit", "[policy]\nrequest_timeout = \"1m\"\n", []string{"policy.request_timeout: 1m0s"}, false},
		{"request_timeout below Postfix's limit", "[policy]\nrequest_timeout = \"9.5s\"\n", nil, false},
		{"ssh port, dry run", "[firewall]\nbackend = \"none\"\nports = [22]\n", nil, false},
		{"listen on every address", "[policy]\nlisten = [\"inet:0.0.0.0:10040\", \"unix:/run/banner/policy.sock\"]\n",
			[]string{"t.toml:2: policy.listen: \"inet:0.0.0.0:10040\" listens on every address of this host", "allow_peers (127.0.0.0/8, ::1) still decides"}, false},
		{"listen on a public address, open peers", "[policy]\nlisten = [\"[2001:db8::25]:10040\"]\nallow_peers = [\"::/0\"]\n",
			[]string{"listens on 2001:db8::25", "::/0 lets in almost anyone"}, false},
		{"pattern skipping to the client's text", "[[logwatch.pattern]]\nname = \"sasl\"\nregex = 'reject: .*\\[<HOST>\\]: SASL'\n",
			[]string{"t.toml:3: logwatch.pattern[0].regex: pattern \"sasl\" may count an address a client wrote", "\".*\" before <HOST>"}, false},
		{"pattern after helo=", "[[logwatch.pattern]]\nname = \"h\"\nregex = '^NOQUEUE: reject: RCPT from \\S+: 450 x; helo=<\\[<HOST>\\]>'\n",
			[]string{"logwatch.pattern[0].regex", "after \"helo=\""}, false},
		{"pattern spelled out", "[[logwatch.pattern]]\nname = \"sasl\"\nregex = '^warning: [-._\\w]+\\[<HOST>\\](?::\\d+)?: SASL .* failed'\n", nil, false},
		{"listen on loopback", "[policy]\nlisten = [\"inet:127.0.0.1:10040\", \"[::1]:10040\", \"127.0.0.2:10041\"]\n", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("t.toml", []byte(tt.text))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			ws := f.Warnings()
			text := warningText(ws)
			if len(tt.want) == 0 {
				if len(ws) != 0 {
					t.Errorf("unexpected warnings:\n%s", text)
				}
				return
			}
			rest := text
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Errorf("warnings lack %q (in order):\n%s", w, text)
					return
				}
				rest = rest[i+len(w):]
			}
			if ws[0].LoggedByDaemon != tt.daemon {
				t.Errorf("LoggedByDaemon = %v, want %v", ws[0].LoggedByDaemon, tt.daemon)
			}
		})
	}
}

// TestCrossErrors: combinations that can never do what they say are
// errors, naming the key the file set.
func TestCrossErrors(t *testing.T) {
	tests := []struct {
		name, text string
		want       []string
	}{
		{"zone weight below threshold", "[dnsbl]\nzones = [\"zen.spamhaus.org\"]\n",
			[]string{"t.toml:2: dnsbl.zones:", "add up to 1 at most, below threshold 3", "never reject"}},
		{"threshold raised over the zones", "[dnsbl]\nthreshold = 4\n",
			[]string{"t.toml:2: dnsbl.threshold:", "add up to 3 at most, below threshold 4"}},
		{"several zones still short", "[dnsbl]\nzones = [\"a.example.org*1\", \"b.example.org*1.5\", \"c.example.org*-5\"]\nthreshold = 3\n\n[policy]\nimmediate = []\n",
			[]string{"dnsbl.zones:", "add up to 2.5 at most"}},
		{"immediate zone typo", "[[policy.immediate]]\nzone = \"zen.spamhaus.com\"\ncodes = \"127.0.0.[4..7]\"\nbantime = \"3d\"\n",
			[]string{"t.toml:2: policy.immediate[0].zone:", "\"zen.spamhaus.com\" is not in dnsbl.zones (zen.spamhaus.org)", "can never fire"}},
		{"immediate zone in capitals", "[[policy.immediate]]\nzone = \"zen.spamhaus.org\"\ncodes = \"127.0.0.2\"\nbantime = \"1h\"\n\n[[policy.immediate]]\nzone = \"ZEN.spamhaus.org.\"\ncodes = \"127.0.0.4\"\nbantime = \"1h\"\n",
			[]string{"t.toml:7: policy.immediate[1].zone:", "write it as \"zen.spamhaus.org\""}},
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
	// Not errors: DNSBL off (the built-in immediate rule then cannot fire,
	// as asked), report-only zones, and zones that reach the threshold
	// only together.
	for _, text := range []string{
		"[dnsbl]\nzones = []\n",
		"[dnsbl]\nzones = [\"zen.spamhaus.org*0\"]\n\n[policy]\nimmediate = []\n",
		"[dnsbl]\nzones = [\"zen.spamhaus.org=127.0.0.[2..11]*1.5\", \"b.barracudacentral.org*1.5\"]\n",
		"[dnsbl]\nzones = [\"zen.spamhaus.org=127.0.0.[2..11]*0.1\", \"zen.spamhaus.org=127.0.0.[4..7]*0.2\"]\nthreshold = 0.3\n",
	} {
		if _, err := Parse("t.toml", []byte(text)); err != nil {
			t.Errorf("Parse(%q): %v", text, err)
		}
	}
}
