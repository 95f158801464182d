package firewall

import (
	"context"
	"fmt"
	"net/netip"
)

// IPTables is the backend that writes one `-s PREFIX -j DROP` rule per ban
// into the chain (ip6tables for IPv6). The port restriction lives in the
// INPUT jump. It has no kernel timeouts: List reports Timeout 0 and the
// engine removes expired bans. Batches go through one
// `iptables-restore --noflush` per family.
type IPTables struct {
	xt *xt
}

// Name returns "iptables".
func (t *IPTables) Name() string { return BackendIPTables }

// Stats returns the backend's counters.
func (t *IPTables) Stats() Stats { return t.xt.c.stats() }

// Setup creates the chain and the jump for each family. The chain's
// per-ban DROP rules are kept; any other rule in it is removed (see Repair).
func (t *IPTables) Setup(ctx context.Context) error {
	x := t.xt
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.checkChainIsBanners(ctx); err != nil {
		return x.c.fail(fmt.Errorf("firewall setup: %w", err))
	}
	made, foreign, err := t.ensure(ctx)
	if len(made) > 0 {
		x.log.Info("firewall set up", "created", made)
	}
	x.repaired(nil, foreign)
	if err != nil {
		return x.c.fail(fmt.Errorf("firewall setup: %w", err))
	}
	return nil
}

// Repair restores a missing chain or jump. A re-created chain is empty: the
// DROP rules are entries, which the caller re-adds. It then removes from
// the chain every rule but the per-ban `-s X -j DROP` ones: the ipset
// backend's set match (left when the backend was switched without
// `banner teardown`) or a rule added by hand would drop clients whatever
// their bans, and no unban would lift it.
func (t *IPTables) Repair(ctx context.Context) ([]string, error) {
	x := t.xt
	x.mu.Lock()
	defer x.mu.Unlock()
	made, foreign, err := t.ensure(ctx)
	x.repaired(made, foreign)
	made = append(made, foreign...)
	if err != nil {
		return made, x.c.fail(fmt.Errorf("firewall repair: %w", err))
	}
	return made, nil
}

// ensure makes the chain and jump of each family and then removes the
// chain's foreign rules: all but the per-ban DROP rules, which List and
// Remove see (dropSource decides for all three).
func (t *IPTables) ensure(ctx context.Context) (made, foreign []string, err error) {
	x := t.xt
	fams, err := x.families(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, f := range fams {
		changed, err := x.ensureChainAndJump(ctx, f)
		made = append(made, changed...)
		if err != nil {
			return made, foreign, err
		}
		removed, err := x.removeForeign(ctx, f, func(spec []string) bool { return isDropRuleFor(f, spec) }, nil)
		foreign = append(foreign, removed...)
		if err != nil {
			return made, foreign, err
		}
	}
	return made, foreign, nil
}

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
	rules, exists, err := t.xt.chainRules(ctx, f)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("%w: %s chain %s does not exist", ErrNotSetUp, f.cmd, t.xt.cfg.Chain)
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
	all, err := t.xt.families(ctx)
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
	x := t.xt
	b := split(entries, x.cfg.IPv6)
	x.mu.Lock()
	defer x.mu.Unlock()
	fams, ess, err := t.famsFor(ctx, b)
	if err != nil {
		return x.c.fail(fmt.Errorf("firewall add: %w", err))
	}
	for i, f := range fams {
		have, err := t.dropSources(ctx, f)
		if err != nil {
			return x.c.fail(fmt.Errorf("firewall add: %w", err))
		}
		var lines []string
		for _, e := range ess[i] {
			if have[e.Prefix] == 0 {
				lines = append(lines, "-A "+x.cfg.Chain+" -s "+e.Prefix.String()+" -j DROP")
			}
		}
		if err := x.restore(ctx, f, lines); err != nil {
			return x.c.fail(fmt.Errorf("firewall add of %d rules: %w", len(lines), err))
		}
		x.c.adds.Add(uint64(len(ess[i])))
		x.log.Debug("added", "family", f.name, "entries", len(ess[i]), "new_rules", len(lines))
	}
	return x.c.fail(batchErr("add", b.errs))
}

// Remove deletes every DROP rule for the prefixes; absent ones are ignored.
func (t *IPTables) Remove(ctx context.Context, prefixes []netip.Prefix) error {
	x := t.xt
	b := splitPrefixes(prefixes, x.cfg.IPv6)
	x.mu.Lock()
	defer x.mu.Unlock()
	fams, ess, err := t.famsFor(ctx, b)
	if err != nil {
		return x.c.fail(fmt.Errorf("firewall remove: %w", err))
	}
	for i, f := range fams {
		have, err := t.dropSources(ctx, f)
		if err != nil {
			return x.c.fail(fmt.Errorf("firewall remove: %w", err))
		}
		var lines []string
		for _, e := range ess[i] {
			for range have[e.Prefix] {
				lines = append(lines, "-D "+x.cfg.Chain+" -s "+e.Prefix.String()+" -j DROP")
			}
		}
		if err := x.restore(ctx, f, lines); err != nil {
			return x.c.fail(fmt.Errorf("firewall remove of %d rules: %w", len(lines), err))
		}
		x.c.removes.Add(uint64(len(ess[i])))
		x.log.Debug("removed", "family", f.name, "entries", len(ess[i]), "rules", len(lines))
	}
	return x.c.fail(batchErr("remove", b.errs))
}

// List returns one entry per banned source, all with Timeout 0.
func (t *IPTables) List(ctx context.Context) ([]Entry, error) {
	x := t.xt
	x.mu.Lock()
	defer x.mu.Unlock()
	fams, err := x.families(ctx)
	if err != nil {
		return nil, x.c.fail(fmt.Errorf("firewall list: %w", err))
	}
	var all []Entry
	for _, f := range fams {
		rules, _, err := x.chainRules(ctx, f)
		if err != nil {
			return nil, x.c.fail(fmt.Errorf("firewall list: %w", err))
		}
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

// Teardown removes the jumps and the chain with all its rules (see
// Uninstall).
func (t *IPTables) Teardown(ctx context.Context) error {
	_, err := t.uninstall(ctx)
	return err
}
