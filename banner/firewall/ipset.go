package firewall

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"
)

// ErrNotSetUp is returned (wrapped) when a set or chain the backend needs
// does not exist: Setup has not run or something removed it.
var ErrNotSetUp = errors.New("firewall not set up")

// ipsetType is the set type both sets use: it takes single addresses and
// prefixes and supports per-entry timeouts.
const ipsetType = "hash:net"

// IPSet is the default backend: bans are entries of two hash:net sets with
// kernel timeouts, matched by one DROP rule per family in the chain.
//
// ipset timeouts are capped at MaxIPSetTimeout seconds (about 24.8 days);
// longer bans get that timeout and the engine's reconcile re-adds them.
type IPSet struct {
	xt *xt
}

// Name returns "ipset".
func (s *IPSet) Name() string { return BackendIPSet }

// Stats returns the backend's counters.
func (s *IPSet) Stats() Stats { return s.xt.c.stats() }

type setSpec struct {
	name   string
	family string // "inet" or "inet6"
	key    string // config key naming it
}

func (s *IPSet) sets() []setSpec {
	ss := []setSpec{{s.xt.cfg.Set4, "inet", "set4"}}
	if s.xt.cfg.IPv6 {
		ss = append(ss, setSpec{s.xt.cfg.Set6, "inet6", "set6"})
	}
	return ss
}

// Setup creates the sets (or checks existing ones), the chain, the jump and
// the set match rules, then removes every other rule from the chain (see
// Repair). Existing entries are kept.
func (s *IPSet) Setup(ctx context.Context) error {
	x := s.xt
	x.mu.Lock()
	defer x.mu.Unlock()
	if err := x.checkChainIsBanners(ctx); err != nil {
		return x.c.fail(fmt.Errorf("firewall setup: %w", err))
	}
	made, foreign, err := s.ensure(ctx, true)
	if len(made) > 0 {
		x.log.Info("firewall set up", "created", made)
	}
	x.repaired(nil, foreign)
	if err != nil {
		return x.c.fail(fmt.Errorf("firewall setup: %w", err))
	}
	return nil
}

// Repair restores missing sets, chain, jump and match rules. A re-created
// set is empty. It then removes from the chain every rule but the set
// match rules: one of the iptables backend's `-s X -j DROP` rules (left when
// the backend was switched without `banner teardown`) or one added by hand
// would drop its source whatever its ban, and no unban would lift it.
func (s *IPSet) Repair(ctx context.Context) ([]string, error) {
	x := s.xt
	x.mu.Lock()
	defer x.mu.Unlock()
	made, foreign, err := s.ensure(ctx, false)
	x.repaired(made, foreign)
	made = append(made, foreign...)
	if err != nil {
		return made, x.c.fail(fmt.Errorf("firewall repair: %w", err))
	}
	return made, nil
}

// ensure creates whatever of the sets, the chains, the jumps and the match
// rules is missing and returns what it created. With check (Setup), existing
// sets are checked for type, family and timeout support. Once a family's
// match rule is in place, the other rules of its chain are removed (see
// xt.removeForeign): foreign lists them.
func (s *IPSet) ensure(ctx context.Context, check bool) (made, foreign []string, err error) {
	x := s.xt
	fams, err := x.families(ctx)
	if err != nil {
		return nil, nil, err
	}
	names, err := s.setNames(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, ss := range s.sets() {
		if slices.Contains(names, ss.name) {
			if !check {
				continue
			}
			if err := s.checkSet(ctx, ss); err != nil {
				return made, nil, err
			}
			continue
		}
		if _, err := x.run(ctx, nil, "ipset", "create", ss.name, ipsetType, "family", ss.family,
			"timeout", "0", "maxelem", strconv.Itoa(x.cfg.MaxElem), "-exist"); err != nil {
			if ss.family == "inet6" {
				err = fmt.Errorf("%w; if this host has no IPv6 firewall, set firewall ipv6 = false", err)
			}
			return made, nil, fmt.Errorf("creating set %s: %w", ss.name, err)
		}
		made = append(made, "set "+ss.name)
	}
	for i, f := range fams {
		changed, err := x.ensureChainAndJump(ctx, f)
		made = append(made, changed...)
		if err != nil {
			return made, foreign, err
		}
		set := s.sets()[i].name
		spec := matchSpec(set)
		rule := "-A " + x.cfg.Chain + " " + strings.Join(spec, " ")
		var ok bool
		if err := x.ipt(ctx, f, "-C "+x.cfg.Chain+" "+strings.Join(spec, " "), func(i *iptables.IPTables) (err error) {
			ok, err = i.Exists(table, x.cfg.Chain, spec...)
			return err
		}); err != nil {
			return made, foreign, err
		}
		if !ok {
			if err := x.ipt(ctx, f, rule, func(i *iptables.IPTables) error {
				return i.Append(table, x.cfg.Chain, spec...)
			}); err != nil {
				return made, foreign, err
			}
			made = append(made, f.name+" rule "+rule)
		}
		// The match rule is in place: now the rest can go.
		want := strings.Join(spec, " ")
		removed, err := x.removeForeign(ctx, f,
			func(sp []string) bool { return strings.Join(sp, " ") == want },
			func(sp []string) bool { return dropsSetSource(sp, set) })
		foreign = append(foreign, removed...)
		if err != nil {
			return made, foreign, err
		}
	}
	return made, foreign, nil
}

// matchSpec is the chain rule that drops sources in set.
func matchSpec(set string) []string {
	return []string{"-m", "set", "--match-set", set, "src", "-j", "DROP"}
}

// matchesSet reports whether a rule spec matches set.
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

// setNames lists the names of all sets.
func (s *IPSet) setNames(ctx context.Context) ([]string, error) {
	out, err := s.xt.run(ctx, nil, "ipset", "list", "-n")
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

// checkSet verifies that an existing set can hold our entries.
func (s *IPSet) checkSet(ctx context.Context, ss setSpec) error {
	out, err := s.xt.run(ctx, nil, "ipset", "list", "-t", ss.name)
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
	case h.maxelem > 0 && h.maxelem < s.xt.cfg.MaxElem:
		s.xt.log.Warn("existing set is smaller than configured; keeping it",
			"set", ss.name, "maxelem", h.maxelem, "configured", s.xt.cfg.MaxElem,
			"fix", "destroy the set while banner is stopped so it is re-created")
	}
	return nil
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
	s := seconds(d)
	if s > MaxIPSetTimeout {
		s = MaxIPSetTimeout
	}
	return s
}

// Add adds or refreshes entries through one `ipset restore -exist`.
func (s *IPSet) Add(ctx context.Context, entries []Entry) error {
	x := s.xt
	b := split(entries, x.cfg.IPv6)
	var buf bytes.Buffer
	buf.Grow((len(b.v4) + len(b.v6)) * 48)
	write := func(set string, es []Entry) {
		for _, e := range es {
			fmt.Fprintf(&buf, "add %s %s timeout %d\n", set, ipsetElem(e.Prefix), ipsetTimeout(e.Timeout))
		}
	}
	write(x.cfg.Set4, b.v4)
	write(x.cfg.Set6, b.v6)
	n := len(b.v4) + len(b.v6)
	x.mu.Lock()
	defer x.mu.Unlock()
	if n > 0 {
		if _, err := x.run(ctx, buf.Bytes(), "ipset", "restore", "-exist"); err != nil {
			return x.c.fail(fmt.Errorf("firewall add of %d entries: %w", n, notSetUp(err)))
		}
		x.c.adds.Add(uint64(n))
		x.log.Debug("added", "entries", n)
	}
	return x.c.fail(batchErr("add", b.errs))
}

// Remove deletes entries through one `ipset restore -exist`; absent ones are
// ignored.
func (s *IPSet) Remove(ctx context.Context, prefixes []netip.Prefix) error {
	x := s.xt
	b := splitPrefixes(prefixes, x.cfg.IPv6)
	var buf bytes.Buffer
	write := func(set string, es []Entry) {
		for _, e := range es {
			fmt.Fprintf(&buf, "del %s %s\n", set, ipsetElem(e.Prefix))
		}
	}
	write(x.cfg.Set4, b.v4)
	write(x.cfg.Set6, b.v6)
	n := len(b.v4) + len(b.v6)
	x.mu.Lock()
	defer x.mu.Unlock()
	if n > 0 {
		if _, err := x.run(ctx, buf.Bytes(), "ipset", "restore", "-exist"); err != nil {
			return x.c.fail(fmt.Errorf("firewall remove of %d entries: %w", n, notSetUp(err)))
		}
		x.c.removes.Add(uint64(n))
		x.log.Debug("removed", "entries", n)
	}
	return x.c.fail(batchErr("remove", b.errs))
}

// List returns the entries of both sets with their remaining timeouts.
func (s *IPSet) List(ctx context.Context) ([]Entry, error) {
	x := s.xt
	x.mu.Lock()
	defer x.mu.Unlock()
	var all []Entry
	for _, ss := range s.sets() {
		out, err := x.run(ctx, nil, "ipset", "save", ss.name)
		if err != nil {
			return nil, x.c.fail(fmt.Errorf("firewall list: %w", notSetUp(err)))
		}
		es, err := parseIPSetSave(out, ss.name)
		if err != nil {
			return nil, x.c.fail(fmt.Errorf("firewall list: %w", err))
		}
		all = append(all, es...)
	}
	return all, nil
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

// parsePrefixOrAddr parses "192.0.2.7", "192.0.2.0/24" or "2001:db8::/64"
// into its canonical prefix.
func parsePrefixOrAddr(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("bad prefix %q: %w", s, err)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad address %q: %w", s, err)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return normalize(p)
}

// Teardown removes the jumps, the chain and the sets (see Uninstall).
func (s *IPSet) Teardown(ctx context.Context) error {
	_, err := s.uninstall(ctx)
	return err
}

// batchErr joins the per-entry errors of a batch.
func batchErr(op string, errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("firewall %s: %d entries refused: %w", op, len(errs), errors.Join(errs...))
}

// notSetUp marks an ipset error about a missing set with ErrNotSetUp.
func notSetUp(err error) error {
	if strings.Contains(err.Error(), "does not exist") {
		return fmt.Errorf("%w: %w", ErrNotSetUp, err)
	}
	return err
}
