package firewall

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/banner-mta/banner/banner"
)

// Names of the sasl group's pieces are the main group's with these
// suffixes: chain BANNER_SASL, sets banner4_sasl and banner6_sasl, table
// inet banner_sasl.
const (
	saslChainSuffix = "_SASL"
	saslNameSuffix  = "_sasl"
)

// GroupConfig returns the configuration of port group g's member backend:
// for banner.GroupMain c itself; for banner.GroupSASL c with SASLPorts as
// its ports and its own names (Chain + "_SASL", Set4, Set6 and NFTTable +
// "_sasl"), so that the group is a whole instance of the backend (its own
// table, or its own chain, INPUT jump and sets) beside the main one,
// whose rules and names stay as they were before groups existed. With no
// SASLPorts the sasl group's ports are Ports: the configuration then only
// names what Setup and Teardown remove (a sasl group an earlier
// configuration made).
func (c Config) GroupConfig(g banner.Groups) Config {
	if g != banner.GroupSASL {
		c.SASLPorts = nil
		return c
	}
	if len(c.SASLPorts) > 0 {
		c.Ports = c.SASLPorts
	}
	c.SASLPorts = nil
	c.Chain += saslChainSuffix
	c.Set4 += saslNameSuffix
	c.Set6 += saslNameSuffix
	c.NFTTable += saslNameSuffix
	if c.Logger != nil {
		c.Logger = c.Logger.With("group", "sasl")
	}
	return c
}

// checkGroupNames checks that the sasl group's names fit the kernel's
// limits. Without SASLPorts that is no error: no sasl group can have
// been made with those names, so there is none to remove (see
// saslNamesFit).
func (c Config) checkGroupNames() []error {
	if len(c.SASLPorts) == 0 {
		return nil
	}
	return c.groupNameErrors()
}

// saslNamesFit reports whether the sasl group's names fit the kernel's
// limits.
func (c Config) saslNamesFit() bool { return len(c.groupNameErrors()) == 0 }

// groupNameErrors is checkGroupNames whatever SASLPorts.
func (c Config) groupNameErrors() []error {
	var errs []error
	s := c.GroupConfig(banner.GroupSASL)
	if len(s.Chain) > MaxChainName && len(c.Chain) <= MaxChainName {
		errs = append(errs, fmt.Errorf("chain: %q is too long for the sasl group's chain %q (at most %d characters)", c.Chain, s.Chain, MaxChainName-len(saslChainSuffix)))
	}
	for _, n := range []struct{ key, main, sasl string }{{"set4", c.Set4, s.Set4}, {"set6", c.Set6, s.Set6}} {
		if len(n.sasl) > MaxSetName && len(n.main) <= MaxSetName {
			errs = append(errs, fmt.Errorf("%s: %q is too long for the sasl group's set %q (at most %d characters)", n.key, n.main, n.sasl, MaxSetName-len(saslNameSuffix)))
		}
	}
	if (c.Backend == BackendNFTables || c.Backend == BackendAuto) && len(s.NFTTable) > MaxNFTName && len(c.NFTTable) <= MaxNFTName {
		errs = append(errs, fmt.Errorf("nft_table: %q is too long for the sasl group's table %q", c.NFTTable, s.NFTTable))
	}
	for _, n := range []string{s.Set4, s.Set6} {
		if n == c.Set4 || n == c.Set6 {
			errs = append(errs, fmt.Errorf("set4, set6: the sasl group's set %q is one of the main sets", n))
		}
	}
	return errs
}

// Grouped is the Backend New returns: one member backend per port group,
// each a whole instance of the configured backend with its own ports and
// names (GroupConfig). An Entry goes to the members of its Groups; Remove,
// Repair, List and Teardown cover every member. Without SASLPorts the
// sasl group's entries go to the main member, and Setup removes a sasl
// member an earlier configuration left (so its entries, which no unban
// would reach, stop dropping clients); Teardown always removes it.
type Grouped struct {
	main, sasl Backend // sasl nil: no sasl group can exist (names too long)
	saslOn     bool    // the sasl group has ports of its own
	log        *slog.Logger
}

var _ Backend = (*Grouped)(nil)

// Member returns the backend of group g (banner.GroupMain or
// banner.GroupSASL; without SASLPorts the sasl group's is the main one).
func (g *Grouped) Member(grp banner.Groups) Backend {
	if grp == banner.GroupSASL && g.saslOn {
		return g.sasl
	}
	return g.main
}

// members returns the members in use, main first.
func (g *Grouped) members() []Backend {
	if g.saslOn {
		return []Backend{g.main, g.sasl}
	}
	return []Backend{g.main}
}

// Name returns the backend's name.
func (g *Grouped) Name() string { return g.main.Name() }

// Setup sets up every group's member. Without SASLPorts it removes what a
// sasl group of an earlier configuration left.
func (g *Grouped) Setup(ctx context.Context) error {
	if err := g.main.Setup(ctx); err != nil {
		return err
	}
	if g.saslOn {
		if err := g.sasl.Setup(ctx); err != nil {
			return fmt.Errorf("sasl group: %w", err)
		}
		return nil
	}
	if g.sasl == nil || g.sasl.Name() == BackendNone {
		return nil
	}
	rep, err := g.sasl.Teardown(ctx)
	if len(rep.Removed) > 0 {
		g.log.Warn("removed the sasl port group an earlier configuration made ([ban.sasl] ports is empty now: sasl bans close [firewall] ports)",
			"removed", rep.Removed)
	}
	if err != nil {
		g.log.Warn("could not remove the sasl port group an earlier configuration made", "err", err)
	}
	return nil
}

// Repair repairs every group's member.
func (g *Grouped) Repair(ctx context.Context) ([]string, error) {
	var all []string
	var errs []error
	for i, m := range g.members() {
		r, err := m.Repair(ctx)
		if i == 1 {
			for j := range r {
				r[j] = "sasl group: " + r[j]
			}
			if err != nil {
				err = fmt.Errorf("sasl group: %w", err)
			}
		}
		all = append(all, r...)
		errs = append(errs, err)
	}
	return all, errors.Join(errs...)
}

// split sorts entries by member: the main member's and the sasl
// member's. An entry of both groups goes to both.
func (g *Grouped) split(entries []Entry) (main, sasl []Entry) {
	if !g.saslOn || !slices.ContainsFunc(entries, func(e Entry) bool { return e.Groups.Has(banner.GroupSASL) }) {
		return entries, nil // the common batch: no copy
	}
	for _, e := range entries {
		grp := e.Groups.OrMain()
		if grp.Has(banner.GroupSASL) && g.saslOn {
			sasl = append(sasl, e)
			grp &^= banner.GroupSASL
		}
		if grp != 0 {
			main = append(main, e)
		}
	}
	return main, sasl
}

// Add adds each entry to the sets of its groups (it is not removed from
// the others).
func (g *Grouped) Add(ctx context.Context, entries []Entry) error {
	main, sasl := g.split(entries)
	var errs []error
	if len(main) > 0 {
		errs = append(errs, g.main.Add(ctx, main))
	}
	if len(sasl) > 0 {
		if err := g.sasl.Add(ctx, sasl); err != nil {
			errs = append(errs, fmt.Errorf("sasl group: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Remove removes the prefixes from every group.
func (g *Grouped) Remove(ctx context.Context, prefixes []netip.Prefix) error {
	var errs []error
	for i, m := range g.members() {
		err := m.Remove(ctx, prefixes)
		if err != nil && i == 1 {
			err = fmt.Errorf("sasl group: %w", err)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// List returns the entries of every group, one per prefix, sorted; Groups
// names the groups whose sets hold it (0 for the main group alone, as
// from a backend of one group), Timeout is the longest of theirs.
func (g *Grouped) List(ctx context.Context) ([]Entry, error) {
	main, err := g.main.List(ctx)
	if err != nil || !g.saslOn {
		return main, err
	}
	sasl, err := g.sasl.List(ctx)
	if err != nil {
		return nil, fmt.Errorf("sasl group: %w", err)
	}
	if len(sasl) == 0 {
		return main, nil
	}
	at := make(map[netip.Prefix]int, len(sasl))
	for i, e := range main {
		at[e.Prefix] = i
	}
	for _, e := range sasl {
		if i, ok := at[e.Prefix]; ok {
			main[i].Groups = banner.AllGroups
			if e.Timeout > main[i].Timeout {
				main[i].Timeout = e.Timeout
			}
			continue
		}
		main = append(main, Entry{Prefix: e.Prefix, Timeout: e.Timeout, Groups: banner.GroupSASL})
	}
	slices.SortFunc(main, func(a, b Entry) int { return comparePrefix(a.Prefix, b.Prefix) })
	return main, nil
}

// Teardown removes every group's member, the sasl group's also when
// SASLPorts is empty now (an earlier configuration may have made it).
func (g *Grouped) Teardown(ctx context.Context) (TeardownReport, error) {
	rep, err := g.main.Teardown(ctx)
	if err != nil || g.sasl == nil {
		return rep, err
	}
	s, err := g.sasl.Teardown(ctx)
	rep.Removed = append(rep.Removed, s.Removed...)
	rep.Kept = append(rep.Kept, s.Kept...)
	if err != nil {
		return rep, fmt.Errorf("sasl group: %w", err)
	}
	return rep, nil
}

// Stats returns the members' counters added up; the last error and repair
// are the latest of any member.
func (g *Grouped) Stats() Stats {
	s := g.main.Stats()
	if !g.saslOn {
		return s
	}
	t := g.sasl.Stats()
	s.Adds += t.Adds
	s.Removes += t.Removes
	s.Errors += t.Errors
	s.HookRepairs += t.HookRepairs
	if t.LastErrorTime.After(s.LastErrorTime) {
		s.LastError, s.LastErrorTime = "sasl group: "+t.LastError, t.LastErrorTime
	}
	if t.LastHookRepairTime.After(s.LastHookRepairTime) {
		s.LastHookRepair, s.LastHookRepairTime = "sasl group: "+t.LastHookRepair, t.LastHookRepairTime
	}
	return s
}

// CanReplace reports whether Replace works: every member in use is a
// backend that can replace its entries (ipset).
func (g *Grouped) CanReplace() bool {
	for _, m := range g.members() {
		if _, ok := m.(interface {
			Replace(context.Context, []Entry) error
		}); !ok {
			return false
		}
	}
	return true
}

// ReplaceAtStart reports whether the last Setup of any member asked for
// a Replace instead of a listing (the iptables backend under iptables-nft
// with its chain in place) and every member can replace its entries. A
// member whose Setup took the listing path is replaced too, which is
// correct for it, only its strays go uncounted. It asks every member, so
// each reports once.
func (g *Grouped) ReplaceAtStart() bool {
	reload := false
	for _, m := range g.members() {
		if r, ok := m.(interface{ ReplaceAtStart() bool }); ok && r.ReplaceAtStart() {
			reload = true
		}
	}
	return reload && g.CanReplace()
}

// Replace makes entries the whole content of every group, each member
// its own groups' entries, where every member can (the ipset backend);
// otherwise it changes nothing and returns an error.
func (g *Grouped) Replace(ctx context.Context, entries []Entry) error {
	type replacer interface {
		Replace(ctx context.Context, entries []Entry) error
	}
	rs := make([]replacer, 0, 2)
	for _, m := range g.members() {
		r, ok := m.(replacer)
		if !ok {
			return fmt.Errorf("the %s backend cannot replace its entries", m.Name())
		}
		rs = append(rs, r)
	}
	main, sasl := g.split(entries)
	if err := rs[0].Replace(ctx, main); err != nil {
		return err
	}
	if len(rs) > 1 {
		if err := rs[1].Replace(ctx, sasl); err != nil {
			return fmt.Errorf("sasl group: %w", err)
		}
	}
	return nil
}

// GroupPorts returns the ports of each group in use: the main group's,
// and the sasl group's when it has ports of its own.
func (c Config) GroupPorts() map[banner.Groups][]uint16 {
	m := map[banner.Groups][]uint16{banner.GroupMain: sortedPorts(c.Ports)}
	if len(c.SASLPorts) > 0 {
		m[banner.GroupSASL] = sortedPorts(c.SASLPorts)
	}
	return m
}

func sortedPorts(p []uint16) []uint16 {
	p = slices.Clone(p)
	slices.SortFunc(p, cmp.Compare)
	return p
}

// DefaultSASLPorts is the default of Config.SASLPorts ([ban.sasl]
// ports): the ports a sasl ban closes. 465 and 587 are where Postfix
// offers AUTH in the submission services of master.cf; 25 is in because a
// Debian Postfix whose main.cf says smtpd_sasl_auth_enable = yes (as many
// guides have it) offers AUTH there too, and a sasl ban without 25 would
// leave such a host's attacked port open (a ban is per address, whatever
// service logged the failures). Where AUTH is offered on the submission
// ports only, [465, 587] lets a client banned for guessing passwords still
// deliver mail to port 25.
var DefaultSASLPorts = []uint16{25, 465, 587}
