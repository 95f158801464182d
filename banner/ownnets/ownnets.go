// Package ownnets finds the networks a mail server calls its own, so that
// banner never bans them: this host's interface addresses and Postfix's
// mynetworks (the clients Postfix itself trusts with permit_mynetworks).
package ownnets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Local returns this host's interface addresses, each as a single-address
// prefix (/32 or /128). Only the addresses are returned, not the subnets
// they sit in: on a hosted server the neighbours in a /24 are strangers.
func Local() ([]netip.Prefix, error) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, fmt.Errorf("listing interface addresses: %w", err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap().WithZone("")
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out, nil
}

// Skipped is a mynetworks entry that is not turned into a prefix, and why.
type Skipped struct {
	Entry, Reason string
}

func (s Skipped) String() string { return fmt.Sprintf("%q: %s", s.Entry, s.Reason) }

// maxPatternFile bounds a "/file/name" pattern file.
const maxPatternFile = 1 << 20

// ParseMynetworks turns the value of Postfix's mynetworks parameter (as
// printed by "postconf -xh mynetworks") into prefixes. The syntax is
// postconf(5)'s: patterns separated by commas and/or white space; IPv4
// "a.b.c.d" or "a.b.c.d/len"; IPv6 inside brackets, "[addr]" or
// "[addr]/len"; "/file/name" for a file of such patterns (read with
// readFile, "#" comments allowed). What cannot be evaluated here is
// skipped and reported, never guessed:
//
//   - "type:table" lookups (cidr:, hash:, ...): list those networks in
//     [ban] allowlist yourself;
//   - "!pattern" exclusions: ignoring one allows more than Postfix trusts,
//     which is the safe direction for an allowlist;
//   - anything else that is not an address or network.
//
// IPv4-mapped IPv6 networks ([::ffff:127.0.0.0]/104) come back as IPv4.
func ParseMynetworks(value string, readFile func(string) ([]byte, error)) ([]netip.Prefix, []Skipped) {
	var nets []netip.Prefix
	var skipped []Skipped
	for _, f := range splitPatterns(value) {
		if strings.HasPrefix(f, "/") {
			n, s := parseFile(f, readFile)
			nets = append(nets, n...)
			skipped = append(skipped, s...)
			continue
		}
		p, err := parsePattern(f)
		if err != nil {
			skipped = append(skipped, Skipped{f, err.Error()})
			continue
		}
		nets = append(nets, p)
	}
	return nets, skipped
}

func parseFile(name string, readFile func(string) ([]byte, error)) ([]netip.Prefix, []Skipped) {
	if readFile == nil {
		return nil, []Skipped{{name, "pattern files are not read here"}}
	}
	data, err := readFile(name)
	if err != nil {
		return nil, []Skipped{{name, err.Error()}}
	}
	if len(data) > maxPatternFile {
		return nil, []Skipped{{name, fmt.Sprintf("larger than %d bytes", maxPatternFile)}}
	}
	var nets []netip.Prefix
	var skipped []Skipped
	for i, line := range bytes.Split(data, []byte("\n")) {
		if c := bytes.IndexByte(line, '#'); c >= 0 {
			line = line[:c]
		}
		for _, f := range splitPatterns(string(line)) {
			p, err := parsePattern(f)
			if err != nil {
				skipped = append(skipped, Skipped{fmt.Sprintf("%s:%d: %s", name, i+1, f), err.Error()})
				continue
			}
			nets = append(nets, p)
		}
	}
	return nets, skipped
}

func splitPatterns(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool {
		return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r'
	})
}

// parsePattern parses one address or network pattern.
func parsePattern(f string) (netip.Prefix, error) {
	switch {
	case strings.HasPrefix(f, "!"):
		return netip.Prefix{}, errors.New("exclusion ignored (banner allows the wider network)")
	case strings.HasPrefix(f, "["):
		end := strings.IndexByte(f, ']')
		if end < 0 {
			return netip.Prefix{}, errors.New("missing ']'")
		}
		addr, rest := f[1:end], f[end+1:]
		if rest != "" && !strings.HasPrefix(rest, "/") {
			return netip.Prefix{}, errors.New("text after ']'")
		}
		return toPrefix(addr, strings.TrimPrefix(rest, "/"), rest != "")
	case strings.Contains(f, ":"):
		if _, err := netip.ParsePrefix(f); err == nil {
			return netip.Prefix{}, errors.New("IPv6 must be written inside [] (Postfix reads this as type:table)")
		}
		if _, err := netip.ParseAddr(f); err == nil {
			return netip.Prefix{}, errors.New("IPv6 must be written inside [] (Postfix reads this as type:table)")
		}
		return netip.Prefix{}, errors.New("type:table lookups are not evaluated; put these networks in [ban] allowlist")
	}
	addr, bits, hasBits := strings.Cut(f, "/")
	if a, err := netip.ParseAddr(addr); err != nil || !a.Is4() {
		return netip.Prefix{}, errors.New("not an IPv4 address or network (IPv6 goes inside [])")
	}
	return toPrefix(addr, bits, hasBits)
}

func toPrefix(addr, bits string, hasBits bool) (netip.Prefix, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("not an IP address: %q", addr)
	}
	n := a.BitLen()
	if hasBits {
		var ok bool
		if n, ok = parseBits(bits, a.BitLen()); !ok {
			return netip.Prefix{}, fmt.Errorf("bad prefix length %q", bits)
		}
	}
	if a.Is4In6() {
		if n < 96 {
			return netip.Prefix{}, fmt.Errorf("IPv4-mapped network shorter than /96")
		}
		a, n = a.Unmap(), n-96
	}
	// Postfix refuses host bits in a network ("non-null host address bits");
	// here the network is simply taken.
	return netip.PrefixFrom(a, n).Masked(), nil
}

func parseBits(s string, max int) (int, bool) {
	if s == "" || len(s) > 3 {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, n <= max
}

// PostfixMynetworks runs "postconf -xh mynetworks" (postconf from PATH, or
// /usr/sbin/postconf), with "-c configDir" unless configDir is "", and
// parses its output with ParseMynetworks, reading pattern files from disk.
// It gives up after timeout.
func PostfixMynetworks(ctx context.Context, configDir string, timeout time.Duration) ([]netip.Prefix, []Skipped, error) {
	path, err := exec.LookPath("postconf")
	if err != nil {
		path = "/usr/sbin/postconf"
		if _, serr := os.Stat(path); serr != nil {
			return nil, nil, fmt.Errorf("postconf not found (is Postfix installed?): %w", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var stderr bytes.Buffer
	args := []string{"-xh", "mynetworks"}
	if configDir != "" {
		args = append([]string{"-c", configDir}, args...)
	}
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w: %s", path, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	nets, skipped := ParseMynetworks(string(out), readPatternFile)
	return nets, skipped, nil
}

// readPatternFile reads a regular file of at most maxPatternFile+1 bytes
// (so ParseMynetworks can tell it is too big); a FIFO or device would
// block start-up and is refused.
func readPatternFile(name string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer; on a regular file it changes nothing.
	f, err := os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("not a regular file (%v)", fi.Mode().Type())
	}
	return io.ReadAll(io.LimitReader(f, maxPatternFile+1))
}
