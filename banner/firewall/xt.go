package firewall

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-iptables/iptables"
)

// table is the netfilter table every rule of ours lives in.
const table = "filter"

// family is one address family's iptables command.
type family struct {
	name    string // "IPv4" or "IPv6"
	cmd     string // "iptables" or "ip6tables"
	restore string // "iptables-restore" or "ip6tables-restore"
	ipt     *iptables.IPTables
}

// xt is what the ipset and iptables backends share: the command runners,
// the chain and jump management and the counters. Its mutex serialises the
// backend's operations so a list-then-change cannot interleave.
type xt struct {
	cfg Config
	log *slog.Logger
	c   counters

	mu     sync.Mutex
	v4, v6 *family // set by families; v6 stays nil when cfg.IPv6 is false

	// listHook, if set (tests), rewrites the INPUT listing, as another
	// iptables version might print it.
	listHook func(f *family, lines []string) []string
}

func newXT(cfg Config) *xt { return &xt{cfg: cfg, log: cfg.Logger} }

// lockWaitSeconds is LockWait in whole seconds, at least 1 (0 would make
// iptables wait forever).
func (x *xt) lockWaitSeconds() int {
	s := int(seconds(x.cfg.LockWait))
	if s < 1 {
		s = 1
	}
	return s
}

// families returns the families in use, creating their go-iptables handles
// on first use. Callers hold x.mu.
func (x *xt) families(ctx context.Context) ([]*family, error) {
	if x.v4 == nil {
		f, err := x.newFamily(ctx, iptables.ProtocolIPv4)
		if err != nil {
			return nil, err
		}
		x.v4 = f
	}
	if x.cfg.IPv6 && x.v6 == nil {
		f, err := x.newFamily(ctx, iptables.ProtocolIPv6)
		if err != nil {
			return nil, fmt.Errorf("%w; if this host has no IPv6 firewall, set firewall ipv6 = false", err)
		}
		x.v6 = f
	}
	if x.v6 != nil {
		return []*family{x.v4, x.v6}, nil
	}
	return []*family{x.v4}, nil
}

func (x *xt) newFamily(ctx context.Context, proto iptables.Protocol) (*family, error) {
	f := &family{name: "IPv4", cmd: "iptables", restore: "iptables-restore"}
	if proto == iptables.ProtocolIPv6 {
		f = &family{name: "IPv6", cmd: "ip6tables", restore: "ip6tables-restore"}
	}
	var ipt *iptables.IPTables
	err := x.bounded(ctx, func() error {
		var err error
		ipt, err = iptables.New(iptables.IPFamily(proto), iptables.Timeout(x.lockWaitSeconds()))
		return err
	})
	if err != nil {
		err = fmt.Errorf("%s is unusable: %w", f.cmd, err)
		x.log.Error("firewall command failed", "cmd", f.cmd+" --version", "err", err)
		return nil, err
	}
	f.ipt = ipt
	// A usable binary may still lack kernel support (no ip6_tables / nf_tables
	// for IPv6): probe the INPUT chain once.
	if err := x.ipt(ctx, f, "-S INPUT", func(i *iptables.IPTables) error {
		_, err := i.List(table, "INPUT")
		return err
	}); err != nil {
		return nil, fmt.Errorf("%s is unusable: %w", f.cmd, err)
	}
	return f, nil
}

// bounded runs fn, giving up after CommandTimeout or when ctx ends.
// go-iptables takes no context, so a command that hangs past the bound is
// left to finish in the background (its own --wait bounds the lock wait).
func (x *xt) bounded(ctx context.Context, fn func() error) error {
	ctx, cancel := context.WithTimeout(ctx, x.cfg.CommandTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("gave up after %v: %w", x.cfg.CommandTimeout, ctx.Err())
	}
}

// ipt runs one go-iptables call, bounded, logging and wrapping a failure
// with the command.
func (x *xt) ipt(ctx context.Context, f *family, what string, fn func(*iptables.IPTables) error) error {
	err := x.bounded(ctx, func() error { return fn(f.ipt) })
	if err == nil {
		return nil
	}
	x.log.Error("firewall command failed", "cmd", f.cmd+" "+what, "err", err)
	return fmt.Errorf("%s %s: %w", f.cmd, what, err)
}

// run runs an external command with stdin, bounded by CommandTimeout, and
// returns its stdout. A failure is logged with the command and its stderr.
func (x *xt) run(ctx context.Context, stdin []byte, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, x.cfg.CommandTimeout)
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
			err = fmt.Errorf("%w (command_timeout %v)", ctx.Err(), x.cfg.CommandTimeout)
		}
		msg := strings.TrimSpace(stderr.String())
		line := name + " " + strings.Join(args, " ")
		x.log.Error("firewall command failed", "cmd", line, "stderr", msg, "err", err)
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
func (x *xt) restore(ctx context.Context, f *family, lines []string) error {
	if len(lines) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.Grow(len(lines)*40 + 32)
	b.WriteString("*" + table + "\n")
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	b.WriteString("COMMIT\n")
	_, err := x.run(ctx, b.Bytes(), f.restore, "--noflush", "--wait", strconv.Itoa(x.lockWaitSeconds()))
	return err
}

// portList is the configured ports as multiport writes them.
func (x *xt) portList() string {
	ps := make([]string, len(x.cfg.Ports))
	for i, p := range x.cfg.Ports {
		ps[i] = strconv.Itoa(int(p))
	}
	return strings.Join(ps, ",")
}

// synFlags is how iptables -S writes --syn: the tcp match of a packet with
// SYN set and ACK, RST and FIN clear, i.e. one that opens a connection.
var synFlags = []string{"-m", "tcp", "--tcp-flags", "FIN,SYN,RST,ACK", "SYN"}

// jumpSpec is the INPUT rule that sends the SMTP ports to our chain, word for
// word as iptables -S prints it (iptables-legacy and iptables-nft 1.8):
// ensureChainAndJump compares listed rules with it, and asks iptables -C
// when none is equal. With Drop "new" only connection-opening SYNs take the
// jump.
func (x *xt) jumpSpec() []string {
	spec := []string{"-p", "tcp", "-m", "multiport", "--dports", x.portList()}
	if x.cfg.Drop == DropNew {
		spec = append(spec, synFlags...)
	}
	return append(spec, "-j", x.cfg.Chain)
}

// ensureChainAndJump creates the chain if missing and makes the INPUT jump
// exactly the configured one: a missing jump is inserted at position 1, and
// only then are stale jumps to the chain (other ports, the other drop mode,
// old versions) deleted, so the chain is never left unreachable; a correct
// jump is kept wherever it is. It returns what was missing or stale, for the
// caller to log (nil: all in place), and logs nothing itself but a correct
// jump found at another position or printed in another form (at Debug).
//
// The jump is looked for in the INPUT listing by its text. Should this
// iptables print it otherwise (another version or backend, matches in
// another order), the listing alone would call it missing and each Repair
// would insert one more: so when no listed jump has the expected text,
// iptables -C, which compares rules as the kernel holds them, decides.
func (x *xt) ensureChainAndJump(ctx context.Context, f *family) ([]string, error) {
	var changed []string
	var exists bool
	if err := x.ipt(ctx, f, "-S "+x.cfg.Chain+" 1", func(i *iptables.IPTables) (err error) {
		exists, err = i.ChainExists(table, x.cfg.Chain)
		return err
	}); err != nil {
		return changed, err
	}
	if !exists {
		if err := x.ipt(ctx, f, "-N "+x.cfg.Chain, func(i *iptables.IPTables) error {
			return i.NewChain(table, x.cfg.Chain)
		}); err != nil {
			return changed, err
		}
		changed = append(changed, f.name+" chain "+x.cfg.Chain)
	}
	rules, err := x.inputRules(ctx, f)
	if err != nil {
		return changed, err
	}
	want := strings.Join(x.jumpSpec(), " ")
	found := 0
	var stale []rule
	for _, r := range rules {
		if !jumpsTo(r.spec, x.cfg.Chain) {
			continue
		}
		if found == 0 && strings.Join(r.spec, " ") == want {
			found = r.pos
			continue
		}
		stale = append(stale, r)
	}
	ambiguous := false
	if found == 0 {
		var ok bool
		if err := x.ipt(ctx, f, "-C INPUT "+want, func(i *iptables.IPTables) (err error) {
			ok, err = i.Exists(table, "INPUT", x.jumpSpec()...)
			return err
		}); err != nil {
			return changed, err
		}
		switch {
		case !ok:
		case len(stale) <= 1:
			// The one jump listed (if any) is ours, printed otherwise.
			found = -1
			if len(stale) == 1 {
				x.log.Debug("jump exists, listed in another form", "family", f.name, "rule", want, "listed", strings.Join(stale[0].spec, " "))
			}
			stale = nil
		default:
			// Ours is among the jumps listed, but which one is unknown:
			// each is deleted by the text listed, last first, and the one
			// whose deletion takes ours away (iptables read its text back
			// as ours) goes back at its position at once, unreported.
			ambiguous = true
		}
	}
	if found == 0 && !ambiguous {
		if err := x.insertJump(ctx, f); err != nil {
			return changed, err
		}
		changed = append(changed, f.name+" jump -I INPUT 1 "+want)
	} else if found > 1 {
		x.log.Debug("jump exists at another position; left there", "family", f.name, "position", found, "rule", want)
	}
	jumpThere := func() (ok bool, err error) {
		err = x.ipt(ctx, f, "-C INPUT "+want, func(i *iptables.IPTables) (err error) {
			ok, err = i.Exists(table, "INPUT", x.jumpSpec()...)
			return err
		})
		return ok, err
	}
	for i := len(stale) - 1; i >= 0; i-- {
		r := stale[i]
		deleted, err := x.deleteInput(ctx, f, r.spec)
		if err != nil || !deleted {
			if err != nil {
				return changed, err
			}
			continue
		}
		if ambiguous {
			ok, err := jumpThere()
			if err != nil {
				return changed, err
			}
			if !ok {
				// That was ours, printed otherwise: back where it was.
				if err := x.ipt(ctx, f, "-I INPUT "+strconv.Itoa(r.pos)+" "+want, func(i *iptables.IPTables) error {
					return i.Insert(table, "INPUT", r.pos, x.jumpSpec()...)
				}); err != nil {
					return changed, err
				}
				x.log.Debug("jump exists, listed in another form; kept at its position", "family", f.name, "position", r.pos, "rule", want)
				ambiguous = false
				continue
			}
		}
		changed = append(changed, f.name+" stale jump -A INPUT "+strings.Join(r.spec, " ")+" (deleted)")
	}
	if ambiguous {
		// No listed jump was ours after all (-C saw it, no deletion took
		// it away): make sure it is there.
		ok, err := jumpThere()
		if err != nil {
			return changed, err
		}
		if !ok {
			if err := x.insertJump(ctx, f); err != nil {
				return changed, err
			}
			changed = append(changed, f.name+" jump -I INPUT 1 "+want)
		}
	}
	return changed, nil
}

func (x *xt) insertJump(ctx context.Context, f *family) error {
	return x.ipt(ctx, f, "-I INPUT 1 "+strings.Join(x.jumpSpec(), " "), func(i *iptables.IPTables) error {
		return i.Insert(table, "INPUT", 1, x.jumpSpec()...)
	})
}

// repaired counts what a Repair restored (made) and the foreign rules it
// removed from the chain, as one repair, and logs each kind at Warn.
func (x *xt) repaired(made, foreign []string) {
	if len(made)+len(foreign) == 0 {
		return
	}
	x.c.repaired(append(slices.Clip(made), foreign...))
	if len(made) > 0 {
		x.log.Warn("firewall hooks were missing or altered, so bans were not fully enforced; restored them. "+
			"Something rebuilt the firewall without banner's rules (iptables -F, netfilter-persistent reload, ufw reload?)",
			"restored", made)
	}
	x.warnForeign(foreign)
}

// warnForeign logs, at Warn, the foreign rules removed from the chain.
func (x *xt) warnForeign(foreign []string) {
	if len(foreign) == 0 {
		return
	}
	x.log.Warn("removed rules from banner's chain that the "+x.cfg.Backend+" backend did not make, left by another backend or by hand: "+
		"they dropped clients whatever banner's bans said, and no unban could lift them "+
		"(was firewall backend switched without running `banner teardown` first?)",
		"chain", x.cfg.Chain, "removed", foreign)
}

// checkChainIsBanners refuses, at Setup, a chain that already exists and
// holds rules of which none is of banner's making (either backend's): the
// configured name is then most likely another tool's chain (fail2ban's
// f2b-*, DOCKER-USER, ufw-*), whose rules Setup would delete as foreign
// and whose INPUT jump it would replace. An empty chain, or one with at
// least one rule of banner's form, is taken for banner's.
func (x *xt) checkChainIsBanners(ctx context.Context) error {
	fams, err := x.families(ctx)
	if err != nil {
		return err
	}
	for _, f := range fams {
		rules, exists, err := x.chainRules(ctx, f)
		if err != nil {
			return err
		}
		if !exists || len(rules) == 0 || slices.ContainsFunc(rules, func(r rule) bool {
			return isDropRule(r.spec) || dropsSetSource(r.spec, x.cfg.Set4) || dropsSetSource(r.spec, x.cfg.Set6)
		}) {
			continue
		}
		shown := make([]string, 0, 3)
		for _, r := range rules[:min(3, len(rules))] {
			shown = append(shown, "-A "+x.cfg.Chain+" "+strings.Join(r.spec, " "))
		}
		return fmt.Errorf("%s chain %s exists and none of its %d rule(s) is banner's (%s): it looks like another tool's chain, whose rules banner would delete. "+
			"Set [firewall] chain to a name of banner's own, or, if this chain is banner's, empty it first (%s -F %s)",
			f.name, x.cfg.Chain, len(rules), strings.Join(shown, "; "), f.cmd, x.cfg.Chain)
	}
	return nil
}

// removeForeign deletes the rules of f's chain that the backend did not
// make, and returns one line per rule deleted. The chain is banner's own:
// a rule there of another backend's (the ipset backend's set match, the
// iptables backend's per-ban DROP rules, left when the backend was
// switched without `banner teardown`) or the admin's would drop clients
// whatever the bans say, and neither List nor Remove would ever see it.
//
// own tells the backend's rules, by their spec as iptables -S prints it;
// alias, if not nil, also tells them, but only when no listed rule is own:
// the backend's rule then exists (its caller has just made sure of it)
// printed in another form, and is one of those alias accepts.
//
// The rules go in one iptables-restore transaction, by position, last
// first: atomic, and one command however many there are (a switch from the
// iptables backend leaves one rule per ban; deleting them one command at a
// time took 47 s for 2,000 with iptables-nft, while Postfix waited).
// Callers hold x.mu, so no Add of this backend runs meanwhile, and the
// chain lock keeps other banner processes away; nothing else writes to
// banner's chain, so the positions hold. Should the transaction fail, each
// rule is deleted by its spec (iptables -D CHAIN SPEC), which cannot hit
// an own rule, and the ones iptables does not take back in their listed
// form by position from a fresh listing, each checked just before.
func (x *xt) removeForeign(ctx context.Context, f *family, own, alias func(spec []string) bool) ([]string, error) {
	rules, exists, err := x.chainRules(ctx, f)
	if err != nil || !exists {
		return nil, err
	}
	if alias != nil && !slices.ContainsFunc(rules, func(r rule) bool { return own(r.spec) }) {
		exact := own
		own = func(spec []string) bool { return exact(spec) || alias(spec) }
	}
	describe := func(spec []string) string {
		return f.name + " foreign rule -A " + x.cfg.Chain + " " + strings.Join(spec, " ") + " (removed)"
	}
	var removed, batch []string
	for _, r := range rules {
		if !own(r.spec) {
			removed = append(removed, describe(r.spec))
		}
	}
	for i := len(rules) - 1; i >= 0; i-- {
		if !own(rules[i].spec) {
			batch = append(batch, "-D "+x.cfg.Chain+" "+strconv.Itoa(rules[i].pos))
		}
	}
	if len(batch) == 0 {
		return nil, nil
	}
	if err = x.restore(ctx, f, batch); err == nil {
		return removed, nil
	}
	x.log.Debug("deleting foreign rules in one transaction failed; one at a time", "family", f.name, "err", err)
	removed = nil
	left := false
	for _, r := range rules {
		if own(r.spec) {
			continue
		}
		var there bool
		if err := x.bounded(ctx, func() (err error) {
			there, err = f.ipt.Exists(table, x.cfg.Chain, r.spec...)
			return err
		}); err != nil || !there {
			// Not read back as listed (or already gone): by position below.
			left = true
			continue
		}
		if err := x.ipt(ctx, f, "-D "+x.cfg.Chain+" "+strings.Join(r.spec, " "), func(i *iptables.IPTables) error {
			return i.Delete(table, x.cfg.Chain, r.spec...)
		}); err != nil {
			return removed, err
		}
		removed = append(removed, describe(r.spec))
	}
	if !left {
		return removed, nil
	}
	if rules, _, err = x.chainRules(ctx, f); err != nil {
		return removed, err
	}
	for i := len(rules) - 1; i >= 0; i-- {
		r := rules[i]
		if own(r.spec) {
			continue
		}
		if err := x.ipt(ctx, f, "-D "+x.cfg.Chain+" "+strconv.Itoa(r.pos), func(i *iptables.IPTables) error {
			cur, err := i.ListById(table, x.cfg.Chain, r.pos)
			if err != nil {
				return err
			}
			if w := splitWords(cur); len(w) < 2 || !slices.Equal(w[2:], r.spec) {
				return fmt.Errorf("chain %s changed while removing foreign rules (rule %d is now %q)", x.cfg.Chain, r.pos, cur)
			}
			return i.DeleteById(table, x.cfg.Chain, r.pos)
		}); err != nil {
			return removed, err
		}
		removed = append(removed, describe(r.spec))
	}
	return removed, nil
}

// deleteInput deletes the first INPUT rule matching spec, if there is one,
// and reports whether it did.
func (x *xt) deleteInput(ctx context.Context, f *family, spec []string) (bool, error) {
	var deleted bool
	err := x.ipt(ctx, f, "-D INPUT "+strings.Join(spec, " "), func(i *iptables.IPTables) error {
		ok, err := i.Exists(table, "INPUT", spec...)
		if err != nil || !ok {
			return err
		}
		deleted = true
		return i.Delete(table, "INPUT", spec...)
	})
	return deleted, err
}

// rule is one -A line of a chain: its 1-based position and its rule spec
// (the words after "-A CHAIN").
type rule struct {
	pos  int
	spec []string
}

func (x *xt) inputRules(ctx context.Context, f *family) ([]rule, error) {
	var lines []string
	if err := x.ipt(ctx, f, "-S INPUT", func(i *iptables.IPTables) (err error) {
		lines, err = i.List(table, "INPUT")
		return err
	}); err != nil {
		return nil, err
	}
	if x.listHook != nil {
		lines = x.listHook(f, lines)
	}
	return parseRules(lines, "INPUT"), nil
}

// chainRules lists our chain's rules; exists is false if the chain is
// missing.
func (x *xt) chainRules(ctx context.Context, f *family) (rules []rule, exists bool, err error) {
	var lines []string
	if err := x.bounded(ctx, func() (err error) {
		lines, err = f.ipt.List(table, x.cfg.Chain)
		return err
	}); err != nil {
		// iptables-nft words a missing chain in several ways ("No chain/target/
		// match by that name", "chain ... is incompatible"): ask directly.
		var ok bool
		if cerr := x.ipt(ctx, f, "-S", func(i *iptables.IPTables) (err error) {
			ok, err = i.ChainExists(table, x.cfg.Chain)
			return err
		}); cerr == nil && !ok {
			return nil, false, nil
		}
		x.log.Error("firewall command failed", "cmd", f.cmd+" -S "+x.cfg.Chain, "err", err)
		return nil, false, fmt.Errorf("%s -S %s: %w", f.cmd, x.cfg.Chain, err)
	}
	return parseRules(lines, x.cfg.Chain), true, nil
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
