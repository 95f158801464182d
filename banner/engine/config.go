package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/banner-mta/banner/banner"
)

// Config configures the engine. The zero value is not valid; start from
// DefaultConfig.
type Config struct {
	// FindTime is the sliding window in which an address's event weights
	// add up to its score (findtime).
	FindTime time.Duration
	// MaxRetry is the score at which an address is banned (maxretry).
	MaxRetry float64
	// BanTime is the length of a first ban (bantime).
	BanTime time.Duration
	// Factor multiplies the ban length for each repeated ban: the n-th ban
	// lasts BanTime * Factor^(n-1) (factor).
	Factor float64
	// MaxTime caps escalated ban lengths (maxtime).
	MaxTime time.Duration
	// BanTimeJitter adds a random [0, BanTimeJitter) to every ban banner
	// decides, after the MaxTime cap, so that a client cannot learn when its
	// ban ends (like fail2ban's bantime.rndtime); a ban given a length by
	// hand gets none. 0 is off (bantime_jitter).
	BanTimeJitter time.Duration
	// Rand returns a random number in [0, 1) for the jitter; nil means
	// math/rand/v2.
	Rand func() float64
	// ForgetAfter is the quiet period after the end of an address's last ban
	// after which its escalation count is forgotten (forget_after).
	ForgetAfter time.Duration
	// Kinds gives kinds a score window of their own, with its own MaxRetry
	// and FindTime: their events add only to it, not to the score of the
	// other kinds ([ban.sasl] for KindSASL). The window is per address
	// (per /IPv6Prefix) and kind; a ban from it is an ordinary ban.
	Kinds map[banner.Kind]KindRule
	// Allowlist holds prefixes that are never banned, in addition to
	// 127.0.0.0/8 and ::1/128, which are always allowed (allowlist).
	Allowlist []netip.Prefix
	// IPv6Prefix is the prefix length IPv6 clients are scored and banned
	// by: 128 bans single addresses, 64 a whole /64 (ipv6_prefix).
	IPv6Prefix int
	// EchoWindow is how far apart in time the same event seen by the policy
	// service and in the log may be to count once; 0 disables de-duplication
	// (echo_window).
	EchoWindow time.Duration
	// ReconcileInterval is how often the kernel's firewall state is compared
	// with the engine's and repaired; 0 disables periodic reconciliation
	// (reconcile_interval).
	ReconcileInterval time.Duration
	// QueueSize is the capacity of the event queue behind Report; events
	// arriving when it is full are dropped and counted (queue_size).
	QueueSize int
	// Fleet, if not nil, hears of this node's bans, unbans, forgets and
	// counted offender events, to share them with the other nodes (see
	// banner/fleet). Its Publish must not block.
	Fleet Publisher
	// GoodSenderFor is how long a client whose mail Postfix accepted counts
	// as a good sender (good_sender_days); 0 turns good senders off.
	GoodSenderFor time.Duration
	// GoodSenderFactor divides the weight of a good sender's
	// recipient-probing events (unknown_user, too_many_errors), so that it
	// needs this many times maxretry of them to be banned
	// (good_sender_factor).
	GoodSenderFactor float64
	// MaxGoodSenders bounds how many good senders are remembered; the ones
	// that delivered longest ago are forgotten first (good_senders_max).
	MaxGoodSenders int
	// AllowName, if set, allowlists addresses by name (allow_fcrdns): it
	// returns the address's forward-confirmed name if that is allowlisted.
	// It must not block (the engine's loop calls it).
	AllowName func(netip.Addr) (string, bool)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives one Info line per ban and unban; nil means
	// slog.Default().
	Logger *slog.Logger
}

// DefaultConfig returns the defaults, which the configuration file's
// [ban] section starts from.
func DefaultConfig() Config {
	return Config{
		FindTime:          10 * time.Minute,
		MaxRetry:          5,
		BanTime:           time.Hour,
		Factor:            2,
		MaxTime:           7 * 24 * time.Hour,
		ForgetAfter:       7 * 24 * time.Hour,
		IPv6Prefix:        128,
		EchoWindow:        2 * time.Minute,
		ReconcileInterval: 5 * time.Minute,
		QueueSize:         10000,
		GoodSenderFor:     30 * 24 * time.Hour,
		GoodSenderFactor:  3,
		MaxGoodSenders:    100_000,
		Kinds:             map[banner.Kind]KindRule{banner.KindSASL: {MaxRetry: 5, FindTime: time.Hour, OwnPorts: true}},
	}
}

// KindRule is the scoring of a kind with a window of its own.
type KindRule struct {
	MaxRetry float64
	FindTime time.Duration
	// OwnPorts: the kind's bans close the ports of its own port group
	// (banner.KindGroups: [ban.sasl] ports for sasl), not [firewall]
	// ports. The firewall must have that group (firewall.Config.SASLPorts).
	OwnPorts bool
}

// Bounds of settings that no one sets on purpose: a queue of two billion
// events takes the memory of the machine, a maxretry of 1e308 bans no one.
const (
	maxQueueSize = 1_000_000
	maxMaxRetry  = 1_000_000
	maxJitter    = 7 * 24 * time.Hour
)

// Validate reports every invalid field, each named as in the config file.
func (c Config) Validate() error {
	var errs []error
	if c.FindTime < time.Second {
		errs = append(errs, fmt.Errorf("findtime: must be > 0 and at least 1s, got %v", c.FindTime))
	}
	if !(c.MaxRetry > 0) || c.MaxRetry > maxMaxRetry {
		errs = append(errs, fmt.Errorf("maxretry: must be > 0 and at most %g, got %v", float64(maxMaxRetry), c.MaxRetry))
	}
	if c.BanTime < time.Second {
		errs = append(errs, fmt.Errorf("bantime: must be > 0 and at least 1s (kernel timeouts count seconds), got %v", c.BanTime))
	}
	if !(c.Factor >= 1) || c.Factor > 1000 {
		errs = append(errs, fmt.Errorf("factor: must be >= 1 and at most 1000, got %v", c.Factor))
	}
	if c.MaxTime < c.BanTime {
		errs = append(errs, fmt.Errorf("maxtime: must be >= bantime (%v), got %v", c.BanTime, c.MaxTime))
	}
	if c.BanTimeJitter < 0 || c.BanTimeJitter > maxJitter {
		errs = append(errs, fmt.Errorf("bantime_jitter: must be between 0 (off) and %v, got %v", maxJitter, c.BanTimeJitter))
	}
	for _, k := range slices.Sorted(maps.Keys(c.Kinds)) {
		r := c.Kinds[k]
		if !(r.MaxRetry > 0) || r.MaxRetry > maxMaxRetry {
			errs = append(errs, fmt.Errorf("%s.maxretry: must be > 0 and at most %g, got %v", k, float64(maxMaxRetry), r.MaxRetry))
		}
		if r.FindTime < time.Second {
			errs = append(errs, fmt.Errorf("%s.findtime: must be at least 1s, got %v", k, r.FindTime))
		}
	}
	if c.ForgetAfter <= 0 {
		errs = append(errs, fmt.Errorf("forget_after: must be > 0, got %v", c.ForgetAfter))
	}
	for i, p := range c.Allowlist {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("allowlist[%d]: invalid prefix", i))
		} else if p.Addr().Is4In6() {
			errs = append(errs, fmt.Errorf("allowlist[%d]: %v: write IPv4-mapped prefixes as IPv4", i, p))
		}
	}
	if c.IPv6Prefix < 32 || c.IPv6Prefix > 128 {
		errs = append(errs, fmt.Errorf("ipv6_prefix: must be between 32 and 128, got %d", c.IPv6Prefix))
	}
	if c.EchoWindow < 0 {
		errs = append(errs, fmt.Errorf("echo_window: must be >= 0, got %v", c.EchoWindow))
	}
	if c.ReconcileInterval < 0 || (c.ReconcileInterval > 0 && c.ReconcileInterval < time.Second) {
		errs = append(errs, fmt.Errorf("reconcile_interval: must be >= 0 (0 is off) and otherwise at least 1s, got %v", c.ReconcileInterval))
	}
	if c.QueueSize <= 0 || c.QueueSize > maxQueueSize {
		errs = append(errs, fmt.Errorf("queue_size: must be > 0 and at most %d, got %d", maxQueueSize, c.QueueSize))
	}
	errs = append(errs, c.validateGoodSenders()...)
	return errors.Join(errs...)
}

func (c Config) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c Config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}
