package config

import (
	"fmt"
	"testing"

	"github.com/banner-mta/banner/banner/dnslist"
	"github.com/banner-mta/banner/banner/engine"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/logwatch"
	"github.com/banner-mta/banner/banner/policy"
	"github.com/banner-mta/banner/banner/recipients"
	"github.com/banner-mta/banner/dnsbl"
	"github.com/banner-mta/banner/policyd"
)

// TestDefaultsAreThePackages: the file's defaults, mapped onto each
// package's Config, are that package's DefaultConfig, so that a default
// lives in one place (the package) and the file only spells it.
func TestDefaultsAreThePackages(t *testing.T) {
	f := Default()
	pc, err := f.PolicyConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	lc, err := f.LogWatchConfig(nil)
	if err != nil {
		t.Fatal(err)
	}
	lcDefault := logwatch.DefaultConfig()
	lcDefault.OwnRejectMarker = lc.OwnRejectMarker // derived from the policy's actions
	lcDefault.Location = lc.Location
	for _, tc := range []struct {
		name      string
		file, pkg any
	}{
		{"policyd", f.PolicydConfig(nil), policyd.DefaultConfig()},
		{"policy", pc, policy.DefaultConfig()},
		{"dnsbl", f.DNSBLConfig(nil), dnsbl.DefaultConfig()},
		{"dnslist", f.DNSListConfig(nil), dnslist.DefaultConfig()},
		{"engine", f.EngineConfig(nil), engine.DefaultConfig()},
		{"firewall", f.FirewallConfig(nil), firewall.DefaultConfig()},
		{"logwatch", lc, lcDefault},
		{"recipients", f.RecipientsConfig(nil), recipients.DefaultConfig()},
	} {
		if got, want := fmt.Sprintf("%+v", tc.file), fmt.Sprintf("%+v", tc.pkg); got != want {
			t.Errorf("%s: file defaults give\n%s\nthe package's DefaultConfig is\n%s", tc.name, got, want)
		}
	}
}
