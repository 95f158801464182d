package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/banner-mta/banner/banner"
)

// TestSASLPorts: [ban.sasl] ports reaches the firewall (its sasl group)
// and the engine (sasl bans close their own ports), and bad values are
// errors naming the key and its line.
func TestSASLPorts(t *testing.T) {
	tests := []struct {
		name     string
		text     string
		want     []uint16 // firewall SASLPorts
		ownPorts bool
		err      string
	}{
		{"default", "", []uint16{25, 465, 587}, true, ""},
		{"submission only", "[ban.sasl]\nports = [465, 587]\n", []uint16{465, 587}, true, ""},
		{"empty: the [firewall] ports", "[ban.sasl]\nports = []\n", []uint16{}, false, ""},
		{"port 0", "[ban.sasl]\nports = [0, 587]\n", nil, false, "t.toml:2: ban.sasl.ports: port 0 is out of range 1..65535"},
		{"twice", "[ban.sasl]\nports = [587, 465, 587]\n", nil, false, "t.toml:2: ban.sasl.ports: port 587 is listed twice"},
		{"too many", "[ban.sasl]\nports = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]\n", nil, false,
			"t.toml:2: ban.sasl.ports: 16 ports, at most 15 fit one multiport match"},
		{"out of range", "[ban.sasl]\nports = [65536]\n", nil, false, "ban.sasl.ports"},
		{"chain too long for the sasl chain", "[firewall]\nchain = \"ABCDEFGHIJKLMNOPQRSTUVWXYZ\"\n", nil, false,
			"t.toml:2: firewall.chain: \"ABCDEFGHIJKLMNOPQRSTUVWXYZ\" is too long for the sasl group's chain"},
		{"long chain, no sasl ports", "[firewall]\nchain = \"ABCDEFGHIJKLMNOPQRSTUVWXYZ\"\n\n[ban.sasl]\nports = []\n", []uint16{}, false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("t.toml", []byte(tt.text))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Parse: %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := f.FirewallConfig(nil).SASLPorts; !slices.Equal(got, tt.want) {
				t.Errorf("firewall SASLPorts = %v, want %v", got, tt.want)
			}
			if got := f.EngineConfig(nil).Kinds[banner.KindSASL].OwnPorts; got != tt.ownPorts {
				t.Errorf("engine sasl OwnPorts = %v, want %v", got, tt.ownPorts)
			}
		})
	}
}

// TestSASLPortsWarning: the warning about SASL bans not closing the
// submission ports is given only when [ban.sasl] ports is empty and
// [firewall] ports lacks them.
func TestSASLPortsWarning(t *testing.T) {
	const on = "[logwatch]\nfiles = [\"/var/log/mail.log\"]\nbuiltin = [\"sasl_auth\"]\n"
	tests := []struct {
		name, text, want string
	}{
		{"own ports (default)", on, ""},
		{"empty, [firewall] ports 25", on + "\n[ban.sasl]\nports = []\n", "t.toml:6: ban.sasl.ports: SASL failures ban clients, but with [ban.sasl] ports = [] on [firewall] ports only, which lack 465 and 587"},
		{"empty, [firewall] ports with 465 and 587", on + "ignore_services = []\n\n[ban.sasl]\nports = []\n\n[firewall]\nports = [25, 465, 587]\n", ""},
		{"ssh in [ban.sasl] ports", on + "\n[ban.sasl]\nports = [587, 22]\n", "t.toml:6: ban.sasl.ports: 22 (SSH): not a port where mail passwords are used"},
		{"imap in [ban.sasl] ports", on + "\n[ban.sasl]\nports = [587, 143, 993]\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse("t.toml", []byte(tt.text))
			if err != nil {
				t.Fatal(err)
			}
			text := warningText(f.Warnings())
			if tt.want == "" && strings.Contains(text, "sasl") || tt.want != "" && !strings.Contains(text, tt.want) {
				t.Errorf("warnings:\n%s\nwant %q", text, tt.want)
			}
		})
	}
}
