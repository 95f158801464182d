// Command mailloggen writes a synthetic but realistic Postfix mail.log, for
// benchmarks and for trying `banner test-log`: smtpd sessions (connect,
// client=, disconnect), cleanup, qmgr, smtp/lmtp deliveries, postscreen and
// dnsblog lines, TLS and anvil noise, and a share of rejects of every kind
// banner knows (RBL, unknown user, postscreen DNSBL and PREGREET, too many
// errors) plus rejects it does not count (relay, HELO, banner's own policy
// rejects). Its output is deterministic for a given -seed.
//
// Usage:
//
//	mailloggen [-lines 100000] [-reject-ratio 0.05] [-seed 1] [-rfc3339] [-o file]
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	lines := flag.Int("lines", 100000, "number of lines to write")
	ratio := flag.Float64("reject-ratio", 0.05, "share of reject lines, 0..1")
	seed := flag.Uint64("seed", 1, "random seed (same seed, same output)")
	rfc := flag.Bool("rfc3339", false, "RFC 3339 high-precision timestamps (rsyslog) instead of classic syslog ones")
	out := flag.String("o", "-", "output file, - for standard output")
	start := flag.String("start", "2026-11-24T00:00:00Z", "time of the first line (RFC 3339)")
	flag.Parse()
	if err := run(*lines, *ratio, *seed, *rfc, *out, *start); err != nil {
		fmt.Fprintln(os.Stderr, "mailloggen:", err)
		os.Exit(1)
	}
}

func run(lines int, ratio float64, seed uint64, rfc bool, out, start string) error {
	if lines < 0 {
		return fmt.Errorf("-lines %d: must be >= 0", lines)
	}
	if ratio < 0 || ratio > 1 {
		return fmt.Errorf("-reject-ratio %v: must be within 0..1", ratio)
	}
	t0, err := time.Parse(time.RFC3339, start)
	if err != nil {
		return fmt.Errorf("-start %q: %w", start, err)
	}
	var w io.Writer = os.Stdout
	if out != "-" {
		f, err := os.Create(out)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	bw := bufio.NewWriterSize(w, 1<<16)
	g := newGen(seed, ratio, rfc, t0)
	for i := 0; i < lines; i++ {
		g.line(bw)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	if f, ok := w.(*os.File); ok && out != "-" {
		return f.Close()
	}
	return nil
}
