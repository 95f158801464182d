package firewall

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// None is the dry-run backend: it runs no command, logs at Info what it
// would do and keeps an in-memory set, with timeouts, so List is truthful.
type None struct {
	cfg Config
	log *slog.Logger
	c   counters

	mu  sync.Mutex
	set map[netip.Prefix]time.Time // expiry; zero = no timeout
	now func() time.Time           // nil = time.Now; replaced in tests
}

// Name returns "none".
func (n *None) Name() string { return BackendNone }

// Stats returns the backend's counters.
func (n *None) Stats() Stats { return n.c.stats() }

func (n *None) clock() time.Time {
	if n.now != nil {
		return n.now()
	}
	return time.Now()
}

// Setup logs the chain and jump it would create.
func (n *None) Setup(ctx context.Context) error {
	n.log.Info("dry run: would set up chain and jump", "chain", n.cfg.Chain,
		"jump", "-I INPUT 1 "+strings.Join(jumpSpec(n.cfg), " "), "ipv6", n.cfg.IPv6)
	return nil
}

// Repair has nothing to check: it returns nil.
func (n *None) Repair(ctx context.Context) ([]string, error) { return nil, nil }

// Add records the entries.
func (n *None) Add(ctx context.Context, entries []Entry) error {
	b := split(entries, n.cfg.IPv6)
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.clock()
	for _, e := range append(b.v4, b.v6...) {
		var exp time.Time
		if e.Timeout > 0 {
			exp = now.Add(e.Timeout)
		}
		n.set[e.Prefix] = exp
		n.log.Info("dry run: would ban", "prefix", e.Prefix, "timeout", e.Timeout)
	}
	n.c.adds.Add(uint64(len(b.v4) + len(b.v6)))
	return n.c.fail(batchErr("add", b.errs))
}

// Remove forgets the prefixes.
func (n *None) Remove(ctx context.Context, prefixes []netip.Prefix) error {
	b := splitPrefixes(prefixes, n.cfg.IPv6)
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, e := range append(b.v4, b.v6...) {
		delete(n.set, e.Prefix)
		n.log.Info("dry run: would unban", "prefix", e.Prefix)
	}
	n.c.removes.Add(uint64(len(b.v4) + len(b.v6)))
	return n.c.fail(batchErr("remove", b.errs))
}

// List returns the recorded entries that have not expired, sorted, with
// their remaining timeouts rounded up to whole seconds as ipset shows them.
func (n *None) List(ctx context.Context) ([]Entry, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	now := n.clock()
	es := make([]Entry, 0, len(n.set))
	for p, exp := range n.set {
		e := Entry{Prefix: p}
		if !exp.IsZero() {
			left := exp.Sub(now)
			if left <= 0 {
				delete(n.set, p)
				continue
			}
			e.Timeout = time.Duration(seconds(left)) * time.Second
		}
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b Entry) int { return comparePrefix(a.Prefix, b.Prefix) })
	return es, nil
}

// Teardown forgets everything. It reports nothing removed: nothing was
// in the kernel.
func (n *None) Teardown(ctx context.Context) (TeardownReport, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.set)
	n.log.Info("dry run: would remove jump, chain and sets", "chain", n.cfg.Chain)
	return TeardownReport{}, nil
}

// comparePrefix orders prefixes by address, then by length.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
