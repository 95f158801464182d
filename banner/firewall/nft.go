package firewall

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// NFTables is the nftables backend. It talks to the kernel through
// netlink (github.com/google/nftables), runs no command, and keeps
// everything in its own table, `inet <nft_table>` (default banner):
//
//   - per family two sets with kernel timeouts: set4 / set6 (default
//     banner4, banner6), hash sets of single addresses, and banner4_net /
//     banner6_net, interval sets (`flags interval, timeout`) of prefixes
//     (a /24, a /64, any length). Addresses, nearly all bans, go to the
//     hash sets because kernel 6.18's interval sets cost every transaction
//     time in proportion to their size;
//   - a base chain `input` on the input hook at nft_priority (default -10,
//     before the filter tables of nftables.conf, ufw and firewalld);
//   - one rule per set in it, dropping the set's sources to the configured
//     TCP ports, with drop "new" only connection-opening SYNs:
//     `tcp dport 25 tcp flags syn / fin,syn,rst,ack ip saddr @banner4
//     counter drop`.
//
// A drop in any base chain is final in nftables: an accept in another
// table (ufw's, firewalld's, the admin's own `tcp dport 25 accept`) ends
// only that table's chain, and the packet still meets banner's, so a
// banned client stays out whatever the other tables say. The priority only
// decides which table sees the packet first.
//
// Every Add and Remove is one netlink transaction: all its elements go
// into the kernel or none. Element lists are sent in messages of at most
// nftElemsPerMsg elements (a netlink attribute holds at most 64 KiB; the
// library does not split, and a longer list loses elements), and the
// socket's send buffer is raised so one transaction can carry a batch of
// 100,000 bans.
//
// The kernel refuses overlapping ranges in an interval set. The backend
// keeps a mirror of what it put in the sets (refreshed by List and
// whenever the kernel refuses a change) and plans each batch against it:
// a prefix ban already covered by a larger banned prefix adds nothing, a
// prefix ban covering smaller banned prefixes replaces them, a ban already
// present is deleted and re-added in the same transaction so its timeout
// is replaced. Adjacent ranges are kept apart (the kernel takes them as
// they are, and so does List). A covered ban that outlives its cover is
// put back by the engine's next reconcile. Addresses are in their own
// sets and never conflict with prefixes.
//
// Setup and Repair re-create whatever of the table, the sets, the chain
// and the rules is missing (`nft flush ruleset`, a reload of
// /etc/nftables.conf, `systemctl restart nftables`) and remove every other
// rule in banner's chain. When a change finds the table or a set gone,
// the backend repairs at once and applies the batch again; the engine's
// reconcile then re-adds the other bans. Setup also tears down the hooks
// a previous ipset or iptables backend of the same configuration left
// (the INPUT jumps, the chain and its sets), so a switch of backend keeps
// no rule no unban could lift; Teardown does the same, after removing the
// table.
type NFTables struct {
	cfg Config
	log *slog.Logger
	c   counters
	now func() time.Time

	mu sync.Mutex
	// have mirrors the sets: each prefix banner put in and its kernel
	// expiry (zero: no timeout). It is trusted only when known.
	have  map[netip.Prefix]time.Time
	known bool
	// gen is the ruleset generation at which have was last known to equal
	// the sets (genOK): while the kernel reports the same generation, no
	// transaction of anyone's changed them, and List answers from have
	// instead of a dump of the sets, which the kernel makes in time
	// quadratic in their size (seconds for 100,000 bans).
	gen   uint32
	genOK bool
	// bits counts, per prefix length, the prefixes of have: which lengths
	// to look for when a ban may cover or be covered.
	bits [129]int
}

// nftChain is the name of banner's base chain in its table.
const nftChain = "input"

// nftElemsPerMsg bounds the set elements of one netlink message (an
// IPv6 start element with its timeout is 52 bytes: 1,000 of them stay
// well under the 64 KiB an attribute can hold).
const nftElemsPerMsg = 1000

// nftSendBuffer is the socket send buffer asked for (as root, past
// net.core.wmem_max): one transaction of 100,000 IPv6 bans is about 10 MB.
const nftSendBuffer = 64 << 20

// nftMaxBansPerTxn splits a larger batch into several transactions, each
// within nftSendBuffer.
const nftMaxBansPerTxn = 250000

// DefaultNFTPriority is the default priority of banner's base chain:
// before the filter priority (0) that nftables.conf, ufw and firewalld
// use.
const DefaultNFTPriority = -10

func newNFTables(cfg Config) *NFTables {
	return &NFTables{cfg: cfg, log: cfg.Logger, now: time.Now, have: make(map[netip.Prefix]time.Time)}
}

// Name returns "nftables".
func (n *NFTables) Name() string { return BackendNFTables }

// Stats returns the backend's counters.
func (n *NFTables) Stats() Stats { return n.c.stats() }

// conn returns a netlink connection with a send buffer large enough for a
// big transaction. Each operation dials its own socket, so an error never
// leaves replies on a socket for the next one. Every socket is primed (see
// primeDump) before the library uses it.
func (n *NFTables) conn() (*nftables.Conn, error) {
	return nftables.New(nftables.WithSockOptions(func(c *netlink.Conn) error {
		rc, err := c.SyscallConn()
		if err != nil {
			return nil //nolint:nilerr // keep the default buffer
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, nftSendBuffer)
		}); err != nil || serr != nil {
			// Not root: as much as net.core.wmem_max allows.
			_ = c.SetWriteBuffer(nftSendBuffer)
		}
		_, _ = primeDump(c)
		return nil
	}))
}

// nftGen asks the kernel for the nftables ruleset generation, which every
// committed transaction, anyone's, increments.
func nftGen() (uint32, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return primeDump(c)
}

// primeDump asks c for the ruleset generation and reads the reply with a
// large buffer. The kernel sizes the messages of later dumps on this
// socket by the largest buffer a read offered (up to 32 KiB), and the
// library reads with a page: without this a set's listing comes in
// 4 KiB messages, and since the kernel walks a set from its start again
// for every message of a dump, listing 100,000 bans took 45 s of kernel
// time instead of a few hundred milliseconds.
func primeDump(c *netlink.Conn) (uint32, error) {
	req := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}
	if _, err := c.Send(req); err != nil {
		return 0, err
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 64<<10)
	var nr int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		nr, _, _, _, rerr = unix.Recvmsg(int(fd), buf, nil, 0)
		return rerr != unix.EAGAIN
	}); err != nil {
		return 0, err
	}
	if rerr != nil {
		return 0, rerr
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:nr])
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		if m.Header.Type != unix.NFNL_SUBSYS_NFTABLES<<8|unix.NFT_MSG_NEWGEN || len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, err
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, errors.New("no nftables generation in the kernel's reply")
}

func (n *NFTables) table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: n.cfg.NFTTable}
}

// nftFamily is one address family.
type nftFamily struct {
	name    string // "IPv4", "IPv6"
	key     nftables.SetDatatype
	nfproto byte
	off     uint32 // offset of the source address in the network header
	size    int
}

// nftSpec is one of banner's sets and the rule that drops its sources:
// per family, a hash set of single addresses (set4, set6) and an interval
// set of prefixes (set4 and set6 with "_net" appended). Addresses go to a
// hash set because kernel 6.18's interval set costs every transaction time
// in proportion to its size (40 ms for one element beside 100,000, against
// 65 µs in a hash set, measured by loading both the same way); prefixes
// are few.
type nftSpec struct {
	nftFamily
	set      string
	interval bool
}

var (
	nftIPv4 = nftFamily{"IPv4", nftables.TypeIPAddr, unix.NFPROTO_IPV4, 12, 4}
	nftIPv6 = nftFamily{"IPv6", nftables.TypeIP6Addr, unix.NFPROTO_IPV6, 8, 16}
)

// nftNetSuffix names a family's prefix set after its address set.
const nftNetSuffix = "_net"

// specs returns the sets in the order specIdx numbers them: IPv4
// addresses, IPv4 prefixes, then (with IPv6) IPv6 addresses and prefixes.
func (n *NFTables) specs() []nftSpec {
	ss := n.allSpecs()
	if !n.cfg.IPv6 {
		ss = ss[:2]
	}
	return ss
}

// allSpecs is specs with IPv6 whatever the configuration: the sets that
// are banner's in its table.
func (n *NFTables) allSpecs() []nftSpec {
	return []nftSpec{{nftIPv4, n.cfg.Set4, false}, {nftIPv4, n.cfg.Set4 + nftNetSuffix, true},
		{nftIPv6, n.cfg.Set6, false}, {nftIPv6, n.cfg.Set6 + nftNetSuffix, true}}
}

// specIdx is the index in specs of the set that holds p.
func specIdx(p netip.Prefix) int {
	i := 0
	if p.Addr().Is6() {
		i = 2
	}
	if p.Bits() != p.Addr().BitLen() {
		i++
	}
	return i
}

func (n *NFTables) nftSet(t *nftables.Table, s nftSpec) *nftables.Set {
	return &nftables.Set{Table: t, Name: s.set, KeyType: s.key, Interval: s.interval, HasTimeout: true}
}

func (n *NFTables) chain(t *nftables.Table) *nftables.Chain {
	policy := nftables.ChainPolicyAccept
	return &nftables.Chain{Name: nftChain, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(n.cfg.NFTPriority)),
		Policy: &policy}
}

// ruleComment is the comment of the rule for f's set. It names the configuration the
// rule was made for, so a rule made for other ports or another drop mode
// is not taken for the configured one.
func (n *NFTables) ruleComment(f nftSpec) string {
	ports := make([]string, len(n.cfg.Ports))
	for i, p := range n.cfg.Ports {
		ports[i] = strconv.Itoa(int(p))
	}
	return fmt.Sprintf("banner: drop %s sources in @%s to tcp ports %s (drop=%s)", f.name, f.set, strings.Join(ports, ","), n.cfg.Drop)
}

// addRule queues the drop rule for f's set (and, for several ports, its
// anonymous port set) on c.
func (n *NFTables) addRule(c *nftables.Conn, t *nftables.Table, ch *nftables.Chain, f nftSpec) error {
	exprs := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
	}
	if len(n.cfg.Ports) == 1 {
		exprs = append(exprs, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: be16(n.cfg.Ports[0])})
	} else {
		ps := &nftables.Set{Table: t, Anonymous: true, Constant: true, KeyType: nftables.TypeInetService}
		els := make([]nftables.SetElement, len(n.cfg.Ports))
		for i, p := range n.cfg.Ports {
			els[i] = nftables.SetElement{Key: be16(p)}
		}
		if err := c.AddSet(ps, els); err != nil {
			return err
		}
		exprs = append(exprs, &expr.Lookup{SourceRegister: 1, SetName: ps.Name, SetID: ps.ID})
	}
	if n.cfg.Drop == DropNew {
		exprs = append(exprs,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{0x17}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0x02}})
	}
	exprs = append(exprs,
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.nfproto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.off, Len: uint32(f.size)},
		&expr.Lookup{SourceRegister: 1, SetName: f.set},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: exprs,
		UserData: userdata.AppendString(nil, userdata.TypeComment, n.ruleComment(f))})
	return nil
}

func be16(p uint16) []byte { return []byte{byte(p >> 8), byte(p)} }

// isOwnRule reports whether r is f's rule as addRule makes it for the
// configuration: its comment and the shape of its expressions.
func (n *NFTables) isOwnRule(r *nftables.Rule, f nftSpec) bool {
	if c, ok := userdata.GetString(r.UserData, userdata.TypeComment); !ok || c != n.ruleComment(f) {
		return false
	}
	want := 10
	if n.cfg.Drop == DropNew {
		want += 3
	}
	if len(r.Exprs) != want {
		return false
	}
	if v, ok := r.Exprs[len(r.Exprs)-1].(*expr.Verdict); !ok || v.Kind != expr.VerdictDrop {
		return false
	}
	l, ok := r.Exprs[len(r.Exprs)-3].(*expr.Lookup)
	return ok && l.SetName == f.set && !l.Invert
}

// isNotFound reports whether err is the kernel's ENOENT: a table, chain or
// set that does not exist.
// The library wraps some errors with %v, so the text is checked too.
func isNotFound(err error) bool {
	return err != nil && (errors.Is(err, unix.ENOENT) || strings.Contains(err.Error(), unix.ENOENT.Error()))
}

// Setup creates the table, sets, chain and rules that are missing, checks
// the existing sets, removes foreign rules from the chain, then removes
// the hooks an ipset or iptables backend of the same configuration left.
func (n *NFTables) Setup(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	made, foreign, err := n.ensure(ctx, true)
	if len(made) > 0 {
		n.log.Info("firewall set up", "created", made)
	}
	n.c.recordRepair(n.log, n.cfg, nil, foreign)
	if err != nil {
		return n.c.fail(fmt.Errorf("firewall setup: %w", err))
	}
	if removed := n.removeXTHooks(ctx); len(removed) > 0 {
		n.log.Warn("removed the hooks a previous ipset or iptables backend of banner left: "+
			"they would keep dropping clients whose bans nothing would lift; the engine now loads every ban of the store into the nftables sets",
			"removed", removed)
	}
	return nil
}

// Repair restores what ensure finds missing and removes the chain's
// foreign rules; it returns both.
func (n *NFTables) Repair(ctx context.Context) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.repairLocked(ctx)
}

func (n *NFTables) repairLocked(ctx context.Context) ([]string, error) {
	made, foreign, err := n.ensure(ctx, false)
	n.c.recordRepair(n.log, n.cfg, made, foreign)
	made = append(made, foreign...)
	if err != nil {
		return made, n.c.fail(fmt.Errorf("firewall repair: %w", err))
	}
	return made, nil
}

// ensure makes what is missing of the table, the sets, the chain (at the
// configured priority) and the rules, and deletes the chain's other
// rules, in one transaction. With check (Setup), an existing table must
// be banner's and existing sets must be of the right kind.
func (n *NFTables) ensure(ctx context.Context, check bool) (made, foreign []string, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	c, err := n.conn()
	if err != nil {
		return nil, nil, err
	}
	t := n.table()
	tname := "table inet " + t.Name
	fams := n.specs()
	if _, err := c.ListTableOfFamily(t.Name, t.Family); err != nil {
		if !isNotFound(err) {
			return nil, nil, fmt.Errorf("listing %s: %w", tname, err)
		}
		c.AddTable(t)
		made = append(made, tname)
		for _, f := range fams {
			if err := c.AddSet(n.nftSet(t, f), nil); err != nil {
				return nil, nil, err
			}
			made = append(made, "set "+f.set)
		}
		ch := c.AddChain(n.chain(t))
		made = append(made, n.chainDesc())
		for _, f := range fams {
			if err := n.addRule(c, t, ch, f); err != nil {
				return nil, nil, err
			}
			made = append(made, f.name+" rule for @"+f.set)
		}
		if err := c.Flush(); err != nil {
			return nil, nil, fmt.Errorf("creating %s: %w", tname, err)
		}
		n.forget()
		return made, nil, nil
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return nil, nil, fmt.Errorf("listing sets of %s: %w", tname, err)
	}
	chains, err := c.ListChainsOfTableFamily(t.Family)
	if err != nil {
		return nil, nil, fmt.Errorf("listing chains of %s: %w", tname, err)
	}
	var ch *nftables.Chain
	ours := 0
	var others []string
	for _, x := range chains {
		if x.Table.Name != t.Name {
			continue
		}
		if x.Name == nftChain {
			ch, ours = x, ours+1
		} else {
			others = append(others, "chain "+x.Name)
		}
	}
	have := make(map[string]*nftables.Set)
	for _, s := range sets {
		have[s.Name] = s
		if !s.Anonymous && !slices.ContainsFunc(n.allSpecs(), func(f nftSpec) bool { return f.set == s.Name }) {
			others = append(others, "set "+s.Name)
		}
	}
	for _, f := range fams {
		if have[f.set] != nil {
			ours++
		}
	}
	if check && ours == 0 && len(others) > 0 {
		return nil, nil, fmt.Errorf("%s exists and holds none of banner's sets or chains (%s): it belongs to another tool; "+
			"set firewall nft_table to another name, or remove it with `nft delete table inet %s`",
			tname, strings.Join(others, ", "), t.Name)
	}
	setMissing := false
	for _, f := range fams {
		s := have[f.set]
		if s == nil {
			if err := c.AddSet(n.nftSet(t, f), nil); err != nil {
				return nil, nil, err
			}
			made = append(made, "set "+f.set)
			setMissing = true
			continue
		}
		if check && (s.Interval != f.interval || !s.HasTimeout || s.KeyType.Name != f.key.Name || s.IsMap) {
			flags := "timeout"
			if f.interval {
				flags = "interval, timeout"
			}
			return nil, nil, fmt.Errorf("set %s in %s exists with type %s (interval %v, timeout %v), want type %s with flags %s: "+
				"remove it with `nft delete table inet %s` while banner is stopped, or set firewall %s to another name",
				f.set, tname, s.KeyType.Name, s.Interval, s.HasTimeout, f.key.Name, flags, t.Name, strings.ToLower(strings.ReplaceAll(f.name, "IPv", "set")))
		}
	}
	want := n.chain(t)
	var rules []*nftables.Rule
	switch {
	case ch == nil:
		ch = c.AddChain(want)
		made = append(made, n.chainDesc())
	case ch.Type != want.Type || ch.Hooknum == nil || *ch.Hooknum != *want.Hooknum || ch.Priority == nil || *ch.Priority != *want.Priority:
		// A base chain's hook and priority cannot change: make it anew.
		was := describeChain(ch)
		c.FlushChain(ch)
		c.DelChain(ch)
		ch = c.AddChain(want)
		made = append(made, n.chainDesc()+" (was "+was+")")
	default:
		if rules, err = c.GetRules(t, ch); err != nil {
			return nil, nil, fmt.Errorf("listing rules of chain %s: %w", nftChain, err)
		}
	}
	kept := make(map[*nftables.Rule]bool)
	for _, f := range fams {
		i := slices.IndexFunc(rules, func(r *nftables.Rule) bool { return !kept[r] && n.isOwnRule(r, f) })
		if i >= 0 {
			kept[rules[i]] = true
			continue
		}
		if err := n.addRule(c, t, ch, f); err != nil {
			return nil, nil, err
		}
		made = append(made, f.name+" rule for @"+f.set)
	}
	for _, r := range rules {
		if kept[r] {
			continue
		}
		if err := c.DelRule(r); err != nil {
			return nil, nil, err
		}
		desc := "rule handle " + strconv.FormatUint(r.Handle, 10)
		if cm, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok {
			desc += " (" + cm + ")"
		}
		foreign = append(foreign, "chain "+nftChain+" "+desc)
	}
	if len(made)+len(foreign) == 0 {
		return nil, nil, nil
	}
	n.genOK = false
	if err := c.Flush(); err != nil {
		return nil, nil, fmt.Errorf("restoring %s: %w", strings.Join(append(slices.Clip(made), foreign...), ", "), err)
	}
	if setMissing {
		n.forget()
	}
	return made, foreign, nil
}

func (n *NFTables) chainDesc() string {
	return fmt.Sprintf("chain %s (hook input priority %d)", nftChain, n.cfg.NFTPriority)
}

func describeChain(c *nftables.Chain) string {
	if c.Priority == nil {
		return "a regular chain"
	}
	return fmt.Sprintf("priority %d", *c.Priority)
}

// forget drops the mirror: the next change reads the sets first.
func (n *NFTables) forget() {
	clear(n.have)
	n.bits = [129]int{}
	n.known, n.genOK = false, false
}

// removeXTHooks tears down what an ipset (or iptables) backend of the same
// chain and set names left, if iptables is there, and returns what it
// removed. Failures are logged, not returned: they do not stop the
// nftables bans.
func (n *NFTables) removeXTHooks(ctx context.Context) []string {
	old, ok := n.xtLeftovers(ctx)
	if !ok {
		return nil
	}
	r, err := old.Teardown(ctx)
	if err != nil {
		n.log.Warn("could not remove the hooks of a previous ipset or iptables backend; "+
			"they may still drop clients banned before the switch until their sets' timeouts end: run `banner teardown` with that backend",
			"err", err)
	}
	return r.Removed
}

// xtLeftovers returns an ipset backend of the same configuration if
// iptables and ipset are installed and banner's chain exists in either
// family or one of the ipset sets does.
func (n *NFTables) xtLeftovers(ctx context.Context) (*IPSet, bool) {
	for _, cmd := range []string{"iptables", "ipset"} {
		if _, err := exec.LookPath(cmd); err != nil {
			return nil, false
		}
	}
	cfg := n.cfg
	cfg.Backend = BackendIPSet
	cfg.Logger = n.log.With("previous_backend", BackendIPSet)
	s := &IPSet{}
	s.xt = newXT(cfg, s)
	s.mu.Lock()
	defer s.mu.Unlock()
	if names, err := s.setNames(ctx); err == nil {
		for _, ss := range s.sets() {
			if slices.Contains(names, ss.name) {
				return s, true
			}
		}
	}
	fams, err := s.families(ctx)
	if err != nil {
		return nil, false
	}
	for _, f := range fams {
		if _, exists, err := s.chainRules(ctx, f); err == nil && exists {
			return s, true
		}
	}
	return nil, false
}

// Teardown deletes the table (with its chain, rules and sets) and then
// the hooks of a previous ipset or iptables backend, if any.
func (n *NFTables) Teardown(ctx context.Context) (TeardownReport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var r TeardownReport
	c, err := n.conn()
	if err != nil {
		return r, n.c.fail(fmt.Errorf("firewall teardown: %w", err))
	}
	t := n.table()
	if _, err := c.ListTableOfFamily(t.Name, t.Family); err == nil {
		desc := "table inet " + t.Name
		var parts []string
		if rules, err := c.GetRules(t, &nftables.Chain{Name: nftChain, Table: t}); err == nil {
			parts = append(parts, "chain "+nftChain+": "+plural(len(rules), "rule"))
		}
		var count [4]int
		g, gerr := nftGen()
		if n.known && n.genOK && gerr == nil && g == n.gen {
			for _, e := range n.mirrored() {
				count[specIdx(e.Prefix)]++
			}
		} else if es, err := n.readSets(ctx); err == nil {
			for _, e := range es {
				count[specIdx(e.Prefix)]++
			}
		}
		for i, f := range n.specs() {
			parts = append(parts, "set "+f.set+": "+plural(count[i], "entry"))
		}
		if len(parts) > 0 {
			desc += " (" + strings.Join(parts, "; ") + ")"
		}
		c.DelTable(t)
		if err := c.Flush(); err != nil && !isNotFound(err) {
			return r, n.c.fail(fmt.Errorf("firewall teardown: deleting %s: %w", desc, err))
		}
		r.Removed = append(r.Removed, desc)
	} else if !isNotFound(err) {
		return r, n.c.fail(fmt.Errorf("firewall teardown: listing table inet %s: %w", t.Name, err))
	}
	n.forget()
	if old, ok := n.xtLeftovers(ctx); ok {
		or, err := old.Teardown(ctx)
		for _, s := range or.Removed {
			r.Removed = append(r.Removed, "previous ipset/iptables backend: "+s)
		}
		r.Kept = append(r.Kept, or.Kept...)
		if err != nil {
			return r, n.c.fail(fmt.Errorf("firewall teardown of the previous ipset/iptables hooks: %w", err))
		}
	}
	if len(r.Removed) > 0 {
		n.log.Info("firewall torn down", "removed", r.Removed)
	}
	return r, nil
}

// List returns the entries of both sets with their remaining timeouts:
// from the mirror while the ruleset generation says nothing changed since
// it was last known to match, otherwise from a listing of the sets, which
// refreshes the mirror.
func (n *NFTables) List(ctx context.Context) ([]Entry, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.known && n.genOK {
		if g, err := nftGen(); err == nil && g == n.gen {
			return n.mirrored(), nil
		}
	}
	es, err := n.readSets(ctx)
	if err != nil {
		return nil, n.c.fail(fmt.Errorf("firewall list: %w", err))
	}
	return es, nil
}

// readSets lists both sets and rebuilds the mirror from them.
func (n *NFTables) readSets(ctx context.Context) ([]Entry, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c, err := n.conn()
	if err != nil {
		return nil, err
	}
	t := n.table()
	now := n.now()
	n.forget()
	g0, gerr := nftGen()
	var all []Entry
	for _, f := range n.specs() {
		els, err := c.GetSetElements(&nftables.Set{Table: t, Name: f.set})
		if err != nil {
			if isNotFound(err) {
				return nil, fmt.Errorf("set %s in table inet %s: %w", f.set, t.Name, ErrNotSetUp)
			}
			return nil, fmt.Errorf("listing set %s: %w", f.set, err)
		}
		ranges := hostRanges(els, f.size)
		if f.interval {
			ranges = rangesOf(els, f.size)
		}
		for _, r := range ranges {
			for _, p := range r.prefixes() {
				all = append(all, Entry{Prefix: p, Timeout: r.timeout})
				var exp time.Time
				if r.timeout > 0 {
					exp = now.Add(r.timeout)
				}
				n.remember(p, exp)
			}
		}
	}
	n.known = true
	if g1, err := nftGen(); err == nil && gerr == nil && g1 == g0 {
		n.gen, n.genOK = g1, true
	}
	return all, nil
}

// mirrored returns the mirror's entries with their remaining timeouts,
// dropping those the kernel has expired.
func (n *NFTables) mirrored() []Entry {
	now := n.now()
	all := make([]Entry, 0, len(n.have))
	for p, exp := range n.have {
		var left time.Duration
		if !exp.IsZero() {
			if left = exp.Sub(now); left <= 0 {
				n.unremember(p)
				continue
			}
		}
		all = append(all, Entry{Prefix: p, Timeout: left})
	}
	return all
}

func (n *NFTables) remember(p netip.Prefix, exp time.Time) {
	if _, ok := n.have[p]; !ok {
		n.bits[p.Bits()]++
	}
	n.have[p] = exp
}

func (n *NFTables) unremember(p netip.Prefix) {
	if _, ok := n.have[p]; ok {
		n.bits[p.Bits()]--
		delete(n.have, p)
	}
}

// present reports whether the mirror holds p, not expired at now.
func (n *NFTables) present(p netip.Prefix, now time.Time) bool {
	exp, ok := n.have[p]
	return ok && (exp.IsZero() || exp.After(now))
}

// coveredBy returns a present prefix of the mirror that contains p and is
// larger, if any.
func (n *NFTables) coveredBy(p netip.Prefix, now time.Time) (netip.Prefix, bool) {
	for b := p.Bits() - 1; b > 0; b-- {
		if n.bits[b] == 0 {
			continue
		}
		q := netip.PrefixFrom(p.Addr(), b).Masked()
		if n.present(q, now) {
			return q, true
		}
	}
	return netip.Prefix{}, false
}

// inside returns the prefixes of the mirror that p contains and that are
// smaller, single addresses excepted (they are in the other set).
func (n *NFTables) inside(p netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	maxBits := p.Addr().BitLen()
	var longer int
	for b := p.Bits() + 1; b < maxBits; b++ {
		longer += n.bits[b]
	}
	if longer == 0 {
		return nil
	}
	for q := range n.have {
		if q.Bits() > p.Bits() && q.Bits() < maxBits && q.Addr().Is4() == p.Addr().Is4() && p.Contains(q.Addr()) {
			out = append(out, q)
		}
	}
	return out
}

// nftPlan is one transaction: per family, the prefixes to delete first
// and the entries to add after.
type nftPlan struct {
	del [4][]netip.Prefix // by specIdx
	add [4][]Entry
}

// planAdd plans adding es against the mirror (see NFTables).
func (n *NFTables) planAdd(es []Entry, now time.Time) (nftPlan, int) {
	var pl nftPlan
	es = slices.Clone(es)
	// Larger prefixes first, so a smaller one in the same batch is seen
	// covered.
	slices.SortStableFunc(es, func(a, b Entry) int { return a.Prefix.Bits() - b.Prefix.Bits() })
	batch := make(map[netip.Prefix]bool, len(es))
	var batchBits [129]bool
	covered := 0
	for _, e := range es {
		p, i := e.Prefix, specIdx(e.Prefix)
		if n.present(p, now) {
			pl.del[i] = append(pl.del[i], p) // re-add: replaces the timeout
			pl.add[i] = append(pl.add[i], e)
			batch[p], batchBits[p.Bits()] = true, true
			continue
		}
		if i%2 == 0 {
			// An address: its own set, never in conflict with a prefix.
			pl.add[i] = append(pl.add[i], e)
			continue
		}
		inBatch := false
		for b := p.Bits() - 1; b > 0 && !inBatch; b-- {
			inBatch = batchBits[b] && batch[netip.PrefixFrom(p.Addr(), b).Masked()]
		}
		if _, ok := n.coveredBy(p, now); ok || inBatch {
			covered++
			continue
		}
		for _, q := range n.inside(p) {
			if n.present(q, now) {
				pl.del[i] = append(pl.del[i], q)
			}
		}
		pl.add[i] = append(pl.add[i], e)
		batch[p], batchBits[p.Bits()] = true, true
	}
	return pl, covered
}

// planRemove plans removing ps: what the mirror holds of them.
func (n *NFTables) planRemove(ps []Entry, now time.Time) nftPlan {
	var pl nftPlan
	for _, e := range ps {
		if n.present(e.Prefix, now) {
			i := specIdx(e.Prefix)
			pl.del[i] = append(pl.del[i], e.Prefix)
		}
	}
	return pl
}

// commit applies pl as one transaction (or, past nftMaxBansPerTxn, as
// several) and updates the mirror.
func (n *NFTables) commit(ctx context.Context, pl nftPlan, now time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c, err := n.conn()
	if err != nil {
		return err
	}
	t := n.table()
	g0, gerr := nftGen()
	valid := gerr == nil && n.genOK && g0 == n.gen
	n.genOK = false
	queued, txns := 0, 0
	flush := func() error {
		if queued == 0 {
			return nil
		}
		queued = 0
		txns++
		return c.Flush()
	}
	for i, f := range n.specs() {
		s := n.nftSet(t, f)
		elems := func(p netip.Prefix, d time.Duration) []nftables.SetElement {
			if f.interval {
				return intervalElems(p, d)
			}
			return []nftables.SetElement{{Key: p.Addr().AsSlice(), Timeout: d}}
		}
		for _, chunk := range chunkElems(pl.del[i], func(p netip.Prefix) []nftables.SetElement { return elems(p, 0) }) {
			if err := c.SetDeleteElements(s, chunk); err != nil {
				return err
			}
			queued += len(chunk)
			if queued >= 2*nftMaxBansPerTxn {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		for _, chunk := range chunkElems(pl.add[i], func(e Entry) []nftables.SetElement { return elems(e.Prefix, e.Timeout) }) {
			if err := c.SetAddElements(s, chunk); err != nil {
				return err
			}
			queued += len(chunk)
			if queued >= 2*nftMaxBansPerTxn {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	for i := range pl.del {
		for _, p := range pl.del[i] {
			n.unremember(p)
		}
		for _, e := range pl.add[i] {
			var exp time.Time
			if e.Timeout > 0 {
				exp = now.Add(e.Timeout)
			}
			n.remember(e.Prefix, exp)
		}
	}
	if g1, err := nftGen(); err == nil && valid && g1 == g0+uint32(txns) {
		n.gen, n.genOK = g1, true
	}
	return nil
}

// chunkElems turns items into element lists of at most nftElemsPerMsg
// elements, never splitting one item's start from its end.
func chunkElems[T any](items []T, elems func(T) []nftables.SetElement) [][]nftables.SetElement {
	var out [][]nftables.SetElement
	var cur []nftables.SetElement
	for _, it := range items {
		els := elems(it)
		if len(cur)+len(els) > nftElemsPerMsg {
			out = append(out, cur)
			cur = nil
		}
		cur = append(cur, els...)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// Add adds or refreshes entries in one transaction.
func (n *NFTables) Add(ctx context.Context, entries []Entry) error {
	b := split(entries, n.cfg.IPv6)
	es := append(b.v4, b.v6...)
	return n.apply(ctx, "add", es, b.errs)
}

// Remove deletes entries in one transaction; absent ones are ignored.
func (n *NFTables) Remove(ctx context.Context, prefixes []netip.Prefix) error {
	b := splitPrefixes(prefixes, n.cfg.IPv6)
	es := append(b.v4, b.v6...)
	return n.apply(ctx, "remove", es, b.errs)
}

// apply plans es against the mirror (reading the sets first if it is not
// known) and commits the plan. If the kernel refuses it, the sets are read
// again (a ban expired meanwhile, or someone changed them) and, if the
// table or a set is gone, repaired at once; then the batch is planned and
// committed once more.
func (n *NFTables) apply(ctx context.Context, op string, es []Entry, errs []error) error {
	if len(es) == 0 {
		return n.c.fail(batchErr(op, errs))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var err error
	repaired := false
	for attempt := 0; attempt < 2; attempt++ {
		if !n.known || attempt > 0 {
			if _, err = n.readSets(ctx); errors.Is(err, ErrNotSetUp) {
				n.log.Warn("banner's nftables table or set is gone; repairing it now", "err", err)
				var made []string
				if made, err = n.repairLocked(ctx); err == nil {
					repaired = len(made) > 0
					_, err = n.readSets(ctx)
				}
			}
			if err != nil {
				continue
			}
		}
		now := n.now()
		var pl nftPlan
		covered := 0
		if op == "add" {
			pl, covered = n.planAdd(es, now)
		} else {
			pl = n.planRemove(es, now)
		}
		if err = n.commit(ctx, pl, now); err != nil {
			n.forget()
			continue
		}
		n.c.count(op, len(es))
		n.log.Debug(done(op), "entries", len(es), "covered_by_larger_bans", covered)
		var rep error
		if repaired {
			rep = fmt.Errorf("table inet %s: %w", n.cfg.NFTTable, ErrRepaired)
		}
		return errors.Join(n.c.fail(batchErr(op, errs)), rep)
	}
	return n.c.fail(errors.Join(fmt.Errorf("firewall %s of %d entries: %w", op, len(es), err), batchErr(op, errs)))
}
