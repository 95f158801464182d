package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/daemon"
	"github.com/banner-mta/banner/banner/logwatch"
	"github.com/banner-mta/banner/dnsbl"
)

// TestStatusTextLogFiles: each state of a watched file reads as what it
// is, in particular a path rotated to a file that cannot be opened while
// the previous file is still read (not "NOT READ" alone).
func TestStatusTextLogFiles(t *testing.T) {
	st := daemon.Status{LogWatch: &logwatch.Stats{
		Lines: 3, NoSyslogPrefix: 2,
		Files: []logwatch.FileState{
			{Path: "/var/log/mail.log", Open: true, Inode: 11, Offset: 300, Size: 300, Lines: 3},
			{Path: "/var/log/denied.log", Error: "open /var/log/denied.log: permission denied"},
			{Path: "/var/log/missing.log"},
			{Path: "/var/log/rotated.log", Error: "open /var/log/rotated.log: permission denied", Inode: 12, Offset: 40, Lines: 2},
		},
		Lags: []logwatch.Lag{{Source: "/var/log/mail.log", Lag: 1500 * time.Millisecond, At: time.Date(2026, 12, 2, 10, 0, 0, 0, time.Local)},
			{Source: "/var/log/denied.log"}},
	}}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := writeStatusText(&b, raw); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"file /var/log/mail.log    inode 11, offset 300 of 300 bytes, 3 lines; no line yet; lag 1.5s (of the newest timed entry, at 10:00:00)",
		"file /var/log/denied.log  NOT READ: open /var/log/denied.log: permission denied",
		"file /var/log/missing.log  not opened yet",
		"file /var/log/rotated.log  NEW FILE NOT READ: open /var/log/rotated.log: permission denied; still reading the previous file (inode 12, offset 40, 2 lines)",
		"2 lines without a syslog prefix",
	} {
		if !strings.Contains(strings.Join(strings.Fields(out), " "), strings.Join(strings.Fields(want), " ")) {
			t.Errorf("status lacks %q:\n%s", want, out)
		}
	}
}

// TestStatusTextFirewallChoice: status says which backend runs and why
// ("auto"), and where it drops.
func TestStatusTextFirewallChoice(t *testing.T) {
	st := daemon.Status{Firewall: daemon.FirewallStatus{Backend: "nftables",
		Choice: "nftables (auto: the nftables netlink API works; iptables is iptables v1.8.9 (nf_tables))",
		Chain:  "inet banner input", Ports: []uint16{25},
		SASL: &daemon.FirewallGroup{Chain: "inet banner_sasl input", Ports: []uint16{25, 465, 587}}}}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := writeStatusText(&b, raw); err != nil {
		t.Fatal(err)
	}
	out := strings.Join(strings.Fields(b.String()), " ")
	for _, want := range []string{
		"firewall nftables (auto: the nftables netlink API works; iptables is iptables v1.8.9 (nf_tables))",
		"chain inet banner input, tcp ports [25]",
		"sasl bans: inet banner_sasl input, tcp ports [25 465 587]",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

// TestStatusTextZoneQueryTimes: a zone's line gives the bucket bounds
// under which half and 99% of its queries answered.
func TestStatusTextZoneQueryTimes(t *testing.T) {
	buckets := make([]uint64, len(dnsbl.LatencyBounds))
	for i := range buckets {
		// 60 within 5ms, 99 within 100ms, 100 within 1s
		switch b := dnsbl.LatencyBounds[i]; {
		case b >= time.Second:
			buckets[i] = 100
		case b >= 100*time.Millisecond:
			buckets[i] = 99
		case b >= 5*time.Millisecond:
			buckets[i] = 60
		}
	}
	st := daemon.Status{DNSBL: dnsbl.Stats{Zones: []dnsbl.ZoneStats{
		{Zone: "zen.spamhaus.org", Queries: 100, Latency: dnsbl.Latency{Count: 100, Buckets: buckets}},
		{Zone: "idle.test"},
	}}}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := writeStatusText(&b, raw); err != nil {
		t.Fatal(err)
	}
	out := strings.Join(strings.Fields(b.String()), " ")
	for _, want := range []string{
		"zone zen.spamhaus.org 100 queries (half within 5ms, 99% within 100ms), 0 listings",
		"zone idle.test 0 queries, 0 listings",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}
