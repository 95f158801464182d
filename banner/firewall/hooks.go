package firewall

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// xt is the engine of the ipset and iptables backends: the hooks both
// build with iptables (the chain in each family, the INPUT jump to it, the
// removal of rules the backend did not make) and the Setup, Repair,
// Teardown and Stats they share. What differs between the two is their
// xtRules. Its mutex serialises the backend's operations so a
// list-then-change cannot interleave.
type xt struct {
	runner
	cfg   Config
	c     counters
	rules xtRules

	mu     sync.Mutex
	v4, v6 *family // set by families; v6 stays nil when cfg.IPv6 is false
	// ensured is, per family, the chain listing ensure's removal of
	// foreign rules read, for the List that follows a Setup or Repair
	// (the engine's start and every reconcile): with the iptables backend
	// a chain of 100k bans is then listed once, not twice. List takes it
	// only if banner changed no rule since (runner.gen).
	ensured map[*family]listing
}

// xtRules is what an iptables-based backend adds to the shared hooks:
// its own rules in the chain and what it holds outside it (the ipset
// backend's sets). Its methods run with xt.mu held.
type xtRules interface {
	// prepare makes what the chains' rules need before they are set up
	// (the ipset backend's sets) and returns what it created. With check
	// (Setup), what exists is checked too.
	prepare(ctx context.Context, check bool) ([]string, error)
	// ensureRules makes the fixed rules the backend keeps in f's chain
	// (the ipset backend's set match) and returns what it made. i is f's
	// index: 0 for IPv4, 1 for IPv6.
	ensureRules(ctx context.Context, f *family, i int) ([]string, error)
	// owns tells the backend's rules in f's chain (i as for
	// ensureRules), for removeForeign.
	owns(f *family, i int) (own, alias func(spec []string) bool)
	// matchedSets are the sets the chain's rules match, which a teardown
	// checks nothing else uses before it removes anything.
	matchedSets() []string
	// teardownSets removes, once the chains are gone, what the backend
	// holds outside them, and returns what it removed and what it kept.
	teardownSets(ctx context.Context) (removed, kept []string, err error)
}

func newXT(cfg Config, rules xtRules) *xt {
	return &xt{
		runner: runner{timeout: cfg.CommandTimeout, lockWait: cfg.LockWait, log: cfg.Logger},
		cfg:    cfg,
		rules:  rules,
	}
}

// Stats returns the backend's counters.
func (x *xt) Stats() Stats { return x.c.stats() }

// Setup checks that the chain, if it exists, is banner's, makes what
// ensure makes, and removes the chain's foreign rules.
func (x *xt) Setup(ctx context.Context) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	listed, err := x.checkChainIsBanners(ctx)
	if err != nil {
		return x.c.fail(fmt.Errorf("firewall setup: %w", err))
	}
	made, foreign, err := x.ensure(ctx, true, listed)
	if len(made) > 0 {
		x.log.Info("firewall set up", "created", made)
	}
	x.c.recordRepair(x.log, x.cfg, nil, foreign)
	if err != nil {
		return x.c.fail(fmt.Errorf("firewall setup: %w", err))
	}
	return nil
}

// Repair restores what ensure finds missing and removes the chain's
// foreign rules; it returns both.
func (x *xt) Repair(ctx context.Context) ([]string, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	made, foreign, err := x.ensure(ctx, false, nil)
	x.c.recordRepair(x.log, x.cfg, made, foreign)
	made = append(made, foreign...)
	if err != nil {
		return made, x.c.fail(fmt.Errorf("firewall repair: %w", err))
	}
	return made, nil
}

// ensure makes whatever of the backend's outside pieces (prepare), the
// chains, the jumps and the backend's fixed rules is missing and returns
// what it made. Once a family's own rules are in place, the other rules of
// its chain are removed (see removeForeign): foreign lists them. listed
// holds chain listings taken just before (Setup's check), reused if
// banner changed nothing since.
func (x *xt) ensure(ctx context.Context, check bool, listed map[*family]listing) (made, foreign []string, err error) {
	x.ensured = nil
	fams, err := x.families(ctx)
	if err != nil {
		return nil, nil, err
	}
	if made, err = x.rules.prepare(ctx, check); err != nil {
		return made, nil, err
	}
	for i, f := range fams {
		changed, err := x.ensureChainAndJump(ctx, f, listed[f])
		made = append(made, changed...)
		if err != nil {
			return made, foreign, err
		}
		changed, err = x.rules.ensureRules(ctx, f, i)
		made = append(made, changed...)
		if err != nil {
			return made, foreign, err
		}
		own, alias := x.rules.owns(f, i)
		removed, l, err := x.removeForeign(ctx, f, own, alias, listed[f])
		foreign = append(foreign, removed...)
		if err != nil {
			return made, foreign, err
		}
		if l.ok {
			if x.ensured == nil {
				x.ensured = make(map[*family]listing, 2)
			}
			x.ensured[f] = l
		}
	}
	return made, foreign, nil
}

// families returns the families in use, creating their go-iptables handles
// on first use. Callers hold x.mu.
func (x *xt) families(ctx context.Context) ([]*family, error) {
	if x.v4 == nil {
		f, err := x.newFamily(ctx, false)
		if err != nil {
			return nil, err
		}
		x.v4 = f
	}
	if x.cfg.IPv6 && x.v6 == nil {
		f, err := x.newFamily(ctx, true)
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

// chainRules lists our chain's rules; exists is false if the chain is
// missing.
func (x *xt) chainRules(ctx context.Context, f *family) (rules []rule, exists bool, err error) {
	return x.listChain(ctx, f, x.cfg.Chain)
}

// portList is the configured ports as multiport writes them.
func portList(ports []uint16) string {
	ps := make([]string, len(ports))
	for i, p := range ports {
		ps[i] = strconv.Itoa(int(p))
	}
	return strings.Join(ps, ",")
}

// synFlags is how iptables -S writes --syn: the tcp match of a packet with
// SYN set and ACK, RST and FIN clear, i.e. one that opens a connection.
var synFlags = []string{"-m", "tcp", "--tcp-flags", "FIN,SYN,RST,ACK", "SYN"}

// jumpSpec is the INPUT rule that sends cfg's SMTP ports to its chain, word
// for word as iptables -S prints it (iptables-legacy and iptables-nft 1.8):
// ensureChainAndJump compares listed rules with it, and asks iptables -C
// when none is equal. With Drop "new" only connection-opening SYNs take the
// jump.
func jumpSpec(cfg Config) []string {
	spec := []string{"-p", "tcp", "-m", "multiport", "--dports", portList(cfg.Ports)}
	if cfg.Drop == DropNew {
		spec = append(spec, synFlags...)
	}
	return append(spec, "-j", cfg.Chain)
}

// jumpSpec is jumpSpec(x.cfg).
func (x *xt) jumpSpec() []string { return jumpSpec(x.cfg) }

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
//
// prev is a chain listing taken just before (Setup's check): if it still
// holds (listChainReusing) and found the chain, the chain is not asked
// for again (with iptables-nft every command reads the whole table, which
// costs about as much as a listing with 100k bans in the chain).
func (x *xt) ensureChainAndJump(ctx context.Context, f *family, prev listing) ([]string, error) {
	var changed []string
	exists := prev.ok && prev.exists && x.holdsStill(prev)
	if !exists {
		var err error
		if exists, err = x.chainExists(ctx, f, x.cfg.Chain, "-S "+x.cfg.Chain+" 1"); err != nil {
			return changed, err
		}
	}
	if !exists {
		if err := x.newChain(ctx, f, x.cfg.Chain); err != nil {
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
	jumpThere := func() (bool, error) { return x.ruleExists(ctx, f, "INPUT", x.jumpSpec()) }
	ambiguous := false
	if found == 0 {
		ok, err := jumpThere()
		if err != nil {
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
		if err := x.insertJump(ctx, f, 1); err != nil {
			return changed, err
		}
		changed = append(changed, f.name+" jump -I INPUT 1 "+want)
	} else if found > 1 {
		x.log.Debug("jump exists at another position; left there", "family", f.name, "position", found, "rule", want)
	}
	for i := len(stale) - 1; i >= 0; i-- {
		r := stale[i]
		deleted, err := x.deleteRule(ctx, f, "INPUT", r.spec)
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
				if err := x.insertJump(ctx, f, r.pos); err != nil {
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
			if err := x.insertJump(ctx, f, 1); err != nil {
				return changed, err
			}
			changed = append(changed, f.name+" jump -I INPUT 1 "+want)
		}
	}
	return changed, nil
}

// insertJump inserts the jump into INPUT at pos.
func (x *xt) insertJump(ctx context.Context, f *family, pos int) error {
	return x.insertRule(ctx, f, "INPUT", pos, x.jumpSpec())
}

// checkChainIsBanners refuses, at Setup, a chain that already exists and
// holds rules of which none is of banner's making (either backend's): the
// configured name is then most likely another tool's chain (fail2ban's
// f2b-*, DOCKER-USER, ufw-*), whose rules Setup would delete as foreign
// and whose INPUT jump it would replace. An empty chain, or one with at
// least one rule of banner's form, is taken for banner's.
//
// It returns the listings it read, for ensure.
func (x *xt) checkChainIsBanners(ctx context.Context) (map[*family]listing, error) {
	fams, err := x.families(ctx)
	if err != nil {
		return nil, err
	}
	listed := make(map[*family]listing, len(fams))
	for _, f := range fams {
		l, err := x.listChainReusing(ctx, f, x.cfg.Chain, listing{})
		if err != nil {
			return nil, err
		}
		listed[f] = l
		rules, exists := l.rules, l.exists
		if !exists || len(rules) == 0 || slices.ContainsFunc(rules, func(r rule) bool {
			return isDropRule(r.spec) || dropsSetSource(r.spec, x.cfg.Set4) || dropsSetSource(r.spec, x.cfg.Set6)
		}) {
			continue
		}
		shown := make([]string, 0, 3)
		for _, r := range rules[:min(3, len(rules))] {
			shown = append(shown, "-A "+x.cfg.Chain+" "+strings.Join(r.spec, " "))
		}
		return nil, fmt.Errorf("%s chain %s exists and none of its %d rule(s) is banner's (%s): it looks like another tool's chain, whose rules banner would delete. "+
			"Set [firewall] chain to a name of banner's own, or, if this chain is banner's, empty it first (%s -F %s)",
			f.name, x.cfg.Chain, len(rules), strings.Join(shown, "; "), f.cmd, x.cfg.Chain)
	}
	return listed, nil
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
//
// prev is a listing taken just before, used if banner changed no rule
// since (listChainReusing). When nothing was foreign, the listing read is
// returned, for the List that follows.
func (x *xt) removeForeign(ctx context.Context, f *family, own, alias func(spec []string) bool, prev listing) ([]string, listing, error) {
	l, err := x.listChainReusing(ctx, f, x.cfg.Chain, prev)
	if err != nil {
		return nil, listing{}, err
	}
	rules := l.rules
	if !l.exists {
		return nil, l, nil
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
		return nil, l, nil
	}
	removed, err = x.removeRules(ctx, f, own, rules, removed, batch, describe)
	return removed, listing{}, err
}

// removeRules is removeForeign's deletion of the foreign rules, listed
// in rules, removed and batch.
func (x *xt) removeRules(ctx context.Context, f *family, own func(spec []string) bool, rules []rule, removed, batch []string, describe func(spec []string) string) ([]string, error) {
	var err error
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
		if !x.holds(ctx, f, x.cfg.Chain, r.spec) {
			// Not read back as listed (or already gone): by position below.
			left = true
			continue
		}
		if err := x.deleteSpec(ctx, f, x.cfg.Chain, r.spec); err != nil {
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
		if err := x.deleteAt(ctx, f, x.cfg.Chain, r, func(cur string) error {
			return fmt.Errorf("chain %s changed while removing foreign rules (rule %d is now %q)", x.cfg.Chain, r.pos, cur)
		}); err != nil {
			return removed, err
		}
		removed = append(removed, describe(r.spec))
	}
	return removed, nil
}
