package firewall

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// IPSet is the default backend: bans are entries of two hash:net sets with
// kernel timeouts, matched by one DROP rule per family in the chain.
//
// ipset timeouts are capped at MaxIPSetTimeout seconds (about 24.8 days);
// longer bans get that timeout and the engine's reconcile re-adds them.
//
// Setup and Repair also create the sets (Setup checks existing ones for
// type, family and timeout support) and the set match rules; every other
// rule of the chain is removed: one of the iptables backend's
// `-s X -j DROP` rules (left when the backend was switched without
// `banner teardown`) or one added by hand would drop its source whatever
// its ban, and no unban would lift it. Teardown also destroys the sets.
type IPSet struct {
	*xt
	nl *netlink.Handle // small batches go over netlink; made on first use, guarded by mu
}

// Name returns "ipset".
func (s *IPSet) Name() string { return BackendIPSet }

type setSpec struct {
	name   string
	family string // "inet" or "inet6"
	key    string // config key naming it
}

func (s *IPSet) sets() []setSpec {
	ss := []setSpec{{s.cfg.Set4, "inet", "set4"}}
	if s.cfg.IPv6 {
		ss = append(ss, setSpec{s.cfg.Set6, "inet6", "set6"})
	}
	return ss
}

// prepare creates the sets that are missing; with check, existing ones
// are checked for type, family and timeout support.
func (s *IPSet) prepare(ctx context.Context, check bool) (made []string, err error) {
	names, err := s.setNames(ctx)
	if err != nil {
		return nil, err
	}
	for _, ss := range s.sets() {
		if slices.Contains(names, ss.name) {
			if !check {
				continue
			}
			if err := s.checkSet(ctx, ss); err != nil {
				return made, err
			}
			continue
		}
		if err := s.createSet(ctx, ss.name, ss.family, s.cfg.MaxElem); err != nil {
			if ss.family == "inet6" {
				err = fmt.Errorf("%w; if this host has no IPv6 firewall, set firewall ipv6 = false", err)
			}
			return made, fmt.Errorf("creating set %s: %w", ss.name, err)
		}
		made = append(made, "set "+ss.name)
	}
	return made, nil
}

// ensureRules appends the set match rule to f's chain if it is missing.
func (s *IPSet) ensureRules(ctx context.Context, f *family, i int) ([]string, error) {
	spec := matchSpec(s.sets()[i].name)
	ok, err := s.ruleExists(ctx, f, s.cfg.Chain, spec)
	if err != nil || ok {
		return nil, err
	}
	if err := s.appendRule(ctx, f, s.cfg.Chain, spec); err != nil {
		return nil, err
	}
	return []string{f.name + " rule -A " + s.cfg.Chain + " " + strings.Join(spec, " ")}, nil
}

// owns takes the set match rule, as printed, for the backend's; or, if no
// listed rule is printed so, any rule that drops the set's sources.
func (s *IPSet) owns(f *family, i int) (own, alias func(spec []string) bool) {
	set := s.sets()[i].name
	want := strings.Join(matchSpec(set), " ")
	return func(sp []string) bool { return strings.Join(sp, " ") == want },
		func(sp []string) bool { return dropsSetSource(sp, set) }
}

// matchedSets are the names of the sets.
func (s *IPSet) matchedSets() []string {
	var names []string
	for _, ss := range s.sets() {
		names = append(names, ss.name)
	}
	return names
}

// matchSpec is the chain rule that drops sources in set.
func matchSpec(set string) []string {
	return []string{"-m", "set", "--match-set", set, "src", "-j", "DROP"}
}

// dropsSetSource reports whether spec drops the sources in set: a
// "--match-set SET src" match, not negated, and the DROP target, whatever
// else iptables prints around them.
func dropsSetSource(spec []string, set string) bool {
	if slices.Contains(spec, "!") || len(spec) < 2 || spec[len(spec)-2] != "-j" || spec[len(spec)-1] != "DROP" {
		return false
	}
	for i := 0; i+2 < len(spec); i++ {
		if spec[i] == "--match-set" && spec[i+1] == set && spec[i+2] == "src" {
			return true
		}
	}
	return false
}

// checkSet verifies that an existing set can hold our entries.
func (s *IPSet) checkSet(ctx context.Context, ss setSpec) error {
	out, err := s.setHeader(ctx, ss.name)
	if err != nil {
		return err
	}
	h := parseIPSetHeader(out)
	fix := fmt.Sprintf("delete the rules using it and run `ipset destroy %s`, or set firewall %s to another name", ss.name, ss.key)
	switch {
	case h.typ != ipsetType:
		return fmt.Errorf("set %s exists with type %q, want %s: %s", ss.name, h.typ, ipsetType, fix)
	case h.family != ss.family:
		return fmt.Errorf("set %s exists with family %q, want %s: %s", ss.name, h.family, ss.family, fix)
	case !h.timeout:
		return fmt.Errorf("set %s exists without timeout support, want `timeout 0`: %s", ss.name, fix)
	case h.maxelem > 0 && h.maxelem < s.cfg.MaxElem:
		s.log.Warn("existing set is smaller than configured; keeping it",
			"set", ss.name, "maxelem", h.maxelem, "configured", s.cfg.MaxElem,
			"fix", "destroy the set while banner is stopped so it is re-created")
	}
	return nil
}

// Add adds or refreshes entries through one `ipset restore -exist`.
func (s *IPSet) Add(ctx context.Context, entries []Entry) error {
	return s.apply(ctx, "add", split(entries, s.cfg.IPv6), func(set string, e Entry) string {
		return fmt.Sprintf("add %s %s timeout %d\n", set, ipsetElem(e.Prefix), ipsetTimeout(e.Timeout))
	})
}

// Remove deletes entries through one `ipset restore -exist`; absent ones are
// ignored.
func (s *IPSet) Remove(ctx context.Context, prefixes []netip.Prefix) error {
	return s.apply(ctx, "remove", splitPrefixes(prefixes, s.cfg.IPv6), func(set string, e Entry) string {
		return fmt.Sprintf("del %s %s\n", set, ipsetElem(e.Prefix))
	})
}

// apply feeds one line per entry of b to one `ipset restore -exist` and
// counts the entries.
func (s *IPSet) apply(ctx context.Context, op string, b batch, line func(set string, e Entry) string) error {
	var buf bytes.Buffer
	buf.Grow((len(b.v4) + len(b.v6)) * 48)
	for _, e := range b.v4 {
		buf.WriteString(line(s.cfg.Set4, e))
	}
	for _, e := range b.v6 {
		buf.WriteString(line(s.cfg.Set6, e))
	}
	count := len(b.v4) + len(b.v6)
	s.mu.Lock()
	defer s.mu.Unlock()
	if count > 0 && count <= netlinkMax && s.netlinkApply(op, b) {
		s.c.count(op, count)
		s.log.Debug(done(op), "entries", count, "via", "netlink")
		return s.c.fail(batchErr(op, b.errs))
	}
	if count > 0 {
		if err := s.ipsetRestore(ctx, buf.Bytes()); err != nil {
			return s.c.fail(fmt.Errorf("firewall %s of %d entries: %w", op, count, notSetUp(err)))
		}
		s.c.count(op, count)
		s.log.Debug(done(op), "entries", count)
	}
	return s.c.fail(batchErr(op, b.errs))
}

// Replace makes entries the whole content of the sets, atomically per
// family: one `ipset restore` creates a scratch set per family, fills it,
// swaps it with the live set (the match rules follow the live set's name,
// so no packet sees a half-filled set) and destroys it. ipset adds to a set
// made in the same session about twice as fast as to an existing one,
// which is what makes a 100k restore at start cost about one plain
// `ipset restore`. Whatever the live sets held before is gone, so the
// caller passes every entry it wants kept. The scratch sets are named
// after the live ones with "-swap" appended (cut to ipset's 31 bytes);
// a set of that name is taken for a leftover of banner's. Every scratch
// set is filled before the first swap, so a failure while filling leaves
// the live sets as they were; the scratch sets are then destroyed.
func (s *IPSet) Replace(ctx context.Context, entries []Entry) error {
	b := split(entries, s.cfg.IPv6)
	var buf bytes.Buffer
	buf.Grow((len(b.v4) + len(b.v6)) * 40)
	var scratch, swaps []string
	for i, ss := range s.sets() {
		es := b.v4
		if i == 1 {
			es = b.v6
		}
		tmp := scratchName(ss.name)
		scratch = append(scratch, tmp)
		fmt.Fprintf(&buf, "create %s %s family %s timeout 0 maxelem %d\nflush %s\n", tmp, ipsetType, ss.family, s.cfg.MaxElem, tmp)
		for _, e := range es {
			buf.WriteString("add ")
			buf.WriteString(tmp)
			buf.WriteByte(' ')
			buf.WriteString(ipsetElem(e.Prefix))
			buf.WriteString(" timeout ")
			buf.WriteString(strconv.FormatInt(ipsetTimeout(e.Timeout), 10))
			buf.WriteByte('\n')
		}
		swaps = append(swaps, fmt.Sprintf("swap %s %s\ndestroy %s\n", tmp, ss.name, tmp))
	}
	// The swaps last: a failure while filling changes no live set.
	for _, sw := range swaps {
		buf.WriteString(sw)
	}
	count := len(b.v4) + len(b.v6)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.ipsetRestore(ctx, buf.Bytes()); err != nil {
		for _, tmp := range scratch {
			_, _ = s.run(ctx, nil, "ipset", "destroy", tmp)
		}
		return s.c.fail(fmt.Errorf("firewall replace with %d entries: %w", count, notSetUp(err)))
	}
	s.c.count("add", count)
	s.log.Debug("replaced set contents", "entries", count)
	return s.c.fail(batchErr("add", b.errs))
}

// scratchName is the name of the set Replace fills before swapping it with
// set: ipset names are at most 31 bytes.
func scratchName(set string) string {
	const suffix = "-swap"
	if len(set)+len(suffix) > 31 {
		set = set[:31-len(suffix)]
	}
	return set + suffix
}

// netlinkMax is the largest batch Add and Remove send over netlink, one
// message per entry (about 0.1 ms each), instead of through one `ipset
// restore` process (about 3 ms however small the batch).
const netlinkMax = 64

// netlinkApply adds (op "add", replacing the timeout of an existing
// entry) or deletes (op "remove") the entries of b through the kernel's
// ipset netlink interface and reports whether every entry went through.
// On the first failure (a missing set, an absent entry to delete, no
// netlink ipset support) it stops and returns false: the caller then
// applies the whole batch through `ipset restore -exist`, which ignores
// absent entries, says what is wrong otherwise, and makes the entries
// already sent here what they are anyway. Callers hold s.mu.
func (s *IPSet) netlinkApply(op string, b batch) bool {
	if s.nl == nil {
		h, err := netlink.NewHandle(unix.NETLINK_NETFILTER)
		if err != nil {
			return false
		}
		s.nl = h
	}
	for i, es := range [][]Entry{b.v4, b.v6} {
		set := s.cfg.Set4
		if i == 1 {
			set = s.cfg.Set6
		}
		for _, e := range es {
			entry := &netlink.IPSetEntry{IP: e.Prefix.Addr().AsSlice(), CIDR: uint8(e.Prefix.Bits())}
			var err error
			if op == "add" {
				timeout := uint32(ipsetTimeout(e.Timeout))
				entry.Timeout, entry.Replace = &timeout, true
				err = s.nl.IpsetAdd(set, entry)
			} else {
				err = s.nl.IpsetDel(set, entry)
			}
			if err != nil {
				s.log.Debug("netlink ipset failed; using ipset restore", "op", op, "set", set, "entry", e.Prefix, "err", err)
				return false
			}
		}
	}
	return true
}

// List returns the entries of both sets with their remaining timeouts.
func (s *IPSet) List(ctx context.Context) ([]Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []Entry
	for _, ss := range s.sets() {
		out, err := s.saveSet(ctx, ss.name)
		if err != nil {
			return nil, s.c.fail(fmt.Errorf("firewall list: %w", notSetUp(err)))
		}
		es, err := parseIPSetSave(out, ss.name)
		if err != nil {
			return nil, s.c.fail(fmt.Errorf("firewall list: %w", err))
		}
		all = append(all, es...)
	}
	return all, nil
}

// teardownSets destroys the sets that exist and returns what it
// destroyed; it keeps none.
func (s *IPSet) teardownSets(ctx context.Context) (removed, kept []string, err error) {
	names, err := s.setNames(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, ss := range s.sets() {
		if !slices.Contains(names, ss.name) {
			continue
		}
		what := "set " + ss.name
		if out, err := s.setHeader(ctx, ss.name); err == nil {
			if n, ok := ipsetEntries(out); ok {
				what += " (" + plural(n, "entry") + ")"
			}
		}
		if err := s.destroySet(ctx, ss.name); err != nil {
			if strings.Contains(err.Error(), "in use") {
				err = fmt.Errorf("%w (something banner did not make still uses it: a rule in another table or a list:set; see `ipset list -t %s` and iptables-save)", err, ss.name)
			}
			return removed, nil, fmt.Errorf("destroying set %s: %w", ss.name, err)
		}
		removed = append(removed, what)
	}
	return removed, nil, nil
}
