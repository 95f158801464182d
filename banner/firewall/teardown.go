package firewall

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-iptables/iptables"
)

// uninstaller is a backend whose teardown reports what it removed and what
// it found but left in place.
type uninstaller interface {
	uninstall(ctx context.Context) (TeardownReport, error)
}

// TeardownReport is what UninstallReport did.
type TeardownReport struct {
	// Removed has one line per piece removed, e.g. "IPv4 chain BANNER (3
	// rules)" or "set banner4 (2 entries)".
	Removed []string
	// Kept has one line per piece found but left in place, with the
	// reason: with the iptables backend, a set of the ipset backend's that
	// something still uses.
	Kept []string
}

// Uninstall removes what Setup built, as b.Teardown does, and returns one
// line per piece it removed, for each family: every INPUT jump to the chain
// (any ports, any drop form), the chain with its rules, and for the ipset
// backend the two sets. Nothing there is not an error: it returns nil, so a
// second Uninstall is a no-op.
//
// With the iptables backend it also destroys the sets named set4 and set6
// that the ipset backend of the same configuration left (the backend was
// switched without a teardown first), if they exist, look like the ipset
// backend's (hash:net with timeouts) and nothing references them; a set
// still in use, or managed by a running banner (it holds the set's lock), is
// left in place and reported in TeardownReport.Kept (see UninstallReport)
// and logged at Warn.
//
// Rules banner did not make are left alone: a jump to the chain from
// another chain than INPUT, or a rule outside the chain matching one of the
// sets in any table (filter, raw, mangle, nat, security), would keep the
// chain or set in use, so Uninstall refuses before changing anything and
// its error names those rules. For the sets it also asks the kernel: if a
// set's reference count (`ipset list -t`, "References") exceeds the rules
// of banner's chain matching it, something no listing shows uses it (an
// iptables-legacy rule beside iptables-nft or the reverse, a list:set, an
// nft rule with the xt set match), and Uninstall refuses naming the set.
// The "none" backend holds nothing in the kernel and returns nil.
func Uninstall(ctx context.Context, b Backend) ([]string, error) {
	r, err := UninstallReport(ctx, b)
	return r.Removed, err
}

// UninstallReport is Uninstall, also reporting what it found but kept.
func UninstallReport(ctx context.Context, b Backend) (TeardownReport, error) {
	if u, ok := b.(uninstaller); ok {
		return u.uninstall(ctx)
	}
	return TeardownReport{}, b.Teardown(ctx)
}

func (s *IPSet) uninstall(ctx context.Context) (TeardownReport, error) {
	x := s.xt
	x.mu.Lock()
	defer x.mu.Unlock()
	var sets []string
	for _, ss := range s.sets() {
		sets = append(sets, ss.name)
	}
	removed, err := x.teardownChains(ctx, sets)
	if err == nil {
		var more []string
		more, err = s.destroySets(ctx)
		removed = append(removed, more...)
	}
	x.tornDown(removed, nil)
	if err != nil {
		return TeardownReport{Removed: removed}, x.c.fail(fmt.Errorf("firewall teardown: %w", err))
	}
	return TeardownReport{Removed: removed}, nil
}

func (t *IPTables) uninstall(ctx context.Context) (TeardownReport, error) {
	x := t.xt
	x.mu.Lock()
	defer x.mu.Unlock()
	var r TeardownReport
	var err error
	r.Removed, err = x.teardownChains(ctx, nil)
	if err == nil {
		var removed []string
		removed, r.Kept, err = t.destroyLeftSets(ctx)
		r.Removed = append(r.Removed, removed...)
	}
	x.tornDown(r.Removed, r.Kept)
	if err != nil {
		return r, x.c.fail(fmt.Errorf("firewall teardown: %w", err))
	}
	return r, nil
}

func (x *xt) tornDown(removed, kept []string) {
	if len(removed) > 0 {
		x.log.Info("firewall torn down", "removed", removed)
	}
	if len(kept) > 0 {
		x.log.Warn("firewall teardown left these in place", "kept", kept)
	}
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
		out, err := x.run(ctx, nil, f.cmd, "-w", strconv.Itoa(x.lockWaitSeconds()), "-t", tbl, "-S")
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
		for _, l := range strings.Split(string(out), "\n") {
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

// legacyTables returns, when f's command is iptables-legacy, the tables the
// kernel holds for it (/proc/net/ip_tables_names or ip6_tables_names): with
// legacy, "iptables -t nat -S" creates the nat table (and with it
// connection tracking), which a teardown must not leave behind. It returns
// nil for iptables-nft, whose listings create nothing, or when it cannot
// tell.
func (x *xt) legacyTables(ctx context.Context, f *family) map[string]bool {
	out, err := x.run(ctx, nil, f.cmd, "--version")
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
	out, err := x.run(ctx, nil, "ipset", "list", "-n")
	if err != nil {
		return nil, err
	}
	names := strings.Fields(string(out))
	var refs []string
	for _, set := range sets {
		if !slices.Contains(names, set) {
			continue
		}
		n, _, err := x.setReferences(ctx, set, own[set], nil)
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

// setReferences returns the kernel's reference count of set (`ipset list
// -t`, "References"; 0 when not shown) once it is at most want, or, if it
// stays above, the count after about a second: the kernel may drop the
// reference of a rule deleted a moment ago a little later. out, if not nil,
// is a listing already taken, used for the first look. It also returns the
// last listing.
func (x *xt) setReferences(ctx context.Context, set string, want int, out []byte) (int, []byte, error) {
	for try := 0; ; try++ {
		if out == nil {
			var err error
			if out, err = x.run(ctx, nil, "ipset", "list", "-t", set); err != nil {
				return 0, nil, err
			}
		}
		n, ok := ipsetReferences(out)
		if !ok || n <= want || try == 10 {
			if !ok {
				n = 0
			}
			return n, out, nil
		}
		select {
		case <-ctx.Done():
			return 0, nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		out = nil
	}
}

// ipsetReferences reads "References: N" from `ipset list -t` output.
func ipsetReferences(out []byte) (int, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "References:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			return n, err == nil
		}
	}
	return 0, false
}

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
		deleted, err := x.deleteInput(ctx, f, r.spec)
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
			if err := x.ipt(ctx, f, "-D INPUT "+strconv.Itoa(r.pos), func(i *iptables.IPTables) error {
				cur, err := i.ListById(table, "INPUT", r.pos)
				if err != nil {
					return err
				}
				if x.listHook != nil {
					cur = x.listHook(f, []string{cur})[0]
				}
				if w := splitWords(cur); len(w) < 2 || !slices.Equal(w[2:], r.spec) {
					return fmt.Errorf("INPUT changed while tearing down (rule %d is now %q, not banner's jump): run banner teardown again", r.pos, cur)
				}
				return i.DeleteById(table, "INPUT", r.pos)
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
	if err := x.ipt(ctx, f, "-F/-X "+x.cfg.Chain, func(i *iptables.IPTables) error {
		return i.ClearAndDeleteChain(table, x.cfg.Chain)
	}); err != nil {
		return removed, err
	}
	return append(removed, fmt.Sprintf("%s chain %s (%s)", f.name, x.cfg.Chain, plural(len(chain), "rule"))), nil
}

// destroySets destroys the sets that exist and returns what it destroyed.
func (s *IPSet) destroySets(ctx context.Context) ([]string, error) {
	x := s.xt
	names, err := s.setNames(ctx)
	if err != nil {
		return nil, err
	}
	var removed []string
	for _, ss := range s.sets() {
		if !slices.Contains(names, ss.name) {
			continue
		}
		what := "set " + ss.name
		if out, err := x.run(ctx, nil, "ipset", "list", "-t", ss.name); err == nil {
			if n, ok := ipsetEntries(out); ok {
				what += " (" + plural(n, "entry") + ")"
			}
		}
		// The kernel may release the set reference of a just-deleted rule
		// a moment later: retry "in use" briefly.
		for try := 0; ; try++ {
			_, err = x.run(ctx, nil, "ipset", "destroy", ss.name)
			if err == nil || try == 10 || !strings.Contains(err.Error(), "in use") {
				break
			}
			select {
			case <-ctx.Done():
				return removed, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
		if err != nil {
			if strings.Contains(err.Error(), "in use") {
				err = fmt.Errorf("%w (something banner did not make still uses it: a rule in another table or a list:set; see `ipset list -t %s` and iptables-save)", err, ss.name)
			}
			return removed, fmt.Errorf("destroying set %s: %w", ss.name, err)
		}
		removed = append(removed, what)
	}
	return removed, nil
}

// ipsetEntries reads "Number of entries: N" from `ipset list -t` output.
func ipsetEntries(out []byte) (int, bool) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "Number of entries:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			return n, err == nil
		}
	}
	return 0, false
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

// destroyLeftSets is the iptables backend's teardown of the sets the ipset
// backend of the same configuration would have made (set4 and set6, IPv6
// on or off): left when the backend was switched without a teardown, they
// would hold memory and stale bans, and a later switch back would find
// them. It destroys each set that exists, if it looks like the ipset
// backend's (hash:net with timeouts), no banner process holds its lock and
// the kernel counts no reference to it; otherwise it keeps the set and says
// why. The chain is gone by then: a set match of the ipset backend's left
// in it no longer counts, though the kernel may take a moment to drop its
// reference. Without the ipset command there is nothing to look at.
func (t *IPTables) destroyLeftSets(ctx context.Context) (removed, kept []string, err error) {
	x := t.xt
	if _, err := exec.LookPath("ipset"); err != nil {
		return nil, nil, nil
	}
	out, err := x.run(ctx, nil, "ipset", "list", "-n")
	if err != nil {
		return nil, []string{fmt.Sprintf("sets %s and %s, if any: could not look for sets left by the ipset backend: %v", x.cfg.Set4, x.cfg.Set6, err)}, nil
	}
	names := strings.Fields(string(out))
	fams, err := x.families(ctx)
	if err != nil {
		return nil, nil, err
	}
	for _, set := range []string{x.cfg.Set4, x.cfg.Set6} {
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

// destroyLeftSet destroys one set for destroyLeftSets, returning the line
// for Removed or for Kept.
func (t *IPTables) destroyLeftSet(ctx context.Context, fams []*family, set string) (removed, kept string, err error) {
	x := t.xt
	// The lock a running banner with the ipset backend holds on the set:
	// never destroy a set that banner manages.
	lock, err := lockNames([]lockName{{"set", set}})
	if err != nil {
		return "", fmt.Sprintf("set %s (left by the ipset backend?): %v; left in place", set, err), nil
	}
	defer lock.Release()
	out, err := x.run(ctx, nil, "ipset", "list", "-t", set)
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
	refs, _, err := x.setReferences(ctx, set, 0, out)
	if err != nil {
		return "", "", err
	}
	if refs > 0 {
		var users []string
		for _, f := range fams {
			r, err := x.foreignRefs(ctx, f, []string{set})
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
	for try := 0; ; try++ {
		_, err = x.run(ctx, nil, "ipset", "destroy", set)
		if err == nil || try == 10 || !strings.Contains(err.Error(), "in use") {
			break
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err != nil {
		if strings.Contains(err.Error(), "in use") {
			return "", fmt.Sprintf("%s: something else uses it (%v); left in place", what, err), nil
		}
		return "", "", fmt.Errorf("destroying set %s: %w", set, err)
	}
	return what, "", nil
}
