package config

import (
	"strings"
	"testing"
)

// TestExtrasErrors: the keys of [dnslist], [ban.sasl] and [[feeds]] are
// named, with their lines, in the errors of a file that gets them wrong.
func TestExtrasErrors(t *testing.T) {
	data := `[dnslist]
listen = "nowhere"
zone = ""
ttl = "0s"

[ban]
bantime_jitter = "30d"

[ban.sasl]
maxretry = 0.0
findtime = "0s"

[[feeds]]
name = "Bad Name"
path = "relative.txt"
interval = "500ms"

[[feeds]]
name = "drop"
path = "/var/lib/banner/drop.txt"

[[feeds]]
name = "drop"
path = "/var/lib/banner/drop2.txt"
`
	_, err := Parse("test.toml", []byte(data))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		"test.toml:2: dnslist.listen: want host:port",
		"test.toml:3: dnslist.zone: must not be empty",
		"test.toml:4: dnslist.ttl: must be between 1s and 24h",
		"test.toml:7: ban.bantime_jitter: must be between 0 (off) and 168h0m0s",
		"test.toml:10: ban.sasl.maxretry: must be > 0",
		"test.toml:11: ban.sasl.findtime: must be at least 1s",
		"test.toml:14: feeds[0].name: want 1-64 of a-z",
		"test.toml:15: feeds[0].path: want an absolute path",
		"test.toml:16: feeds[0].interval: must be at least 1s",
		`test.toml:23: feeds[2].name: "drop": another feed has this name`,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("missing %q in:\n%s", want, msg)
		}
	}
}
