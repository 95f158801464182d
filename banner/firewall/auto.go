package firewall

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/google/nftables"
)

// Choice is the backend Choose picked for "auto", and why.
type Choice struct {
	Backend string `json:"backend"` // BackendNFTables or BackendIPSet; the configured one when not "auto"
	Reason  string `json:"reason"`  // one sentence for status and run -check
	Auto    bool   `json:"auto"`    // the configuration said "auto"
}

// String is "nftables (auto: REASON)" or "ipset (configured)".
func (c Choice) String() string {
	if !c.Auto {
		return c.Backend + " (configured)"
	}
	return c.Backend + " (auto: " + c.Reason + ")"
}

// Choose resolves cfg.Backend. Any backend but "auto" is returned as it
// is. For "auto" it picks nftables when the nftables netlink API works (a
// listing of the tables succeeds: the kernel has nf_tables and banner may
// use it) and the system's iptables is not iptables-legacy with rules in
// use (`iptables -V` says "legacy" and iptables-legacy-save or
// ip6tables-legacy-save print a rule): a host still firewalled by legacy
// iptables keeps the ipset backend, next to its rules and tools.
// Otherwise it picks ipset. It only reads.
func Choose(ctx context.Context, cfg Config) Choice {
	if cfg.Backend != BackendAuto {
		return Choice{Backend: cfg.Backend, Reason: "set in the configuration"}
	}
	ch := Choice{Auto: true, Backend: BackendIPSet}
	if err := ProbeNFTables(); err != nil {
		ch.Reason = fmt.Sprintf("the nftables netlink API does not work here (%v)", err)
		if errors.Is(err, os.ErrPermission) || strings.Contains(err.Error(), "operation not permitted") {
			ch.Reason += "; as root it may: ask again as root"
		}
		return ch
	}
	legacy, rules, detail := legacyRulesInUse(ctx)
	switch {
	case legacy && rules > 0:
		ch.Reason = fmt.Sprintf("iptables is iptables-legacy with %s in use (%s): banner stays with ipset beside them", plural(rules, "rule"), detail)
	case legacy:
		ch.Backend, ch.Reason = BackendNFTables, "the nftables netlink API works; iptables is iptables-legacy but holds no rules"
	case detail != "":
		ch.Backend, ch.Reason = BackendNFTables, "the nftables netlink API works; "+detail
	default:
		ch.Backend, ch.Reason = BackendNFTables, "the nftables netlink API works"
	}
	return ch
}

// ProbeNFTables reports whether the nftables netlink API works for this
// process: it lists the tables.
func ProbeNFTables() error {
	c, err := nftables.New()
	if err == nil {
		_, err = c.ListTables()
	}
	return err
}

// legacyRulesInUse tells whether the iptables on PATH is iptables-legacy
// and, if so, how many rules the legacy tables hold in both families.
// detail says what was found.
func legacyRulesInUse(ctx context.Context) (legacy bool, rules int, detail string) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	path, err := exec.LookPath("iptables")
	if err != nil {
		return false, 0, "iptables is not installed"
	}
	out, err := exec.CommandContext(ctx, path, "-V").CombinedOutput()
	if err != nil {
		return false, 0, ""
	}
	v := strings.TrimSpace(string(out))
	if !strings.Contains(v, "legacy") {
		return false, 0, "iptables is " + v
	}
	var where []string
	for _, save := range []string{"iptables-legacy-save", "ip6tables-legacy-save"} {
		p, err := exec.LookPath(save)
		if err != nil {
			continue
		}
		out, err := exec.CommandContext(ctx, p).Output()
		if err != nil {
			continue
		}
		n := countRules(out)
		if n > 0 {
			where = append(where, fmt.Sprintf("%s lists %d", save, n))
		}
		rules += n
	}
	return true, rules, strings.Join(where, ", ")
}

// countRules counts the "-A" lines of iptables-save output.
func countRules(save []byte) int {
	n := 0
	for l := range bytes.Lines(save) {
		if bytes.HasPrefix(l, []byte("-A ")) {
			n++
		}
	}
	return n
}
