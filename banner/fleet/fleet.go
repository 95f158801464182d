package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/banner-mta/banner/banner"
)

// Config is a node's fleet settings.
type Config struct {
	// URL is redis://[user@]host:port/db or rediss:// (TLS).
	URL string
	// CAFile verifies a rediss:// server (PEM); empty: the system roots.
	CAFile string
	// User is the Redis ACL user; PasswordFile holds its password.
	User         string
	PasswordFile string
	// Node names this node in the fleet; it must be unique.
	Node string
	// KeyPrefix starts every key banner uses ("banner:"), so that several
	// fleets can share one Redis.
	KeyPrefix string
	// MaxLen is the stream's approximate retention in entries.
	MaxLen int64
	// QueueSize bounds the messages waiting to be sent; more are dropped
	// and counted.
	QueueSize int
	// PollTimeout is how long one XREAD waits for new entries.
	PollTimeout time.Duration
	Logger      *slog.Logger
}

// Defaults.
const (
	DefaultKeyPrefix   = "banner:"
	DefaultMaxLen      = 100000
	DefaultQueueSize   = 8192
	DefaultPollTimeout = time.Second
	readBatch          = 512
	sendBatch          = 256
	heartbeatInterval  = 5 * time.Second
	retryMin           = 200 * time.Millisecond
	retryMax           = 5 * time.Second
	maxNodesSeen       = 1024 // bounds what a bad writer can make this node remember
	// epochCheckInterval: how often the reader checks that Redis still
	// holds the stream it reads (not restarted empty).
	epochCheckInterval = 250 * time.Millisecond
	// ownSaveInterval: how often a cursor that only passed this node's
	// own messages is saved.
	ownSaveInterval = 5 * time.Second
)

// DefaultConfig returns the defaults the [fleet] section starts from (URL
// a Redis on this host, Node empty: the daemon takes the host name).
func DefaultConfig() Config {
	return Config{URL: "redis://127.0.0.1:6379/0", KeyPrefix: DefaultKeyPrefix, MaxLen: DefaultMaxLen,
		QueueSize: DefaultQueueSize, PollTimeout: DefaultPollTimeout}
}

// Validate checks the configuration; errors name the field.
func (c Config) Validate() error {
	if c.URL == "" {
		return errors.New("redis: empty")
	}
	if !strings.HasPrefix(c.URL, "redis://") && !strings.HasPrefix(c.URL, "rediss://") && !strings.HasPrefix(c.URL, "unix://") {
		return fmt.Errorf("redis: %q: want redis://host:port/db or rediss://host:port/db", c.URL)
	}
	if _, err := redis.ParseURL(c.URL); err != nil {
		return fmt.Errorf("redis: %w", err)
	}
	if strings.ContainsAny(c.KeyPrefix, " \t\r\n") || len(c.KeyPrefix) > 128 {
		return fmt.Errorf("key_prefix: %q: want up to 128 bytes without spaces", c.KeyPrefix)
	}
	if c.Node == "" || len(c.Node) > MaxNodeBytes || strings.ContainsAny(c.Node, " \t\r\n") {
		return fmt.Errorf("node: %q: want a name of 1 to %d bytes without spaces", c.Node, MaxNodeBytes)
	}
	if c.CAFile != "" && !strings.HasPrefix(c.URL, "rediss://") {
		return errors.New("ca_file: set, but redis is not a rediss:// URL")
	}
	if c.MaxLen < 0 {
		return errors.New("max_len: negative")
	}
	if c.QueueSize < 0 || c.QueueSize > 1_000_000 {
		return errors.New("queue_size: want 0 (the default) to 1000000")
	}
	if c.PollTimeout < 0 {
		return errors.New("poll_timeout: negative")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.KeyPrefix == "" {
		c.KeyPrefix = DefaultKeyPrefix
	}
	if c.MaxLen == 0 {
		c.MaxLen = DefaultMaxLen
	}
	if c.QueueSize == 0 {
		c.QueueSize = DefaultQueueSize
	}
	if c.PollTimeout == 0 {
		c.PollTimeout = DefaultPollTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Options turns the configuration into go-redis options: the URL, the ACL
// user, the password read from its file and the CA for TLS.
func (c Config) Options() (*redis.Options, error) {
	opt, err := redis.ParseURL(c.URL)
	if err != nil {
		return nil, fmt.Errorf("fleet: redis: %w", err)
	}
	if c.User != "" {
		opt.Username = c.User
	}
	if c.PasswordFile != "" {
		pw, err := os.ReadFile(c.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("fleet: password_file: %w", err)
		}
		opt.Password = strings.TrimRight(string(pw), "\r\n")
	}
	if c.CAFile != "" {
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("fleet: ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("fleet: ca_file %s: no PEM certificate", c.CAFile)
		}
		if opt.TLSConfig == nil {
			opt.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		opt.TLSConfig.RootCAs = pool
	}
	opt.DialTimeout = 2 * time.Second
	opt.ReadTimeout = 2 * time.Second
	opt.WriteTimeout = 2 * time.Second
	opt.MaxRetries = 0
	opt.ContextTimeoutEnabled = true
	opt.PoolSize = 4
	return opt, nil
}

// Cursor is how far a node has read the stream: the stream's epoch (a
// random number set when the stream's keys are created, so that a Redis
// restarted empty is recognised) and the last entry ID applied.
type Cursor struct {
	Epoch int64
	ID    string // "ms-seq"; "" = nothing read
}

// Position stores c in a banner.LogPosition, so that the engine saves it
// in the same store transaction as what it applied (see engine.Checkpoint).
func (c Cursor) Position() banner.LogPosition {
	ms, seq := splitID(c.ID)
	return banner.LogPosition{Device: ms, Inode: seq, Offset: c.Epoch}
}

// CursorFromPosition is the inverse of Cursor.Position.
func CursorFromPosition(p banner.LogPosition) Cursor {
	c := Cursor{Epoch: p.Offset}
	if c.Epoch != 0 {
		c.ID = fmt.Sprintf("%d-%d", p.Device, p.Inode)
	}
	return c
}

func splitID(id string) (uint64, uint64) {
	a, b, _ := strings.Cut(id, "-")
	ms, _ := strconv.ParseUint(a, 10, 64)
	seq, _ := strconv.ParseUint(b, 10, 64)
	return ms, seq
}

// idLess reports whether stream ID a is before b.
func idLess(a, b string) bool {
	am, as := splitID(a)
	bm, bs := splitID(b)
	return am < bm || (am == bm && as < bs)
}

// Sink is the engine side of a node: it applies what the node hears.
type Sink interface {
	// Apply hands received messages (from other nodes, already decoded),
	// then the cursor after them, to the engine; the cursor is saved only
	// with their effects. It may wait (back-pressure), not drop.
	Apply(ctx context.Context, msgs []Message, cur Cursor) error
	// Active returns the live bans this node enforces, for republishing
	// them when Redis lost them.
	Active() []banner.Ban
}

// Stats is the fleet's part of `banner status` and the metrics.
type Stats struct {
	Enabled   bool                 `json:"enabled"`
	Node      string               `json:"node"`
	Connected bool                 `json:"connected"`
	LastError string               `json:"last_error,omitempty"`
	LastID    string               `json:"last_id"`
	Epoch     int64                `json:"epoch"`
	Lag       time.Duration        `json:"lag_ns"`
	NodesSeen map[string]time.Time `json:"nodes_seen,omitempty"`
	Queued    int                  `json:"queued"`
	Sent      uint64               `json:"sent"`
	Dropped   uint64               `json:"dropped"`
	Received  uint64               `json:"received"`
	Malformed uint64               `json:"malformed"`
	Replayed  uint64               `json:"replayed"`
	Snapshots uint64               `json:"snapshots"`
	Resyncs   uint64               `json:"resyncs"`
	SendErrs  uint64               `json:"send_errors"`
}

// Node is one banner node's connection to its fleet.
type Node struct {
	cfg  Config
	log  *slog.Logger
	rdb  *redis.Client
	sink Sink

	keyStream, keyBans, keyBan, keyEpoch, keyNodes string

	queue chan Message

	mu        sync.Mutex
	cur       Cursor
	lastErr   string
	nodesSeen map[string]time.Time
	pending   []Message // a batch whose send failed, sent first on reconnect

	connected                   atomic.Bool
	lag                         atomic.Int64
	sent, dropped, received     atomic.Uint64
	malformed, replayed         atomic.Uint64
	snapshots, resyncs, sendErr atomic.Uint64
	droppedSynced               atomic.Uint64 // dropped as of the last sync
	epochSeen                   atomic.Int64  // the epoch the writer last knew
	catchUpTo                   string        // reader only: entries up to this ID were in the stream at connect: a replay
}

// New returns a node for cfg that resumes reading from cur (the cursor the
// store saved; the zero Cursor for a new node). Run starts it.
func New(cfg Config, cur Cursor) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	cfg = cfg.withDefaults()
	opt, err := cfg.Options()
	if err != nil {
		return nil, err
	}
	p := cfg.KeyPrefix
	return &Node{
		cfg: cfg, log: cfg.Logger, rdb: redis.NewClient(opt),
		keyStream: p + "stream", keyBans: p + "bans", keyBan: p + "ban", keyEpoch: p + "epoch", keyNodes: p + "nodes",
		queue: make(chan Message, cfg.QueueSize), cur: cur, nodesSeen: map[string]time.Time{},
	}, nil
}

// CursorName is the name under which the engine saves this fleet's cursor
// among the log positions.
func CursorName(keyPrefix string) string {
	if keyPrefix == "" {
		keyPrefix = DefaultKeyPrefix
	}
	return "fleet:" + keyPrefix
}

// Name is the node's name.
func (n *Node) Name() string { return n.cfg.Node }

// Publish queues m to be sent without waiting: if the queue is full the
// message is dropped and counted. It is safe for concurrent use and meant
// for the engine's goroutine.
func (n *Node) Publish(m Message) {
	m.Node = n.cfg.Node
	if m.Time.IsZero() {
		m.Time = time.Now()
	}
	select {
	case n.queue <- m:
	default:
		n.dropped.Add(1)
	}
}

// Close releases the Redis connections. Call it after Run returned.
func (n *Node) Close() error { return n.rdb.Close() }

// Stats returns a snapshot of the node's state and counters.
func (n *Node) Stats() Stats {
	n.mu.Lock()
	s := Stats{Enabled: true, Node: n.cfg.Node, LastError: n.lastErr, LastID: n.cur.ID, Epoch: n.cur.Epoch,
		NodesSeen: make(map[string]time.Time, len(n.nodesSeen))}
	for k, v := range n.nodesSeen {
		s.NodesSeen[k] = v
	}
	n.mu.Unlock()
	s.Connected = n.connected.Load()
	s.Lag = time.Duration(n.lag.Load())
	s.Queued = len(n.queue)
	s.Sent, s.Dropped, s.Received = n.sent.Load(), n.dropped.Load(), n.received.Load()
	s.Malformed, s.Replayed = n.malformed.Load(), n.replayed.Load()
	s.Snapshots, s.Resyncs, s.SendErrs = n.snapshots.Load(), n.resyncs.Load(), n.sendErr.Load()
	return s
}

func (n *Node) setErr(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if err == nil {
		n.lastErr = ""
		return
	}
	n.lastErr = err.Error()
}

// Run reads and writes the fleet until ctx ends, reconnecting with
// back-off while Redis is away. The node's engine works on alone meanwhile.
func (n *Node) Run(ctx context.Context, sink Sink) error {
	n.sink = sink
	backoff := retryMin
	for ctx.Err() == nil {
		err := n.session(ctx)
		if ctx.Err() != nil {
			break
		}
		if errors.Is(err, errResync) {
			n.log.Warn("fleet: Redis lost the fleet's data (restarted empty?): resyncing")
			continue
		}
		if n.connected.Swap(false) {
			n.log.Warn("fleet: lost Redis; working alone until it is back", "err", err)
		}
		n.setErr(err)
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, retryMax)
		if err == nil {
			backoff = retryMin
		}
	}
	n.connected.Store(false)
	return nil
}

// session is one connected period: sync, then read and write until an
// error.
func (n *Node) session(ctx context.Context) error {
	if err := n.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("fleet: connecting: %w", err)
	}
	epoch, err := n.sync(ctx)
	if err != nil {
		return err
	}
	if !n.connected.Swap(true) {
		n.log.Info("fleet: connected", "node", n.cfg.Node, "epoch", epoch, "last_id", n.cursor().ID)
	}
	n.setErr(nil)
	sctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := n.writer(sctx); err != nil {
			cancel(err)
		}
	}()
	err = n.reader(sctx, epoch)
	cancel(err)
	wg.Wait()
	if c := context.Cause(sctx); c != nil && !errors.Is(c, context.Canceled) {
		return c
	}
	return err
}

func (n *Node) cursor() Cursor {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cur
}

func (n *Node) setCursor(c Cursor) {
	n.mu.Lock()
	n.cur = c
	n.mu.Unlock()
}

// errResync ends a reader whose stream changed epoch (Redis restarted
// empty): the session starts over with a sync.
var errResync = errors.New("fleet: Redis lost the stream (new epoch): resyncing")

// sync decides where to read from. Same epoch and a cursor still inside
// the stream: replay from it. A new node, or one away longer than the
// stream's retention: a snapshot of the live bans, then the stream after
// it. A new epoch (Redis restarted empty, or a new fleet): republish this
// node's live bans and read the new stream from its start.
func (n *Node) sync(ctx context.Context) (int64, error) {
	cur := n.cursor()
	fresh := rand.Int64N(1<<62) + 1
	created, err := n.rdb.SetNX(ctx, n.keyEpoch, fresh, 0).Result()
	if err != nil {
		return 0, fmt.Errorf("fleet: epoch: %w", err)
	}
	epoch := fresh
	if !created {
		if epoch, err = n.rdb.Get(ctx, n.keyEpoch).Int64(); err != nil {
			return 0, fmt.Errorf("fleet: epoch: %w", err)
		}
	}
	n.epochSeen.Store(epoch)
	n.catchUpTo = ""
	if xs, err := n.rdb.XRevRangeN(ctx, n.keyStream, "+", "-", 1).Result(); err == nil && len(xs) > 0 {
		n.catchUpTo = xs[0].ID
	}
	switch {
	case cur.Epoch == epoch && cur.ID != "":
		gap, err := n.trimmedPast(ctx, cur.ID)
		if err != nil {
			return 0, err
		}
		if gap {
			// The stream was trimmed past our cursor: what we missed is
			// gone from it; the snapshot has the live bans (applying one
			// twice changes nothing).
			n.log.Warn("fleet: away longer than the stream's retention; taking a snapshot of the live bans", "last_id", cur.ID)
			if err := n.snapshot(ctx, epoch, true); err != nil {
				return 0, err
			}
		}
		if d := n.dropped.Load(); d != n.droppedSynced.Load() {
			// Messages were dropped (a full queue while Redis was away):
			// the others may miss bans.
			n.republish(ctx)
			n.droppedSynced.Store(d)
		}
	case cur.Epoch != 0 || created:
		// The stream is not the one our cursor belongs to: Redis lost its
		// data (or this is a new fleet). Read all of the new stream and
		// give it the bans we hold.
		n.resyncs.Add(1)
		if cur.Epoch != 0 {
			n.log.Warn("fleet: Redis lost the fleet's data (new epoch); republishing live bans", "old_epoch", cur.Epoch, "epoch", epoch)
		}
		n.setCursor(Cursor{Epoch: epoch, ID: "0-0"})
		if err := n.sink.Apply(ctx, nil, n.cursor()); err != nil {
			return 0, err
		}
		n.republish(ctx)
	default:
		// A new node joining a running fleet.
		if err := n.snapshot(ctx, epoch, false); err != nil {
			return 0, err
		}
	}
	return epoch, nil
}

// trimmedPast reports whether entries after id may have been trimmed from
// the stream: its oldest entry is after id and entries were trimmed.
// Redis 7 counts what was ever added (XINFO STREAM entries-added; trimming
// does not move max-deleted-entry-id, which only XDEL sets); without that
// field, a stream of max_len entries or more is taken to be trimmed. It
// errs towards a gap: a snapshot taken when none was needed changes
// nothing (the live-ban set is what the stream left in force).
func (n *Node) trimmedPast(ctx context.Context, id string) (bool, error) {
	info, err := n.rdb.XInfoStream(ctx, n.keyStream).Result()
	if err == nil && info.EntriesAdded > 0 {
		return info.EntriesAdded > info.Length && info.FirstEntry.ID != "" && idLess(id, info.FirstEntry.ID), nil
	}
	if err != nil && !strings.Contains(err.Error(), "no such key") && !errors.Is(err, redis.Nil) {
		n.log.Debug("fleet: XINFO STREAM", "err", err) // e.g. not allowed: use the fallback
	}
	first, err := n.rdb.XRangeN(ctx, n.keyStream, "-", "+", 1).Result()
	if err != nil {
		return false, fmt.Errorf("fleet: reading the stream: %w", err)
	}
	if len(first) == 0 || !idLess(id, first[0].ID) {
		return false, nil
	}
	l, err := n.rdb.XLen(ctx, n.keyStream).Result()
	if err != nil {
		return false, fmt.Errorf("fleet: reading the stream: %w", err)
	}
	return l >= n.cfg.MaxLen, nil
}

// SnapshotUnbanReason is the reason of the unbans a snapshot after a gap
// hands the sink.
const SnapshotUnbanReason = "gone from the fleet's live bans while this host was away longer than the stream's retention (unbanned on another host)"

// snapshot applies the live bans of the sorted set and moves the cursor
// to the stream's last entry read before them, so that nothing after is
// missed (a ban seen twice is applied once).
//
// With lift (the stream was trimmed past this node's cursor), the unbans
// it missed are gone with the stream: a ban this node holds from another
// node (Source fleet) that the set no longer holds was lifted there, and
// is lifted here too. The node's own bans stay: one made while Redis was
// away is not in the set yet.
func (n *Node) snapshot(ctx context.Context, epoch int64, lift bool) error {
	last := "0-0"
	xs, err := n.rdb.XRevRangeN(ctx, n.keyStream, "+", "-", 1).Result()
	if err != nil {
		return fmt.Errorf("fleet: snapshot: %w", err)
	}
	if len(xs) > 0 {
		last = xs[0].ID
	}
	now := time.Now()
	members, err := n.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: n.keyBans, ByScore: true,
		Start: strconv.FormatInt(now.UnixMilli(), 10), Stop: "+inf"}).Result()
	if err != nil {
		return fmt.Errorf("fleet: snapshot: %w", err)
	}
	var msgs []Message
	lifted := 0
	if lift {
		live := make(map[string]bool, len(members))
		for _, m := range members {
			live[m] = true
		}
		for _, b := range n.sink.Active() {
			if b.Source == banner.SourceFleet && b.Node != n.cfg.Node && b.Until.After(now) && !live[b.Prefix.String()] {
				msgs = append(msgs, Message{Op: OpUnban, Node: b.Node, Time: now, Prefix: b.Prefix, Reason: SnapshotUnbanReason, Replay: true})
				lifted++
			}
		}
	}
	for chunk := range slices.Chunk(members, readBatch) {
		vals, err := n.rdb.HMGet(ctx, n.keyBan, chunk...).Result()
		if err != nil {
			return fmt.Errorf("fleet: snapshot: %w", err)
		}
		for _, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue
			}
			m, err := Decode([]byte(s))
			if err != nil {
				n.malformed.Add(1)
				continue
			}
			if m.Op != OpBan || m.OriginNode() == n.cfg.Node && m.Node == n.cfg.Node {
				continue
			}
			m.Replay = true
			msgs = append(msgs, m)
		}
	}
	n.snapshots.Add(1)
	n.replayed.Add(uint64(len(msgs)))
	c := Cursor{Epoch: epoch, ID: last}
	if err := n.sink.Apply(ctx, msgs, c); err != nil {
		return err
	}
	n.setCursor(c)
	n.log.Info("fleet: snapshot applied", "bans", len(msgs)-lifted, "unbans", lifted, "last_id", last)
	n.prune(ctx)
	return nil
}

// republish sends every live ban this node holds (its own and those it
// heard of) to the stream and the sorted set.
func (n *Node) republish(ctx context.Context) {
	bans := n.sink.Active()
	msgs := make([]Message, 0, len(bans))
	now := time.Now()
	for _, b := range bans {
		if !b.Until.After(now) {
			continue
		}
		msgs = append(msgs, BanMessage(b, n.cfg.Node))
	}
	for chunk := range slices.Chunk(msgs, sendBatch) {
		if err := n.send(ctx, chunk); err != nil {
			n.log.Warn("fleet: republishing live bans", "err", err)
			return
		}
	}
	if len(msgs) > 0 {
		n.log.Info("fleet: republished live bans", "bans", len(msgs))
	}
}

// BanMessage is the message for ban b enforced by node self (b.Node names
// the node it came from, if any).
func BanMessage(b banner.Ban, self string) Message {
	m := Message{Op: OpBan, Node: self, Origin: b.Node, Time: b.Since, Prefix: b.Prefix, Since: b.Since, Until: b.Until,
		Count: b.Count, Reason: b.Reason, Kind: b.Kind, Groups: b.Groups}
	if m.Origin == self {
		m.Origin = ""
	}
	return m
}

// reader reads the stream from the cursor and hands what other nodes wrote
// to the sink.
func (n *Node) reader(ctx context.Context, epoch int64) error {
	hb := time.Now().Add(-heartbeatInterval)
	var epochChecked, saved time.Time
	for {
		if time.Since(hb) >= heartbeatInterval {
			hb = time.Now()
			if err := n.heartbeat(ctx); err != nil {
				return err
			}
		}
		if time.Since(epochChecked) >= epochCheckInterval {
			epochChecked = time.Now()
			e, err := n.rdb.Get(ctx, n.keyEpoch).Int64()
			if err != nil && !errors.Is(err, redis.Nil) {
				return fmt.Errorf("fleet: epoch: %w", err)
			}
			if e != epoch {
				return errResync
			}
		}
		cur := n.cursor()
		// A bound of its own: go-redis gives a blocking read its block
		// time plus 10 s, too long to notice that Redis is gone.
		rctx, cancel := context.WithTimeout(ctx, n.cfg.PollTimeout+2*time.Second)
		res, err := n.rdb.XRead(rctx, &redis.XReadArgs{Streams: []string{n.keyStream, cur.ID}, Count: readBatch, Block: n.cfg.PollTimeout}).Result()
		cancel()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("fleet: reading the stream: %w", err)
		}
		for _, st := range res {
			if len(st.Messages) == 0 {
				continue
			}
			msgs := make([]Message, 0, len(st.Messages))
			replay := false
			for _, x := range st.Messages {
				m, ok := n.decodeEntry(x)
				if !ok {
					continue
				}
				if n.catchUpTo != "" && !idLess(n.catchUpTo, x.ID) {
					replay = true
				}
				msgs = append(msgs, m)
			}
			last := st.Messages[len(st.Messages)-1].ID
			if ms, _ := splitID(last); ms > 0 {
				n.lag.Store(int64(max(time.Since(time.UnixMilli(int64(ms))), 0)))
			}
			if replay {
				for i := range msgs {
					msgs[i].Replay = true
				}
				n.replayed.Add(uint64(len(msgs)))
			}
			c := Cursor{Epoch: epoch, ID: last}
			if len(msgs) == 0 && time.Since(saved) < ownSaveInterval {
				// Only this node's own messages (or junk): nothing to
				// apply, and reading them again after a restart is
				// harmless, so the cursor is saved only now and then.
				n.setCursor(c)
				continue
			}
			if err := n.sink.Apply(ctx, msgs, c); err != nil {
				return err
			}
			saved = time.Now()
			n.setCursor(c)
		}
	}
}

// decodeEntry decodes one stream entry; it counts and skips malformed
// ones and this node's own.
func (n *Node) decodeEntry(x redis.XMessage) (Message, bool) {
	raw, _ := x.Values["m"].(string)
	m, err := Decode([]byte(raw))
	if err != nil {
		n.malformed.Add(1)
		n.log.Debug("fleet: dropping malformed message", "id", x.ID, "err", err)
		return Message{}, false
	}
	n.mu.Lock()
	if _, ok := n.nodesSeen[m.Node]; ok || len(n.nodesSeen) < maxNodesSeen {
		n.nodesSeen[m.Node] = time.Now()
	}
	n.mu.Unlock()
	if m.Node == n.cfg.Node {
		return Message{}, false
	}
	n.received.Add(1)
	return m, true
}

// pruneScript removes, atomically (a ban renewed meanwhile keeps its
// entry), up to 1000 bans of the live-ban set that ended before ARGV[1],
// with their messages.
var pruneScript = redis.NewScript(`
local m = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, 1000)
for _, p in ipairs(m) do
	redis.call('ZREM', KEYS[1], p)
	redis.call('HDEL', KEYS[2], p)
end
return #m`)

// prune drops expired bans from the live-ban set and their messages.
func (n *Node) prune(ctx context.Context) {
	if err := pruneScript.Run(ctx, n.rdb, []string{n.keyBans, n.keyBan}, time.Now().UnixMilli()).Err(); err != nil {
		n.log.Debug("fleet: pruning expired bans", "err", err)
	}
}

func (n *Node) heartbeat(ctx context.Context) error {
	if err := n.rdb.HSet(ctx, n.keyNodes, n.cfg.Node, time.Now().UnixMilli()).Err(); err != nil {
		return fmt.Errorf("fleet: heartbeat: %w", err)
	}
	n.prune(ctx)
	all, err := n.rdb.HGetAll(ctx, n.keyNodes).Result()
	if err != nil {
		return fmt.Errorf("fleet: heartbeat: %w", err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for k, v := range all {
		if _, known := n.nodesSeen[k]; len(k) > MaxNodeBytes || !known && len(n.nodesSeen) >= maxNodesSeen {
			continue
		}
		if t, err := strconv.ParseInt(v, 10, 64); err == nil {
			if seen := time.UnixMilli(t); seen.After(n.nodesSeen[k]) {
				n.nodesSeen[k] = seen
			}
		}
	}
	return nil
}

// writer sends queued messages in batches.
func (n *Node) writer(ctx context.Context) error {
	n.mu.Lock()
	batch := n.pending
	n.pending = nil
	n.mu.Unlock()
	for {
		if len(batch) == 0 {
			select {
			case <-ctx.Done():
				return nil
			case m := <-n.queue:
				batch = append(batch, m)
			}
		}
	more:
		for len(batch) < sendBatch {
			select {
			case m := <-n.queue:
				batch = append(batch, m)
			default:
				break more
			}
		}
		if err := n.send(ctx, batch); err != nil {
			n.sendErr.Add(1)
			n.mu.Lock()
			n.pending = batch // sent first when Redis is back
			n.mu.Unlock()
			return err
		}
		batch = batch[:0]
	}
}

// send writes msgs to the stream, and bans and unbans to the live-ban
// set, in one pipeline.
func (n *Node) send(ctx context.Context, msgs []Message) error {
	pipe := n.rdb.Pipeline()
	for _, m := range msgs {
		m.Node = n.cfg.Node
		b, err := Encode(m)
		if err != nil {
			n.log.Error("fleet: not sending", "err", err)
			continue
		}
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: n.keyStream, MaxLen: n.cfg.MaxLen, Approx: true, Values: []any{"v", Version, "m", b}})
		switch m.Op {
		case OpBan:
			p := m.Prefix.String()
			pipe.ZAdd(ctx, n.keyBans, redis.Z{Score: float64(m.Until.UnixMilli()), Member: p})
			pipe.HSet(ctx, n.keyBan, p, b)
		case OpUnban:
			p := m.Prefix.String()
			pipe.ZRem(ctx, n.keyBans, p)
			pipe.HDel(ctx, n.keyBan, p)
		case OpUnbanAll:
			pipe.Del(ctx, n.keyBans, n.keyBan)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("fleet: sending %d messages: %w", len(msgs), err)
	}
	n.sent.Add(uint64(len(msgs)))
	return nil
}
