package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/internal/testenv"
)

// recorder is a Sink that keeps what it was handed.
type recorder struct {
	mu     sync.Mutex
	msgs   []Message
	cur    Cursor
	active []banner.Ban
}

func (r *recorder) Apply(_ context.Context, msgs []Message, cur Cursor) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, msgs...)
	r.cur = cur
	return nil
}

func (r *recorder) Active() []banner.Ban {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]banner.Ban(nil), r.active...)
}

func (r *recorder) got() ([]Message, Cursor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.msgs...), r.cur
}

// waitFor polls cond for up to 20 s (generous: the whole suite runs in
// parallel on two cores).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startNode runs a node against mr until the test ends.
func startNode(t *testing.T, mr *miniredis.Miniredis, name string, cur Cursor, sink *recorder) *Node {
	t.Helper()
	n, err := New(Config{URL: "redis://" + mr.Addr() + "/0", Node: name, PollTimeout: 50 * time.Millisecond, QueueSize: 4, Logger: testLogger(name)}, cur)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { n.Run(ctx, sink); close(done) }()
	t.Cleanup(func() { cancel(); <-done; n.Close() })
	return n
}

func ban(p string, d time.Duration) banner.Ban {
	now := time.Now()
	return banner.Ban{Prefix: netip.MustParsePrefix(p), Since: now, Until: now.Add(d), Count: 1, Reason: "test"}
}

func TestNodesShareBans(t *testing.T) {
	mr := miniredis.RunT(t)
	ra, rb := &recorder{}, &recorder{}
	a := startNode(t, mr, "mx1", Cursor{}, ra)
	startNode(t, mr, "mx2", Cursor{}, rb)
	waitFor(t, "both connected", func() bool { return a.Stats().Connected })

	a.Publish(BanMessage(ban("203.0.113.9/32", time.Hour), ""))
	a.Publish(Message{Op: OpUnban, Prefix: netip.MustParsePrefix("198.51.100.0/24")})
	waitFor(t, "mx2 hears both", func() bool { m, _ := rb.got(); return len(m) == 2 })
	m, cur := rb.got()
	if m[0].Op != OpBan || m[0].Node != "mx1" || m[0].Prefix != netip.MustParsePrefix("203.0.113.9/32") || m[1].Op != OpUnban {
		t.Errorf("mx2 got %+v", m)
	}
	if cur.ID == "" || cur.Epoch == 0 {
		t.Errorf("cursor %+v", cur)
	}
	// mx1 does not hear itself.
	if m, _ := ra.got(); len(m) != 0 {
		t.Errorf("mx1 heard its own messages: %+v", m)
	}
	// The live-ban set holds the ban; the unban of another prefix left it.
	if got, _ := mr.ZMembers("banner:bans"); len(got) != 1 || got[0] != "203.0.113.9/32" {
		t.Errorf("live bans %v", got)
	}
}

// TestNewNodeTakesSnapshot: a node joining later gets the live bans from
// the sorted set, not the whole stream, and then what follows.
func TestNewNodeTakesSnapshot(t *testing.T) {
	mr := miniredis.RunT(t)
	ra := &recorder{}
	a := startNode(t, mr, "mx1", Cursor{}, ra)
	waitFor(t, "connected", func() bool { return a.Stats().Connected })
	a.Publish(BanMessage(ban("203.0.113.1/32", time.Hour), ""))
	a.Publish(BanMessage(ban("203.0.113.2/32", time.Hour), ""))
	a.Publish(Message{Op: OpUnban, Prefix: netip.MustParsePrefix("203.0.113.2/32")})
	waitFor(t, "sent", func() bool { return a.Stats().Sent == 3 })

	rc := &recorder{}
	c := startNode(t, mr, "mx3", Cursor{}, rc)
	waitFor(t, "snapshot", func() bool { m, _ := rc.got(); return len(m) == 1 })
	m, _ := rc.got()
	if m[0].Prefix != netip.MustParsePrefix("203.0.113.1/32") || !m[0].Replay {
		t.Errorf("snapshot gave %+v", m)
	}
	a.Publish(BanMessage(ban("203.0.113.3/32", time.Hour), ""))
	waitFor(t, "live after snapshot", func() bool { m, _ := rc.got(); return len(m) == 2 })
	if s := c.Stats(); s.Snapshots != 1 || s.Replayed != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestResumeFromCursor: a node restarted with its saved cursor replays
// what it missed, and nothing before.
func TestResumeFromCursor(t *testing.T) {
	mr := miniredis.RunT(t)
	ra, rb := &recorder{}, &recorder{}
	a := startNode(t, mr, "mx1", Cursor{}, ra)
	waitFor(t, "connected", func() bool { return a.Stats().Connected })
	a.Publish(BanMessage(ban("203.0.113.1/32", time.Hour), ""))
	b, err := New(Config{URL: "redis://" + mr.Addr() + "/0", Node: "mx2", PollTimeout: 50 * time.Millisecond}, Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx, rb); close(done) }()
	waitFor(t, "first ban", func() bool { m, _ := rb.got(); return len(m) == 1 })
	cancel()
	<-done
	b.Close()
	_, saved := rb.got()

	a.Publish(BanMessage(ban("203.0.113.2/32", time.Hour), ""))
	a.Publish(Message{Op: OpUnban, Prefix: netip.MustParsePrefix("203.0.113.1/32")})
	waitFor(t, "sent", func() bool { return a.Stats().Sent == 3 })

	rb2 := &recorder{}
	startNode(t, mr, "mx2", saved, rb2)
	waitFor(t, "replay", func() bool { m, _ := rb2.got(); return len(m) == 2 })
	m, _ := rb2.got()
	if m[0].Op != OpBan || m[0].Prefix != netip.MustParsePrefix("203.0.113.2/32") || m[1].Op != OpUnban {
		t.Errorf("replay gave %+v", m)
	}
}

// TestRedisLostData: Redis restarted empty (FLUSHALL here); every node
// republishes its live bans, and each hears the others'.
func TestRedisLostData(t *testing.T) {
	mr := miniredis.RunT(t)
	ra, rb := &recorder{active: []banner.Ban{ban("192.0.2.1/32", time.Hour)}}, &recorder{active: []banner.Ban{ban("192.0.2.2/32", time.Hour)}}
	a := startNode(t, mr, "mx1", Cursor{}, ra)
	b := startNode(t, mr, "mx2", Cursor{}, rb)
	waitFor(t, "connected", func() bool { return a.Stats().Connected && b.Stats().Connected })
	time.Sleep(200 * time.Millisecond)
	mr.FlushAll()
	waitFor(t, "each hears the other's ban", func() bool {
		ma, _ := ra.got()
		mb, _ := rb.got()
		return hasBan(ma, "192.0.2.2/32") && hasBan(mb, "192.0.2.1/32")
	})
}

func hasBan(ms []Message, p string) bool {
	for _, m := range ms {
		if m.Op == OpBan && m.Prefix.String() == p {
			return true
		}
	}
	return false
}

// TestQueueDropsWhenFull: Publish never blocks; with Redis away the queue
// fills and the rest is counted.
func TestQueueDropsWhenFull(t *testing.T) {
	n, err := New(Config{URL: "redis://127.0.0.1:1/0", Node: "mx1", QueueSize: 4}, Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	for range 10 {
		n.Publish(Message{Op: OpUnbanAll})
	}
	if s := n.Stats(); s.Queued != 4 || s.Dropped != 6 {
		t.Errorf("queued %d dropped %d, want 4 and 6", s.Queued, s.Dropped)
	}
}

// TestMalformedEntriesCounted: junk in the stream is counted and skipped.
func TestMalformedEntriesCounted(t *testing.T) {
	mr := miniredis.RunT(t)
	rb := &recorder{}
	b := startNode(t, mr, "mx2", Cursor{}, rb)
	waitFor(t, "connected", func() bool { return b.Stats().Connected })
	mr.XAdd("banner:stream", "*", []string{"v", "1", "m", "{not json"})
	mr.XAdd("banner:stream", "*", []string{"v", "1"})
	mr.XAdd("banner:stream", "*", []string{"v", "1", "m", `{"v":1,"op":"unban","n":"mx1","p":"192.0.2.0/24"}`})
	waitFor(t, "good one", func() bool { m, _ := rb.got(); return len(m) == 1 })
	if s := b.Stats(); s.Malformed != 2 {
		t.Errorf("malformed %d, want 2", s.Malformed)
	}
}

func TestCursorPosition(t *testing.T) {
	for _, c := range []Cursor{{}, {Epoch: 42, ID: "0-0"}, {Epoch: 1 << 61, ID: "1760000000123-7"}} {
		got := CursorFromPosition(c.Position())
		if got != c {
			t.Errorf("%+v -> %+v", c, got)
		}
	}
}

// TestPruneExpired: expired bans leave the live-ban set and its hash;
// live ones stay.
func TestPruneExpired(t *testing.T) {
	mr := miniredis.RunT(t)
	ra := &recorder{}
	a := startNode(t, mr, "mx1", Cursor{}, ra)
	waitFor(t, "connected", func() bool { return a.Stats().Connected })
	old := ban("192.0.2.1/32", time.Hour)
	old.Since, old.Until = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
	a.Publish(BanMessage(old, ""))
	a.Publish(BanMessage(ban("192.0.2.2/32", time.Hour), ""))
	waitFor(t, "sent", func() bool { return a.Stats().Sent == 2 })
	a.prune(context.Background())
	if got, _ := mr.ZMembers("banner:bans"); len(got) != 1 || got[0] != "192.0.2.2/32" {
		t.Errorf("live bans %v", got)
	}
	if got, _ := mr.HKeys("banner:ban"); len(got) != 1 || got[0] != "192.0.2.2/32" {
		t.Errorf("ban messages %v", got)
	}
}

func testLogger(name string) *slog.Logger {
	if os.Getenv("FLEET_DEBUG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("node", name)
}

// TestGapSnapshotLiftsMissedUnbans: a node away longer than the stream's
// retention missed an unban with the trimmed entries; the snapshot lifts
// the bans it holds from other nodes that the live-ban set no longer has,
// and keeps those still live and its own.
// It runs on miniredis and, where it is installed, on the real
// redis-server, whose XINFO STREAM tells the gap exactly.
func TestGapSnapshotLiftsMissedUnbans(t *testing.T) {
	t.Run("miniredis", func(t *testing.T) { testGapSnapshot(t, miniredis.RunT(t).Addr()) })
	t.Run("redis-server", func(t *testing.T) {
		_, err := exec.LookPath("redis-server")
		testenv.Require(t, err == nil, "redis-server not installed (apt-get install redis-server)")
		addr := testenv.FreeAddr(t)
		_, port, _ := net.SplitHostPort(addr)
		srv := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--logfile", "")
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		testenv.WaitFor(t, "redis-server", func() bool { return c.Ping(context.Background()).Err() == nil })
		testGapSnapshot(t, addr)
	})
}

func testGapSnapshot(t *testing.T, addr string) {
	cfg := func(name string) Config {
		return Config{URL: "redis://" + addr + "/0", Node: name, PollTimeout: 50 * time.Millisecond, MaxLen: 2, Logger: testLogger(name)}
	}
	b, err := New(cfg("mx2"), Cursor{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go b.Run(ctx, &recorder{})
	defer b.Close()
	waitFor(t, "connected", func() bool { return b.Stats().Connected })
	b.Publish(BanMessage(ban("203.0.113.1/32", time.Hour), ""))
	b.Publish(BanMessage(ban("203.0.113.2/32", time.Hour), ""))
	b.Publish(Message{Op: OpUnban, Prefix: netip.MustParsePrefix("203.0.113.1/32")})
	for i := 3; i <= 8; i++ {
		b.Publish(BanMessage(ban(fmt.Sprintf("203.0.113.%d/32", i), time.Hour), ""))
	}
	waitFor(t, "sent", func() bool { return b.Stats().Sent == 9 })
	// what MAXLEN ~ does in time to what mx1 did not read
	if err := b.rdb.XTrimMaxLen(ctx, "banner:stream", 2).Err(); err != nil {
		t.Fatal(err)
	}

	fromB := func(p string) banner.Ban {
		x := ban(p, time.Hour)
		x.Source, x.Node = banner.SourceFleet, "mx2"
		return x
	}
	own := ban("192.0.2.7/32", time.Hour)
	own.Source = banner.SourcePolicy
	ra := &recorder{active: []banner.Ban{fromB("203.0.113.1/32"), fromB("203.0.113.2/32"), own}}
	a, err := New(cfg("mx1"), Cursor{Epoch: b.Stats().Epoch, ID: "1-0"})
	if err != nil {
		t.Fatal(err)
	}
	go a.Run(ctx, ra)
	defer a.Close()
	waitFor(t, "snapshot", func() bool { return a.Stats().Snapshots == 1 })
	waitFor(t, "applied", func() bool { m, _ := ra.got(); return len(m) >= 8 })
	m, _ := ra.got()
	var unbans []string
	for _, x := range m {
		if x.Op == OpUnban {
			unbans = append(unbans, x.Prefix.String())
			if x.Reason != SnapshotUnbanReason || !x.Replay {
				t.Errorf("unban %+v", x)
			}
		}
	}
	if len(unbans) != 1 || unbans[0] != "203.0.113.1/32" {
		t.Errorf("unbans %v, want only 203.0.113.1/32 (unbanned on mx2 while mx1 was away)", unbans)
	}
	if !hasBan(m, "203.0.113.2/32") || !hasBan(m, "203.0.113.8/32") {
		t.Errorf("snapshot lacks live bans: %+v", m)
	}
}
