package firewall

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// IPTables is the backend that writes one `-s PREFIX -j DROP` rule per ban
// into the chain (ip6tables for IPv6). The port restriction lives in the
// INPUT jump. It has no kernel timeouts: List reports Timeout 0 and the
// engine removes expired bans. Batches go through one
// `iptables-restore --noflush` per family.
//
// Setup and Repair keep the chain's per-ban DROP rules (a re-created chain
// is empty: they are entries, which the caller re-adds) and remove every
// other rule of it: the ipset backend's set match (left when the backend
// was switched without `banner teardown`) or a rule added by hand would
// drop clients whatever their bans, and no unban would lift it. Teardown
// also destroys the sets the ipset backend of the same configuration left,
// if nothing uses them.
type IPTables struct {
	*xt
	// reload is set by a Setup that took the reload path (see Setup):
	// the chain was not listed, and the caller should Replace its
	// content rather than List it. Guarded by xt.mu.
	reload bool
}

// Setup is the shared Setup (xt.Setup) but for one case, a restart with
// the chain in place under iptables-nft, where it lists no chain: when
// iptables is iptables-nft and each family's chain exists and is empty or
// begins with a per-ban DROP rule (read over netlink, see xtnft.go), it
// only makes sure of the INPUT jump, and ReplaceAtStart then tells the
// caller to make its bans the chain's content with Replace, which also
// drops whatever else the chain holds. Listing a chain of 100k rules
// there takes the kernel longer than reloading it (README, Performance).
// A chain that begins with another rule (the ipset backend's set match,
// another tool's rule) takes the shared path: listed, refused if none of
// its rules is banner's, its foreign rules removed and reported.
func (t *IPTables) Setup(ctx context.Context) error {
	t.mu.Lock()
	ok, err := t.setupForReload(ctx)
	t.mu.Unlock()
	if err != nil {
		return t.c.fail(fmt.Errorf("firewall setup: %w", err))
	}
	if ok {
		return nil
	}
	return t.xt.Setup(ctx)
}

// setupForReload is Setup's reload path; it reports whether it took it.
// Callers hold t.mu.
func (t *IPTables) setupForReload(ctx context.Context) (bool, error) {
	t.reload = false
	t.ensured = nil
	fams, err := t.families(ctx)
	if err != nil {
		return false, err
	}
	for _, f := range fams {
		if !t.isIPTablesNFT(ctx, f) {
			return false, nil
		}
		head, err := t.nftChainHead(ctx, f, t.cfg.Chain)
		if err != nil {
			t.log.Debug("reading the chain's head failed; listing it", "family", f.name, "err", err)
			return false, nil
		}
		if head != headEmpty && head != headDrop {
			return false, nil
		}
	}
	var made []string
	for _, f := range fams {
		// The chain exists (read just now): only the jump is checked.
		there := listing{exists: true, ok: true, gen: t.gen, at: time.Now()}
		changed, err := t.ensureChainAndJump(ctx, f, there)
		made = append(made, changed...)
		if err != nil {
			return true, err
		}
	}
	if len(made) > 0 {
		t.log.Info("firewall set up", "created", made)
	}
	t.reload = true
	return true, nil
}

// ReplaceAtStart reports whether the last Setup took the reload path and
// nothing has changed the chain since: the caller should then Replace its
// content instead of listing it. It reports it once.
func (t *IPTables) ReplaceAtStart() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	ok := t.reload
	t.reload = false
	return ok
}

// Replace makes entries the whole content of the chain, in one
// iptables-restore transaction per family that flushes the chain and
// refills it: atomic, so no ban is missing meanwhile. Every other rule of
// the chain goes too. Timeouts are ignored.
func (t *IPTables) Replace(ctx context.Context, entries []Entry) error {
	b := split(entries, t.cfg.IPv6)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.reload = false
	fams, err := t.families(ctx)
	if err != nil {
		return t.c.fail(fmt.Errorf("firewall replace: %w", err))
	}
	for i, f := range fams {
		es := b.v4
		if i == 1 {
			es = b.v6
		}
		lines := make([]string, 0, len(es)+1)
		lines = append(lines, "-F "+t.cfg.Chain)
		for _, e := range es {
			lines = append(lines, "-A "+t.cfg.Chain+" -s "+e.Prefix.String()+" -j DROP")
		}
		if err := t.restore(ctx, f, lines); err != nil {
			return t.c.fail(fmt.Errorf("firewall replace with %d rules: %w", len(es), err))
		}
		t.c.count("add", len(es))
		t.log.Debug("replaced the chain's rules", "family", f.name, "entries", len(es))
	}
	return t.c.fail(batchErr("replace", b.errs))
}

// Name returns "iptables".
func (t *IPTables) Name() string { return BackendIPTables }

// prepare has nothing to make outside the chain.
func (t *IPTables) prepare(context.Context, bool) ([]string, error) { return nil, nil }

// ensureRules has no fixed rule to make: the chain holds only bans.
func (t *IPTables) ensureRules(context.Context, *family, int) ([]string, error) { return nil, nil }

// owns takes the per-ban DROP rules of f's family for the backend's: the
// ones List and Remove see (dropSource decides for all three).
func (t *IPTables) owns(f *family, _ int) (own, alias func(spec []string) bool) {
	return func(spec []string) bool { return isDropRuleFor(f, spec) }, nil
}

// matchedSets is nil: the chain matches no set.
func (t *IPTables) matchedSets() []string { return nil }

// isDropRule reports whether spec is one of the backend's per-ban rules.
func isDropRule(spec []string) bool {
	_, ok := dropSource(spec)
	return ok
}

// isDropRuleFor is isDropRule for f's chain: the source must be of f's
// family as written, so "-s ::ffff:192.0.2.12 -j DROP" in the IPv6 chain,
// which List would report as 192.0.2.12/32 and Remove look for in the
// IPv4 chain, is not taken for a ban.
func isDropRuleFor(f *family, spec []string) bool {
	if !isDropRule(spec) {
		return false
	}
	a, err := netip.ParsePrefix(spec[1])
	if err != nil {
		addr, err := netip.ParseAddr(spec[1])
		if err != nil {
			return false
		}
		a = netip.PrefixFrom(addr, addr.BitLen())
	}
	return a.Addr().Is4() == (f.name == "IPv4")
}

// dropSources returns, for each source prefix with a plain DROP rule in the
// chain, how many such rules there are.
func (t *IPTables) dropSources(ctx context.Context, f *family) (map[netip.Prefix]int, error) {
	rules, exists, err := t.chainRules(ctx, f)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("%w: %s chain %s does not exist", ErrNotSetUp, f.cmd, t.cfg.Chain)
	}
	m := make(map[netip.Prefix]int, len(rules))
	for _, r := range rules {
		if p, ok := dropSource(r.spec); ok {
			m[p]++
		}
	}
	return m, nil
}

// dropSource recognises the spec "-s PREFIX -j DROP".
func dropSource(spec []string) (netip.Prefix, bool) {
	if len(spec) != 4 || spec[0] != "-s" || spec[2] != "-j" || spec[3] != "DROP" {
		return netip.Prefix{}, false
	}
	p, err := parsePrefixOrAddr(spec[1])
	return p, err == nil
}

// famsFor returns the families for a batch, checking the chain exists.
func (t *IPTables) famsFor(ctx context.Context, b batch) ([]*family, [][]Entry, error) {
	all, err := t.families(ctx)
	if err != nil {
		return nil, nil, err
	}
	var fams []*family
	var ess [][]Entry
	if len(b.v4) > 0 {
		fams, ess = append(fams, all[0]), append(ess, b.v4)
	}
	if len(b.v6) > 0 {
		fams, ess = append(fams, all[1]), append(ess, b.v6)
	}
	return fams, ess, nil
}

// Add appends a DROP rule for every entry that has none yet. Timeouts are
// ignored.
func (t *IPTables) Add(ctx context.Context, entries []Entry) error {
	return t.apply(ctx, "add", split(entries, t.cfg.IPv6), "new_rules", func(e Entry, have int) []string {
		if have > 0 {
			return nil
		}
		return []string{"-A " + t.cfg.Chain + " -s " + e.Prefix.String() + " -j DROP"}
	})
}

// Remove deletes every DROP rule for the prefixes; absent ones are ignored.
func (t *IPTables) Remove(ctx context.Context, prefixes []netip.Prefix) error {
	return t.apply(ctx, "remove", splitPrefixes(prefixes, t.cfg.IPv6), "rules", func(e Entry, have int) []string {
		var lines []string
		for range have {
			lines = append(lines, "-D "+t.cfg.Chain+" -s "+e.Prefix.String()+" -j DROP")
		}
		return lines
	})
}

// apply feeds, for each family of b, the lines lines returns for each
// entry (given how many DROP rules its prefix has now) to one
// iptables-restore, and counts the entries. rulesKey names the
// number of lines in the debug log.
func (t *IPTables) apply(ctx context.Context, op string, b batch, rulesKey string, lines func(e Entry, have int) []string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	fams, ess, err := t.famsFor(ctx, b)
	if err != nil {
		return t.c.fail(fmt.Errorf("firewall %s: %w", op, err))
	}
	for i, f := range fams {
		have, err := t.dropSources(ctx, f)
		if err != nil {
			return t.c.fail(fmt.Errorf("firewall %s: %w", op, err))
		}
		var batch []string
		for _, e := range ess[i] {
			batch = append(batch, lines(e, have[e.Prefix])...)
		}
		if err := t.restore(ctx, f, batch); err != nil {
			return t.c.fail(fmt.Errorf("firewall %s of %d rules: %w", op, len(batch), err))
		}
		t.c.count(op, len(ess[i]))
		t.log.Debug(done(op), "family", f.name, "entries", len(ess[i]), rulesKey, len(batch))
	}
	return t.c.fail(batchErr(op, b.errs))
}

// List returns one entry per banned source, all with Timeout 0.
func (t *IPTables) List(ctx context.Context) ([]Entry, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fams, err := t.families(ctx)
	if err != nil {
		return nil, t.c.fail(fmt.Errorf("firewall list: %w", err))
	}
	var all []Entry
	for _, f := range fams {
		// The listing Setup or Repair just read, if banner changed no
		// rule since: a chain of 100k is listed once per start.
		l, err := t.listChainReusing(ctx, f, t.cfg.Chain, t.ensured[f])
		delete(t.ensured, f)
		if err != nil {
			return nil, t.c.fail(fmt.Errorf("firewall list: %w", err))
		}
		rules := l.rules
		seen := make(map[netip.Prefix]bool, len(rules))
		for _, r := range rules {
			if p, ok := dropSource(r.spec); ok && !seen[p] {
				seen[p] = true
				all = append(all, Entry{Prefix: p})
			}
		}
	}
	return all, nil
}

// teardownSets is the iptables backend's teardown of the sets the ipset
// backend of the same configuration would have made (set4 and set6, IPv6
// on or off): left when the backend was switched without a teardown, they
// would hold memory and stale bans, and a later switch back would find
// them. It destroys each set that exists, if it looks like the ipset
// backend's (hash:net with timeouts), no banner process holds its lock and
// the kernel counts no reference to it; otherwise it keeps the set and says
// why. The chain is gone by then: a set match of the ipset backend's left
// in it no longer counts, though the kernel may take a moment to drop its
// reference. Without the ipset command there is nothing to look at.
func (t *IPTables) teardownSets(ctx context.Context) (removed, kept []string, err error) {
	if !haveIPSet() {
		return nil, nil, nil
	}
	names, err := t.setNames(ctx)
	if err != nil {
		return nil, []string{fmt.Sprintf("sets %s and %s, if any: could not look for sets left by the ipset backend: %v", t.cfg.Set4, t.cfg.Set6, err)}, nil
	}
	fams, err := t.families(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, set := range []string{t.cfg.Set4, t.cfg.Set6} {
		if !slices.Contains(names, set) {
			continue
		}
		r, k, err := t.destroyLeftSet(ctx, fams, set)
		if r != "" {
			removed = append(removed, r)
		}
		if k != "" {
			kept = append(kept, k)
		}
		if err != nil {
			return removed, kept, err
		}
	}
	return removed, kept, nil
}

// destroyLeftSet destroys one set for teardownSets, returning the line
// for Removed or for Kept.
func (t *IPTables) destroyLeftSet(ctx context.Context, fams []*family, set string) (removed, kept string, err error) {
	// The lock a running banner with the ipset backend holds on the set:
	// never destroy a set that banner manages.
	lock, err := lockNames([]lockName{{"set", set}})
	if err != nil {
		return "", fmt.Sprintf("set %s (left by the ipset backend?): %v; left in place", set, err), nil
	}
	defer lock.Release()
	out, err := t.setHeader(ctx, set)
	if err != nil {
		return "", "", err
	}
	h := parseIPSetHeader(out)
	entries, _ := ipsetEntries(out)
	what := fmt.Sprintf("set %s (%s, left by the ipset backend)", set, plural(entries, "entry"))
	if h.typ != ipsetType || !h.timeout {
		timeouts := "with timeouts"
		if !h.timeout {
			timeouts = "without timeouts"
		}
		return "", fmt.Sprintf("set %s (%s): not as the ipset backend makes it (type %s %s, want %s with timeouts), so not banner's; left in place",
			set, plural(entries, "entry"), h.typ, timeouts, ipsetType), nil
	}
	// The chain's rule, deleted a moment ago, may still count for a while.
	refs, err := t.setReferences(ctx, set, 0, out)
	if err != nil {
		return "", "", err
	}
	if refs > 0 {
		var users []string
		for _, f := range fams {
			r, err := t.foreignRefs(ctx, f, []string{set})
			if err != nil {
				return "", "", err
			}
			users = append(users, r...)
		}
		if len(users) == 0 {
			users = []string{"nothing an iptables listing of banner's shows: " + unlistedUsers}
		}
		return "", fmt.Sprintf("%s: something else uses it, the kernel counts %s to it: %s; left in place",
			what, plural(refs, "reference"), strings.Join(users, "; ")), nil
	}
	if err := t.destroySet(ctx, set); err != nil {
		if strings.Contains(err.Error(), "in use") {
			return "", fmt.Sprintf("%s: something else uses it (%v); left in place", what, err), nil
		}
		return "", "", fmt.Errorf("destroying set %s: %w", set, err)
	}
	return what, "", nil
}
