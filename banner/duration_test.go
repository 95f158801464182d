package banner

import (
	"testing"
	"time"
)

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"90s", 90 * time.Second, true},
		{"1h30m", 90 * time.Minute, true},
		{"2d", 48 * time.Hour, true},
		{"1w", 7 * 24 * time.Hour, true},
		{"1w2d3h", 9*24*time.Hour + 3*time.Hour, true},
		{"", 0, false},
		{"d", 0, false},
		{"1x", 0, false},
		{"-1d", 0, false},
		{"99999999d", 0, false},
		{"\x00", 0, false},
		// Overflow and absurd lengths (issue 12, item 12): once 40000w was
		// ~182 years and 20000w "negative".
		{"40000w", 0, false},
		{"20000w", 0, false},
		{"522w", 0, false},
		{"520w", 520 * 7 * 24 * time.Hour, true},
		{"3650d", MaxDuration, true},
		{"3650d1s", 0, false},
		{"1d-1h", 0, false},
		{"87601h", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseDuration(tt.in)
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for _, tt := range []struct {
		in   time.Duration
		want string
	}{
		{90 * time.Second, "1m30s"},
		{720 * time.Hour, "30d"},
		{7 * 24 * time.Hour, "1w"},
		{36 * time.Hour, "1d12h"},
		{24*time.Hour + 90*time.Second, "1d1m30s"},
		{3 * 24 * time.Hour, "3d"},
	} {
		if got := FormatDuration(tt.in); got != tt.want {
			t.Errorf("FormatDuration(%v) = %q, want %q", tt.in, got, tt.want)
		}
		if back, err := ParseDuration(FormatDuration(tt.in)); err != nil || back != tt.in {
			t.Errorf("ParseDuration(FormatDuration(%v)) = %v, %v", tt.in, back, err)
		}
	}
}
