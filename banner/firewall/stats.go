package firewall

import (
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// counters implements Stats for every backend.
type counters struct {
	adds, removes, errors atomic.Uint64
	mu                    sync.Mutex
	lastErr               string
	lastErrTime           time.Time
	hookRepairs           uint64
	lastRepair            string
	lastRepairTime        time.Time
}

// recordRepair counts what a Setup or Repair restored (made) and the
// foreign rules it removed from cfg's chain as one repair, in
// Stats.HookRepairs, and logs each kind at Warn.
func (c *counters) recordRepair(log *slog.Logger, cfg Config, made, foreign []string) {
	if len(made)+len(foreign) == 0 {
		return
	}
	c.mu.Lock()
	c.hookRepairs += uint64(len(made) + len(foreign))
	c.lastRepair, c.lastRepairTime = strings.Join(append(slices.Clip(made), foreign...), "; "), time.Now()
	c.mu.Unlock()
	chain, culprits, hint := cfg.Chain, "iptables -F, netfilter-persistent reload, ufw reload?", "(was firewall backend switched without running `banner teardown` first?)"
	if cfg.Backend == BackendNFTables {
		chain, culprits, hint = "inet "+cfg.NFTTable+" "+nftChain, "nft flush ruleset, systemctl restart nftables, a reload of /etc/nftables.conf?", "(added by hand?)"
	}
	if len(made) > 0 {
		log.Warn("firewall hooks were missing or altered, so bans were not fully enforced; restored them. "+
			"Something rebuilt the firewall without banner's rules ("+culprits+")",
			"restored", made)
	}
	if len(foreign) > 0 {
		log.Warn("removed rules from banner's chain that the "+cfg.Backend+" backend did not make, left by another backend or by hand: "+
			"they dropped clients whatever banner's bans said, and no unban could lift them "+hint,
			"chain", chain, "removed", foreign)
	}
}

// count adds n entries to the counter of op: "add" (Stats.Adds) or
// "remove" (Stats.Removes).
func (c *counters) count(op string, n int) {
	if op == "add" {
		c.adds.Add(uint64(n))
	} else {
		c.removes.Add(uint64(n))
	}
}

// fail counts err, if not nil, as the last failure and returns it.
func (c *counters) fail(err error) error {
	if err == nil {
		return nil
	}
	c.errors.Add(1)
	c.mu.Lock()
	c.lastErr, c.lastErrTime = err.Error(), time.Now()
	c.mu.Unlock()
	return err
}

func (c *counters) stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return Stats{Adds: c.adds.Load(), Removes: c.removes.Load(), Errors: c.errors.Load(),
		LastError: c.lastErr, LastErrorTime: c.lastErrTime,
		HookRepairs: c.hookRepairs, LastHookRepair: c.lastRepair, LastHookRepairTime: c.lastRepairTime}
}
