package banner

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ParseDuration parses Go durations plus the suffixes d (24h) and w (7d),
// alone or leading a Go duration: "1w", "2d12h", "36h".
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fmt.Errorf("empty duration")
	}
	var total time.Duration
	rest := s
	for _, unit := range []struct {
		suffix byte
		d      time.Duration
	}{{'w', 7 * 24 * time.Hour}, {'d', 24 * time.Hour}} {
		i := strings.IndexByte(rest, unit.suffix)
		if i < 0 {
			continue
		}
		n, err := strconv.ParseUint(rest[:i], 10, 16)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q: want forms like 90s, 10m, 1h, 2d, 1w", s)
		}
		if time.Duration(n) > MaxDuration/unit.d {
			return 0, fmt.Errorf("invalid duration %q: longer than the longest banner takes (%s)", s, FormatDuration(MaxDuration))
		}
		total += time.Duration(n) * unit.d
		rest = rest[i+1:]
	}
	if rest != "" {
		if strings.HasPrefix(rest, "-") {
			return 0, fmt.Errorf("invalid duration %q: negative", s)
		}
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("invalid duration %q: want forms like 90s, 10m, 1h, 2d, 1w", s)
		}
		if d < 0 {
			return 0, fmt.Errorf("invalid duration %q: negative", s)
		}
		total += d
	}
	if total < 0 || total > MaxDuration {
		return 0, fmt.Errorf("invalid duration %q: longer than the longest banner takes (%s)", s, FormatDuration(MaxDuration))
	}
	return total, nil
}

// MaxDuration is the longest duration a file or command line may give: ten
// years. Anything longer is surely a typo, and Go's durations overflow past
// about 292 years.
const MaxDuration = 10 * 365 * 24 * time.Hour

// FormatDuration writes d the way the file does, in weeks and days when it
// is that long: 30d, 2w3d, 1d12h, 90s.
func FormatDuration(d time.Duration) string {
	if d < 24*time.Hour || d%time.Second != 0 {
		return d.String()
	}
	var b strings.Builder
	const day, week = 24 * time.Hour, 7 * 24 * time.Hour
	if w := d / week; w > 0 && d%week == 0 {
		return fmt.Sprintf("%dw", w)
	}
	if days := d / day; days > 0 {
		fmt.Fprintf(&b, "%dd", days)
		d -= days * day
	}
	if d > 0 {
		s := d.String() // "12h0m0s", "1m30s"
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		b.WriteString(s)
	}
	return b.String()
}
