package firewall

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// This file is the command layer for ipset: the commands the backends run
// and the parsers of what ipset prints.

// ipsetType is the set type both sets use: it takes single addresses and
// prefixes and supports per-entry timeouts.
const ipsetType = "hash:net"

// haveIPSet reports whether the ipset command is installed.
func haveIPSet() bool {
	_, err := exec.LookPath("ipset")
	return err == nil
}

// setNames lists the names of all sets.
func (r *runner) setNames(ctx context.Context) ([]string, error) {
	out, err := r.run(ctx, nil, "ipset", "list", "-n")
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

// setHeader returns `ipset list -t set` output: the set's header, without
// its members.
func (r *runner) setHeader(ctx context.Context, set string) ([]byte, error) {
	return r.run(ctx, nil, "ipset", "list", "-t", set)
}

// createSet creates a hash:net set of family ("inet" or "inet6") with
// timeout support, unless it exists.
func (r *runner) createSet(ctx context.Context, set, family string, maxElem int) error {
	_, err := r.run(ctx, nil, "ipset", "create", set, ipsetType, "family", family,
		"timeout", "0", "maxelem", strconv.Itoa(maxElem), "-exist")
	return err
}

// ipsetRestore feeds add/del lines to one `ipset restore -exist`.
func (r *runner) ipsetRestore(ctx context.Context, lines []byte) error {
	_, err := r.run(ctx, lines, "ipset", "restore", "-exist")
	return err
}

// saveSet returns `ipset save set` output.
func (r *runner) saveSet(ctx context.Context, set string) ([]byte, error) {
	return r.run(ctx, nil, "ipset", "save", set)
}

// destroySet destroys set. The kernel may release the set reference of a
// just-deleted rule a moment later, so "in use" is retried for about a
// second; the last error is returned.
func (r *runner) destroySet(ctx context.Context, set string) error {
	var err error
	for try := 0; ; try++ {
		_, err = r.run(ctx, nil, "ipset", "destroy", set)
		if err == nil || try == 10 || !strings.Contains(err.Error(), "in use") {
			return err
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
}

// setReferences returns the kernel's reference count of set (`ipset list
// -t`, "References"; 0 when not shown) once it is at most want, or, if it
// stays above, the count after about a second: the kernel may drop the
// reference of a rule deleted a moment ago a little later. out, if not nil,
// is a listing already taken, used for the first look.
func (r *runner) setReferences(ctx context.Context, set string, want int, out []byte) (int, error) {
	for try := 0; ; try++ {
		if out == nil {
			var err error
			if out, err = r.setHeader(ctx, set); err != nil {
				return 0, err
			}
		}
		n, ok := ipsetReferences(out)
		if !ok || n <= want || try == 10 {
			if !ok {
				n = 0
			}
			return n, nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return 0, err
		}
		out = nil
	}
}

// sleep waits for d or until ctx ends, and then returns ctx.Err().
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
	return ctx.Err()
}

// notSetUp marks an ipset error about a missing set with ErrNotSetUp.
func notSetUp(err error) error {
	if strings.Contains(err.Error(), "does not exist") {
		return fmt.Errorf("%w: %w", ErrNotSetUp, err)
	}
	return err
}

type ipsetHeader struct {
	typ, family string
	maxelem     int
	timeout     bool
}

// parseIPSetHeader reads `ipset list -t NAME` output.
func parseIPSetHeader(out []byte) ipsetHeader {
	var h ipsetHeader
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Type":
			h.typ = v
		case "Header":
			w := strings.Fields(v)
			for i := 0; i < len(w); i++ {
				switch w[i] {
				case "family":
					if i+1 < len(w) {
						h.family = w[i+1]
					}
				case "maxelem":
					if i+1 < len(w) {
						h.maxelem, _ = strconv.Atoi(w[i+1])
					}
				case "timeout":
					h.timeout = true
				}
			}
		}
	}
	return h
}

// ipsetEntries reads "Number of entries: N" from `ipset list -t` output.
func ipsetEntries(out []byte) (int, bool) {
	return headerInt(out, "Number of entries:")
}

// ipsetReferences reads "References: N" from `ipset list -t` output.
func ipsetReferences(out []byte) (int, bool) {
	return headerInt(out, "References:")
}

// headerInt reads the number after key at the start of a line of out.
func headerInt(out []byte, key string) (int, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			return n, err == nil
		}
	}
	return 0, false
}

// ipsetElem writes a prefix as ipset takes it: a single address bare.
func ipsetElem(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// ipsetTimeout converts a timeout to ipset seconds: rounded up, 0 for
// permanent, capped at MaxIPSetTimeout.
func ipsetTimeout(d time.Duration) int64 {
	return min(seconds(d), MaxIPSetTimeout)
}

// parseIPSetSave reads the "add SET ELEM [timeout N] ..." lines of
// `ipset save` output for set. Entries marked nomatch are exceptions, not
// bans, and are skipped.
func parseIPSetSave(out []byte, set string) ([]Entry, error) {
	var es []Entry
	prefix := "add " + set + " "
	for lineNo, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		w := strings.Fields(line[len(prefix):])
		if len(w) == 0 {
			return nil, fmt.Errorf("ipset save line %d: no element in %q", lineNo+1, line)
		}
		p, err := parsePrefixOrAddr(w[0])
		if err != nil {
			return nil, fmt.Errorf("ipset save line %d: %w", lineNo+1, err)
		}
		e := Entry{Prefix: p}
		skip := false
		for i := 1; i < len(w); i++ {
			switch w[i] {
			case "timeout":
				if i+1 >= len(w) {
					return nil, fmt.Errorf("ipset save line %d: timeout without value in %q", lineNo+1, line)
				}
				n, err := strconv.ParseUint(w[i+1], 10, 32)
				if err != nil {
					return nil, fmt.Errorf("ipset save line %d: bad timeout %q", lineNo+1, w[i+1])
				}
				e.Timeout = time.Duration(n) * time.Second
				i++
			case "nomatch":
				skip = true
			}
		}
		if !skip {
			es = append(es, e)
		}
	}
	return es, nil
}
