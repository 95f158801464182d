package firewall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"
)

// This file is the command layer of the ipset and iptables backends for
// iptables, ip6tables and iptables-restore: it runs them, bounded and
// logged, and parses what they print. What the rules mean (chains, jumps,
// repair, teardown) is in hooks.go and teardown.go.

// table is the netfilter table every rule of ours lives in.
const table = "filter"

// family is one address family's iptables command.
type family struct {
	name    string // "IPv4" or "IPv6"
	cmd     string // "iptables" or "ip6tables"
	restore string // "iptables-restore" or "ip6tables-restore"
	ipt     *iptables.IPTables
}

// runner runs the firewall commands (iptables and ip6tables through
// go-iptables, iptables-restore, ipset), each bounded by the command
// timeout; a failure is logged at Error with its command and returned
// wrapped with it.
type runner struct {
	timeout  time.Duration // Config.CommandTimeout
	lockWait time.Duration // Config.LockWait
	log      *slog.Logger

	// listHook, if set (tests), rewrites the INPUT listing, as another
	// iptables version might print it.
	listHook func(f *family, lines []string) []string

	// gen counts the changes banner made to the rules through the
	// runner; a listing taken at the same gen (and not long ago) still
	// holds, as far as banner knows. Callers hold the backend's lock,
	// which guards it.
	gen uint64
}

// listingTTL bounds how long a listing handed from one step to the next
// (Setup's check to its removal of foreign rules, that to the List after
// it) is used when banner changed nothing meanwhile.
const listingTTL = 2 * time.Second

// listing is one chain listing and when it was taken.
type listing struct {
	rules  []rule
	exists bool
	gen    uint64
	at     time.Time // when the listing came back
	ok     bool      // taken at all
}

// forget records that banner is changing the rules: listings taken
// before no longer hold.
func (r *runner) forget(*family) { r.gen++ }

// holdsStill reports whether l was taken since banner's last change to
// the rules and less than listingTTL ago.
func (r *runner) holdsStill(l listing) bool {
	return l.ok && l.gen == r.gen && time.Since(l.at) < listingTTL
}

// listChainReusing returns prev's rules if prev still holds (taken since
// banner's last change and less than listingTTL ago), else a fresh
// listing.
func (r *runner) listChainReusing(ctx context.Context, f *family, chain string, prev listing) (listing, error) {
	if r.holdsStill(prev) {
		return prev, nil
	}
	gen := r.gen
	rules, exists, err := r.listChain(ctx, f, chain)
	if err != nil {
		return listing{}, err
	}
	// Aged from when the listing came back: with 100k rules on a loaded
	// machine it takes seconds.
	return listing{rules: rules, exists: exists, gen: gen, at: time.Now(), ok: true}, nil
}

// lockWaitSeconds is the lock wait in whole seconds, at least 1 (0 would
// make iptables wait forever).
func (r *runner) lockWaitSeconds() int {
	return max(int(seconds(r.lockWait)), 1)
}

// newFamily makes the go-iptables handle of IPv4, or IPv6 with v6, and
// checks, by listing INPUT once, that the kernel supports it.
func (r *runner) newFamily(ctx context.Context, v6 bool) (*family, error) {
	f := &family{name: "IPv4", cmd: "iptables", restore: "iptables-restore"}
	proto := iptables.ProtocolIPv4
	if v6 {
		f = &family{name: "IPv6", cmd: "ip6tables", restore: "ip6tables-restore"}
		proto = iptables.ProtocolIPv6
	}
	var ipt *iptables.IPTables
	err := r.bounded(ctx, func() error {
		var err error
		ipt, err = iptables.New(iptables.IPFamily(proto), iptables.Timeout(r.lockWaitSeconds()))
		return err
	})
	if err != nil {
		err = fmt.Errorf("%s is unusable: %w", f.cmd, err)
		r.log.Error("firewall command failed", "cmd", f.cmd+" --version", "err", err)
		return nil, err
	}
	f.ipt = ipt
	// A usable binary may still lack kernel support (no ip6_tables / nf_tables
	// for IPv6): probe the INPUT chain once.
	if err := r.ipt(ctx, f, "-S INPUT", func(i *iptables.IPTables) error {
		_, err := i.List(table, "INPUT")
		return err
	}); err != nil {
		return nil, fmt.Errorf("%s is unusable: %w", f.cmd, err)
	}
	return f, nil
}

// bounded runs fn, giving up after the command timeout or when ctx ends.
// go-iptables takes no context, so a command that hangs past the bound is
// left to finish in the background (its own --wait bounds the lock wait).
func (r *runner) bounded(ctx context.Context, fn func() error) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("gave up after %v: %w", r.timeout, ctx.Err())
	}
}

// ipt runs one go-iptables call, bounded, logging and wrapping a failure
// with the command.
func (r *runner) ipt(ctx context.Context, f *family, what string, fn func(*iptables.IPTables) error) error {
	err := r.bounded(ctx, func() error { return fn(f.ipt) })
	if err == nil {
		return nil
	}
	r.log.Error("firewall command failed", "cmd", f.cmd+" "+what, "err", err)
	return fmt.Errorf("%s %s: %w", f.cmd, what, err)
}

// run runs an external command with stdin, bounded by the command timeout,
// and returns its stdout. A failure is logged with the command and its
// stderr.
func (r *runner) run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stdout, stderr bytes.Buffer
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (command_timeout %v)", ctx.Err(), r.timeout)
		}
		msg := strings.TrimSpace(stderr.String())
		line := name + " " + strings.Join(args, " ")
		r.log.Error("firewall command failed", "cmd", line, "stderr", msg, "err", err)
		if msg != "" {
			return nil, fmt.Errorf("%s: %w: %s", line, err, msg)
		}
		return nil, fmt.Errorf("%s: %w", line, err)
	}
	return stdout.Bytes(), nil
}

// restore feeds a filter-table snippet of -A/-D lines to
// iptables-restore --noflush. It declares no chain: in --noflush mode a
// declaration would flush it.
func (r *runner) restore(ctx context.Context, f *family, lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	r.forget(f)
	var b bytes.Buffer
	b.Grow(len(lines)*40 + 32)
	b.WriteString("*" + table + "\n")
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	_, err := r.run(ctx, b.Bytes(), f.restore, "--noflush", "--wait", strconv.Itoa(r.lockWaitSeconds()))
	return err
}

// chainExists reports whether chain exists in f's filter table.
func (r *runner) chainExists(ctx context.Context, f *family, chain, what string) (exists bool, err error) {
	err = r.ipt(ctx, f, what, func(i *iptables.IPTables) (err error) {
		exists, err = i.ChainExists(table, chain)
		return err
	})
	return exists, err
}

// ruleExists asks iptables -C whether chain holds spec, which compares
// rules as the kernel holds them, not as they are printed.
func (r *runner) ruleExists(ctx context.Context, f *family, chain string, spec []string) (ok bool, err error) {
	err = r.ipt(ctx, f, "-C "+chain+" "+strings.Join(spec, " "), func(i *iptables.IPTables) (err error) {
		ok, err = i.Exists(table, chain, spec...)
		return err
	})
	return ok, err
}

// newChain creates chain.
func (r *runner) newChain(ctx context.Context, f *family, chain string) error {
	r.forget(f)
	return r.ipt(ctx, f, "-N "+chain, func(i *iptables.IPTables) error {
		return i.NewChain(table, chain)
	})
}

// deleteChain flushes and deletes chain.
func (r *runner) deleteChain(ctx context.Context, f *family, chain string) error {
	r.forget(f)
	return r.ipt(ctx, f, "-F/-X "+chain, func(i *iptables.IPTables) error {
		return i.ClearAndDeleteChain(table, chain)
	})
}

// insertRule inserts spec into chain at pos (1 is the first).
func (r *runner) insertRule(ctx context.Context, f *family, chain string, pos int, spec []string) error {
	r.forget(f)
	return r.ipt(ctx, f, "-I "+chain+" "+strconv.Itoa(pos)+" "+strings.Join(spec, " "), func(i *iptables.IPTables) error {
		return i.Insert(table, chain, pos, spec...)
	})
}

// appendRule appends spec to chain.
func (r *runner) appendRule(ctx context.Context, f *family, chain string, spec []string) error {
	r.forget(f)
	return r.ipt(ctx, f, "-A "+chain+" "+strings.Join(spec, " "), func(i *iptables.IPTables) error {
		return i.Append(table, chain, spec...)
	})
}

// holds is ruleExists without logging: false when iptables cannot tell.
func (r *runner) holds(ctx context.Context, f *family, chain string, spec []string) bool {
	var ok bool
	err := r.bounded(ctx, func() (err error) {
		ok, err = f.ipt.Exists(table, chain, spec...)
		return err
	})
	return err == nil && ok
}

// deleteSpec deletes the first rule of chain matching spec; there must be
// one.
func (r *runner) deleteSpec(ctx context.Context, f *family, chain string, spec []string) error {
	r.forget(f)
	return r.ipt(ctx, f, "-D "+chain+" "+strings.Join(spec, " "), func(i *iptables.IPTables) error {
		return i.Delete(table, chain, spec...)
	})
}

// deleteRule deletes the first rule of chain matching spec, if there is
// one, and reports whether it did.
func (r *runner) deleteRule(ctx context.Context, f *family, chain string, spec []string) (bool, error) {
	var deleted bool
	r.forget(f)
	err := r.ipt(ctx, f, "-D "+chain+" "+strings.Join(spec, " "), func(i *iptables.IPTables) error {
		ok, err := i.Exists(table, chain, spec...)
		if err != nil || !ok {
			return err
		}
		deleted = true
		return i.Delete(table, chain, spec...)
	})
	return deleted, err
}

// deleteAt deletes rule ru of chain by its position, after checking that
// the rule now at that position is still ru as listed (read through
// listHook for INPUT); if it is not, it deletes nothing and returns
// changed(what is there now).
func (r *runner) deleteAt(ctx context.Context, f *family, chain string, ru rule, changed func(cur string) error) error {
	r.forget(f)
	return r.ipt(ctx, f, "-D "+chain+" "+strconv.Itoa(ru.pos), func(i *iptables.IPTables) error {
		cur, err := i.ListById(table, chain, ru.pos)
		if err != nil {
			return err
		}
		if chain == "INPUT" && r.listHook != nil {
			cur = r.listHook(f, []string{cur})[0]
		}
		if w := splitWords(cur); len(w) < 2 || !slices.Equal(w[2:], ru.spec) {
			return changed(cur)
		}
		return i.DeleteById(table, chain, ru.pos)
	})
}

// rule is one -A line of a chain: its 1-based position and its rule spec
// (the words after "-A CHAIN").
type rule struct {
	pos  int
	spec []string
}

// inputRules lists the rules of INPUT.
func (r *runner) inputRules(ctx context.Context, f *family) ([]rule, error) {
	var lines []string
	if err := r.ipt(ctx, f, "-S INPUT", func(i *iptables.IPTables) (err error) {
		lines, err = i.List(table, "INPUT")
		return err
	}); err != nil {
		return nil, err
	}
	if r.listHook != nil {
		lines = r.listHook(f, lines)
	}
	return parseRules(lines, "INPUT"), nil
}

// listChain lists the rules of chain; exists is false if the chain is
// missing.
func (r *runner) listChain(ctx context.Context, f *family, chain string) (rules []rule, exists bool, err error) {
	var lines []string
	if err := r.bounded(ctx, func() (err error) {
		lines, err = f.ipt.List(table, chain)
		return err
	}); err != nil {
		// iptables-nft words a missing chain in several ways ("No chain/target/
		// match by that name", "chain ... is incompatible"): ask directly.
		if ok, cerr := r.chainExists(ctx, f, chain, "-S"); cerr == nil && !ok {
			return nil, false, nil
		}
		r.log.Error("firewall command failed", "cmd", f.cmd+" -S "+chain, "err", err)
		return nil, false, fmt.Errorf("%s -S %s: %w", f.cmd, chain, err)
	}
	return parseRules(lines, chain), true, nil
}

// tableLines lists every rule of table tbl (iptables -t TBL -S), one line
// each.
func (r *runner) tableLines(ctx context.Context, f *family, tbl string) ([]string, error) {
	out, err := r.run(ctx, nil, f.cmd, "-w", strconv.Itoa(r.lockWaitSeconds()), "-t", tbl, "-S")
	if err != nil {
		return nil, err
	}
	return strings.Split(string(out), "\n"), nil
}

// legacyTables returns, when f's command is iptables-legacy, the tables the
// kernel holds for it (/proc/net/ip_tables_names or ip6_tables_names): with
// legacy, "iptables -t nat -S" creates the nat table (and with it
// connection tracking), which a teardown must not leave behind. It returns
// nil for iptables-nft, whose listings create nothing, or when it cannot
// tell.
func (r *runner) legacyTables(ctx context.Context, f *family) map[string]bool {
	out, err := r.run(ctx, nil, f.cmd, "--version")
	if err != nil || strings.Contains(string(out), "nf_tables") {
		return nil
	}
	names := "/proc/net/ip_tables_names"
	if f.cmd == "ip6tables" {
		names = "/proc/net/ip6_tables_names"
	}
	loaded := map[string]bool{}
	b, err := os.ReadFile(names)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	for _, t := range strings.Fields(string(b)) {
		loaded[t] = true
	}
	return loaded
}

// parseRules picks the "-A chain ..." lines of iptables -S output.
func parseRules(lines []string, chain string) []rule {
	var rules []rule
	for _, l := range lines {
		w := splitWords(l)
		if len(w) < 2 || w[0] != "-A" || w[1] != chain {
			continue
		}
		rules = append(rules, rule{pos: len(rules) + 1, spec: w[2:]})
	}
	return rules
}

// jumpsTo reports whether a rule spec jumps or goes to chain.
func jumpsTo(spec []string, chain string) bool {
	for i := 0; i+1 < len(spec); i++ {
		if (spec[i] == "-j" || spec[i] == "-g" || spec[i] == "--jump" || spec[i] == "--goto") && spec[i+1] == chain {
			return true
		}
	}
	return false
}

// splitWords splits an iptables -S line into words, honouring the double
// quotes iptables puts around comments and the backslash escapes inside.
func splitWords(s string) []string {
	var (
		words  []string
		cur    strings.Builder
		inWord bool
		quoted bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quoted && c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (c == ' ' || c == '\t'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words
}
