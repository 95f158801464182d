package main

import (
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/control"
)

// TestBanTableLongDurations: a ban of weeks is printed in days, not as
// hundreds of hours.
func TestBanTableLongDurations(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		left time.Duration
		want string
	}{
		{30 * time.Minute, "30m0s"},
		{36 * time.Hour, "1d12h"},
		{30 * 24 * time.Hour, "30d"},
		{14 * 24 * time.Hour, "2w"},
		{7*24*time.Hour + 90*time.Second, "7d1m30s"},
	}
	for _, tt := range tests {
		var b strings.Builder
		writeBanTable(&b, []control.BanInfo{{
			Prefix: "192.0.2.1/32", Since: now, Until: now.Add(tt.left), Count: 1, Source: "cli", Reason: "test",
		}}, now)
		if !strings.Contains(b.String(), "  "+tt.want+"  ") {
			t.Errorf("left %v: table does not show %q:\n%s", tt.left, tt.want, b.String())
		}
	}
}

// TestBanTableFleetNode: a ban heard from the fleet names the node it
// came from; this node's own bans keep their source.
func TestBanTableFleetNode(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	var b strings.Builder
	writeBanTable(&b, []control.BanInfo{
		{Prefix: "192.0.2.1/32", Since: now, Until: now.Add(time.Hour), Count: 1, Source: "fleet", Node: "mx1", Reason: "dictionary attack"},
		{Prefix: "192.0.2.2/32", Since: now, Until: now.Add(time.Hour), Count: 1, Source: "log", Reason: "own"},
	}, now)
	lines := strings.Split(b.String(), "\n")
	if !strings.Contains(lines[1], "  fleet:mx1  ") || !strings.Contains(lines[2], "  log  ") {
		t.Errorf("table:\n%s", b.String())
	}
}

// TestBanTablePorts: each ban shows the TCP ports it closes.
func TestBanTablePorts(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	var b strings.Builder
	writeBanTable(&b, []control.BanInfo{
		{Prefix: "192.0.2.1/32", Since: now, Until: now.Add(time.Hour), Count: 1, Source: "log", Reason: "sasl", Groups: "sasl", Ports: []uint16{465, 587}},
		{Prefix: "192.0.2.2/32", Since: now, Until: now.Add(time.Hour), Count: 1, Source: "log", Reason: "own", Groups: "main", Ports: []uint16{25}},
		{Prefix: "192.0.2.3/32", Since: now, Until: now.Add(time.Hour), Count: 2, Source: "log", Reason: "both", Groups: "main+sasl", Ports: []uint16{25, 465, 587}},
	}, now)
	lines := strings.Split(b.String(), "\n")
	if !strings.Contains(lines[0], "  PORTS  ") || !strings.Contains(lines[1], "  465,587  ") ||
		!strings.Contains(lines[2], "  25  ") || !strings.Contains(lines[3], "  25,465,587  ") {
		t.Errorf("table:\n%s", b.String())
	}
}
