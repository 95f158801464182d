package firewall

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// TeardownReport is what a Teardown did.
type TeardownReport struct {
	// Removed has one line per piece removed, e.g. "IPv4 chain BANNER (3
	// rules)" or "set banner4 (2 entries)".
	Removed []string
	// Kept has one line per piece found but left in place, with the
	// reason: with the iptables backend, a set of the ipset backend's that
	// something still uses.
	Kept []string
}

// Teardown removes what Setup built (see Backend.Teardown): it checks that
// nothing banner did not make uses the chain or the sets, removes each
// family's INPUT jumps and chain, then lets the backend remove what it
// holds outside the chain (teardownSets).
func (x *xt) Teardown(ctx context.Context) (TeardownReport, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	var r TeardownReport
	var err error
	r.Removed, err = x.teardownChains(ctx, x.rules.matchedSets())
	if err == nil {
		var removed []string
		removed, r.Kept, err = x.rules.teardownSets(ctx)
		r.Removed = append(r.Removed, removed...)
	}
	if len(r.Removed) > 0 {
		x.log.Info("firewall torn down", "removed", r.Removed)
	}
	if len(r.Kept) > 0 {
		x.log.Warn("firewall teardown left these in place", "kept", r.Kept)
	}
	if err != nil {
		return r, x.c.fail(fmt.Errorf("firewall teardown: %w", err))
	}
	return r, nil
}

// teardownChains checks, for every family, that no foreign rule needs the
// chain or sets, then removes each family's INPUT jumps and chain.
func (x *xt) teardownChains(ctx context.Context, sets []string) ([]string, error) {
	fams, err := x.families(ctx)
	if err != nil {
		return nil, err
	}
	var foreign []string
	for _, f := range fams {
		refs, err := x.foreignRefs(ctx, f, sets)
		if err != nil {
			return nil, err
		}
		foreign = append(foreign, refs...)
	}
	if len(foreign) == 0 && len(sets) > 0 {
		if foreign, err = x.unlistedSetRefs(ctx, fams, sets); err != nil {
			return nil, err
		}
	}
	if len(foreign) > 0 {
		return nil, fmt.Errorf("rules that banner did not make use its chain %s or its sets, so those cannot be removed; nothing was changed. "+
			"Delete these rules by hand or point them elsewhere, then tear down again: %s",
			x.cfg.Chain, strings.Join(foreign, "; "))
	}
	var removed []string
	for _, f := range fams {
		r, err := x.teardownFamily(ctx, f)
		removed = append(removed, r...)
		if err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// setTables are the tables whose rules can match a set (-m set). A jump to
// the chain can only be in filter, where the chain is.
var setTables = []string{table, "raw", "mangle", "nat", "security"}

// foreignRefs lists the rules that banner did not make but that use its
// chain (a jump from a filter chain other than INPUT) or one of sets (a
// match outside the chain, in any table of setTables), as
// "IPv4 -A CHAIN SPEC" for filter and "IPv4 -t TABLE -A CHAIN SPEC" for
// the others.
func (x *xt) foreignRefs(ctx context.Context, f *family, sets []string) ([]string, error) {
	tables := setTables
	if len(sets) == 0 {
		tables = tables[:1]
	}
	var refs []string
	loaded := x.legacyTables(ctx, f)
	for _, tbl := range tables {
		if loaded != nil && tbl != table && !loaded[tbl] {
			continue // not there, and listing it would create it
		}
		lines, err := x.tableLines(ctx, f, tbl)
		if err != nil {
			if tbl != table && strings.Contains(err.Error(), "does not exist") {
				continue // no such table in this kernel: nothing in it
			}
			return nil, err
		}
		where := f.name + " "
		if tbl != table {
			where += "-t " + tbl + " "
		}
		for _, l := range lines {
			w := splitWords(l)
			if len(w) < 2 || w[0] != "-A" || (tbl == table && w[1] == x.cfg.Chain) {
				continue
			}
			spec := w[2:]
			uses := tbl == table && w[1] != "INPUT" && jumpsTo(spec, x.cfg.Chain)
			for i := 0; i+1 < len(spec) && !uses; i++ {
				uses = spec[i] == "--match-set" && slices.Contains(sets, spec[i+1])
			}
			if uses {
				refs = append(refs, where+strings.TrimSpace(l))
			}
		}
	}
	return refs, nil
}

// unlistedSetRefs compares each existing set's reference count in the
// kernel with the rules of banner's chain that match it, in every family,
// and describes each set used by more: by something the listings do not
// show. The kernel may drop the reference of a rule deleted a moment ago
// a little later, so an excess is asked again for up to a second.
func (x *xt) unlistedSetRefs(ctx context.Context, fams []*family, sets []string) ([]string, error) {
	own := make(map[string]int, len(sets))
	for _, f := range fams {
		rules, _, err := x.chainRules(ctx, f)
		if err != nil {
			return nil, err
		}
		for _, r := range rules {
			for i := 0; i+1 < len(r.spec); i++ {
				if r.spec[i] == "--match-set" {
					own[r.spec[i+1]]++
				}
			}
		}
	}
	names, err := x.setNames(ctx)
	if err != nil {
		return nil, err
	}
	var refs []string
	for _, set := range sets {
		if !slices.Contains(names, set) {
			continue
		}
		n, err := x.setReferences(ctx, set, own[set], nil)
		if err != nil {
			return nil, err
		}
		if n > own[set] {
			refs = append(refs, fmt.Sprintf("set %s: the kernel counts %d references to it, banner's chain accounts for %d; "+
				"something no iptables listing of banner's shows uses it: "+unlistedUsers,
				set, n, own[set]))
		}
	}
	return refs, nil
}

// unlistedUsers says what may use a set that no iptables listing of
// banner's shows using it, and where to look.
const unlistedUsers = "a rule of the other iptables variant, iptables-legacy or iptables-nft; " +
	"an nft rule using the set match; a list:set. Look with `ipset list`, iptables-legacy-save, ip6tables-legacy-save and nft list ruleset"

// teardownFamily deletes every INPUT jump to the chain, then flushes and
// deletes the chain, and returns what it removed.
func (x *xt) teardownFamily(ctx context.Context, f *family) ([]string, error) {
	var removed []string
	rules, err := x.inputRules(ctx, f)
	if err != nil {
		return nil, err
	}
	left := false
	for _, r := range rules {
		if !jumpsTo(r.spec, x.cfg.Chain) {
			continue
		}
		deleted, err := x.deleteRule(ctx, f, "INPUT", r.spec)
		if err != nil {
			return removed, err
		}
		if !deleted {
			left = true
			continue
		}
		removed = append(removed, f.name+" jump -A INPUT "+strings.Join(r.spec, " "))
	}
	if left {
		// A jump listed in a form iptables does not read back as the same
		// rule: delete what is left by position, from a fresh listing,
		// last first so the positions hold.
		if rules, err = x.inputRules(ctx, f); err != nil {
			return removed, err
		}
		for i := len(rules) - 1; i >= 0; i-- {
			r := rules[i]
			if !jumpsTo(r.spec, x.cfg.Chain) {
				continue
			}
			// Other tools (fail2ban, docker, ufw) may insert into INPUT
			// between the listing and the deletion: look at the rule at
			// that position right before deleting it, and stop if it is
			// another one. A window remains between the two commands,
			// much shorter than the whole teardown.
			if err := x.deleteAt(ctx, f, "INPUT", r, func(cur string) error {
				return fmt.Errorf("INPUT changed while tearing down (rule %d is now %q, not banner's jump): run banner teardown again", r.pos, cur)
			}); err != nil {
				return removed, err
			}
			removed = append(removed, f.name+" jump -A INPUT "+strings.Join(r.spec, " "))
		}
	}
	chain, exists, err := x.chainRules(ctx, f)
	if err != nil || !exists {
		return removed, err
	}
	if err := x.deleteChain(ctx, f, x.cfg.Chain); err != nil {
		return removed, err
	}
	return append(removed, fmt.Sprintf("%s chain %s (%s)", f.name, x.cfg.Chain, plural(len(chain), "rule"))), nil
}

// plural is "1 rule", "2 rules", "1 entry", "0 entries".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	if s, ok := strings.CutSuffix(noun, "y"); ok {
		return strconv.Itoa(n) + " " + s + "ies"
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
