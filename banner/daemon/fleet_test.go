package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/control"
	"github.com/banner-mta/banner/internal/testenv"
)

const fleetChildEnv = "BANNER_TEST_FLEET_NODE"

// TestFleetChildNode is not a test: TestFleetOfThree runs it in a child
// process inside a node's network namespace: a daemon, and a listener on
// port 25 standing in for Postfix's smtpd, until SIGTERM.
func TestFleetChildNode(t *testing.T) {
	path := os.Getenv(fleetChildEnv)
	if path == "" {
		t.Skip("run by TestFleetOfThree")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	smtp, err := net.Listen("tcp", ":25")
	if err != nil {
		t.Fatal(err)
	}
	defer smtp.Close()
	go func() {
		for {
			c, err := smtp.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	logf, err := os.OpenFile(filepath.Join(filepath.Dir(path), "daemon.log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d, err := New(ctx, cfg, slog.New(slog.NewTextHandler(logf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Run(ctx); err != nil {
		t.Fatal(err)
	}
}

// fleetNode is one MX host of TestFleetOfThree: a network namespace (held
// by a sleeping process) joined to the test's namespace, where Redis runs,
// by a veth pair, and a banner daemon in it.
type fleetNode struct {
	name   string
	holder *exec.Cmd
	addr   netip.Addr // the node's address (port 25 listens there)
	dir    string
	log    string // the mail log the daemon follows
	sock   string
	config string
	child  *exec.Cmd
	out    *testenv.SyncBuffer
	lines  int
}

func runCmd(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v: %s", name, args, err, out)
	}
}

// newFleetNode makes namespace i (10.99.i.2, reaching Redis at 10.99.i.1)
// and writes the daemon's configuration; extra is added to its [ban].
func newFleetNode(t *testing.T, i int, name, redisURL, extraBan string) *fleetNode {
	t.Helper()
	holder := exec.Command("unshare", "-n", "sleep", "3600")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	pid := strconv.Itoa(holder.Process.Pid)
	self, _ := os.Readlink("/proc/self/ns/net")
	testenv.WaitFor(t, "namespace of "+name, func() bool {
		ns, err := os.Readlink("/proc/" + pid + "/ns/net")
		return err == nil && ns != self
	})
	here, there := fmt.Sprintf("flr%d", i), fmt.Sprintf("fln%d", i)
	runCmd(t, "ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", pid)
	runCmd(t, "ip", "addr", "add", fmt.Sprintf("10.99.%d.1/24", i), "dev", here)
	runCmd(t, "ip", "link", "set", here, "up")
	in := func(args ...string) { runCmd(t, "nsenter", append([]string{"-t", pid, "-n"}, args...)...) }
	in("ip", "link", "set", "lo", "up")
	in("ip", "addr", "add", fmt.Sprintf("10.99.%d.2/24", i), "dev", there)
	in("ip", "link", "set", there, "up")
	in("ip", "route", "add", "default", "via", fmt.Sprintf("10.99.%d.1", i))

	dir := t.TempDir()
	n := &fleetNode{name: name, holder: holder, addr: netip.MustParseAddr(fmt.Sprintf("10.99.%d.2", i)), dir: dir,
		log: filepath.Join(dir, "mail.log"), sock: filepath.Join(dir, "banner.sock"), config: filepath.Join(dir, "banner.toml")}
	if err := os.WriteFile(n.log, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	text := fmt.Sprintf(`[ban]
maxretry = 5
findtime = "1h"
allow_mynetworks = false
%s
[firewall]
backend = "ipset"
ports = [25]
[logwatch]
files = [%q]
poll_interval = "20ms"
[store]
path = %q
[control]
socket = %q
[metrics]
listen = ""
[policy]
listen = ["inet:127.0.0.1:10040"]
[dnsbl]
resolvers = ["127.0.0.1:53"]
[fleet]
enabled = true
redis = %q
node = %q
`, extraBan, n.log, filepath.Join(dir, "banner.db"), n.sock, redisURL, name)
	if err := os.WriteFile(n.config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(n.config); err != nil {
		t.Fatal(err)
	}
	return n
}

// start runs the node's daemon and waits until it answers and is
// connected to the fleet (unless Redis is down: wantConnected false).
func (n *fleetNode) start(t *testing.T, wantConnected bool) {
	t.Helper()
	n.out = &testenv.SyncBuffer{}
	cmd := exec.Command("nsenter", "-t", strconv.Itoa(n.holder.Process.Pid), "-n", "--",
		os.Args[0], "-test.run", "^TestFleetChildNode$", "-test.count", "1")
	cmd.Env = append(os.Environ(), fleetChildEnv+"="+n.config)
	cmd.Stdout, cmd.Stderr = n.out, n.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n.child = cmd
	t.Cleanup(func() { n.stop(t) })
	testenv.WaitFor(t, n.name+" up", func() bool {
		s, ok := n.status()
		return ok && (!wantConnected || s.Fleet != nil && s.Fleet.Connected)
	})
}

// stop ends the daemon with SIGTERM (it saves what it handled).
func (n *fleetNode) stop(t *testing.T) {
	if n.child == nil {
		return
	}
	n.child.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { n.child.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		n.child.Process.Kill()
		<-done
	}
	n.child = nil
	if t.Failed() {
		logs, _ := os.ReadFile(filepath.Join(n.dir, "daemon.log"))
		t.Logf("--- %s daemon output:\n%s\n%s", n.name, n.out.String(), logs)
	}
}

func (n *fleetNode) do(req control.Request) (control.Response, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return control.Do(ctx, n.sock, req)
}

func (n *fleetNode) status() (Status, bool) {
	resp, err := n.do(control.Request{Cmd: control.CmdStatus})
	if err != nil {
		return Status{}, false
	}
	var s Status
	return s, json.Unmarshal(resp.Status, &s) == nil
}

// ban returns the ban of prefix p this node's daemon lists, if any.
func (n *fleetNode) ban(p string) (control.BanInfo, bool) {
	resp, err := n.do(control.Request{Cmd: control.CmdList})
	if err != nil {
		return control.BanInfo{}, false
	}
	for _, b := range resp.Bans {
		if b.Prefix == p {
			return b, true
		}
	}
	return control.BanInfo{}, false
}

// unknownUsers appends count "User unknown" rejects of client to the
// node's mail log, each for another recipient.
func (n *fleetNode) unknownUsers(t *testing.T, client string, count int) {
	t.Helper()
	f, err := os.OpenFile(n.log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stamp := time.Now().Format(time.Stamp)
	for range count {
		n.lines++
		rcpt := fmt.Sprintf("guess%d-%s@example.test", n.lines, n.name)
		fmt.Fprintf(f, "%s %s postfix/smtpd[%d]: NOQUEUE: reject: RCPT from unknown[%s]: 550 5.1.1 <%s>: Recipient address rejected: User unknown in local recipient table; from=<x@example.org> to=<%s> proto=ESMTP helo=<spam>\n",
			stamp, n.name, 100+n.lines, client, rcpt, rcpt)
	}
}

// synPasses reports whether a TCP handshake from src (an address of the
// test's namespace) to the node's port 25 completes: false when the
// node's firewall drops the SYN.
func (n *fleetNode) synPasses(src netip.Addr) bool {
	d := net.Dialer{Timeout: 300 * time.Millisecond, LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
	c, err := d.Dial("tcp", netip.AddrPortFrom(n.addr, 25).String())
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// startRedis runs an empty redis-server (no persistence) on the Redis
// side of every veth pair.
func startRedis(t *testing.T, port int) (stop func()) {
	t.Helper()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "10.99.1.1 10.99.2.1 10.99.3.1 127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "no", "--daemonize", "no", "--logfile", "")
	out := &testenv.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop = func() { cmd.Process.Kill(); <-exited }
	t.Cleanup(stop)
	testenv.WaitFor(t, "redis-server", func() bool {
		select {
		case <-exited:
			t.Fatalf("redis-server exited: %s", out.String())
		default:
		}
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return stop
}

// TestFleetOfThree: three banner daemons, each in its own network
// namespace with its own ipset firewall, share one real redis-server over
// veth pairs, and real SYNs to port 25 show what each one's kernel drops.
func TestFleetOfThree(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three daemons and redis-server")
	}
	if testenv.RunInNetNS(t, "redis-server", "ipset", "iptables", "nsenter") {
		return
	}
	const port = 6390
	// The clients live here, in the Redis namespace, on lo.
	clients := map[string]netip.Addr{}
	for _, c := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5", "198.51.100.6", "203.0.113.5"} {
		runCmd(t, "ip", "addr", "add", c+"/32", "dev", "lo")
		clients[c] = netip.MustParseAddr(c)
	}
	a := newFleetNode(t, 1, "mxa", fmt.Sprintf("redis://10.99.1.1:%d/0", port), "")
	b := newFleetNode(t, 2, "mxb", fmt.Sprintf("redis://10.99.2.1:%d/0", port), "")
	c := newFleetNode(t, 3, "mxc", fmt.Sprintf("redis://10.99.3.1:%d/0", port), `allowlist = ["203.0.113.0/24"]`)
	nodes := []*fleetNode{a, b, c}
	stopRedis := startRedis(t, port) // binds the Redis side of the veth pairs
	for _, n := range nodes {
		n.start(t, true)
	}
	for _, n := range nodes {
		if !n.synPasses(clients["198.51.100.1"]) {
			t.Fatalf("%s: port 25 unreachable before any ban", n.name)
		}
	}
	// waitBanned waits until every node in ns lists p and returns how long
	// that took from since.
	waitBanned := func(p string, since time.Time, ns ...*fleetNode) time.Duration {
		t.Helper()
		for _, n := range ns {
			testenv.WaitFor(t, n.name+" bans "+p, func() bool { _, ok := n.ban(p); return ok })
		}
		return time.Since(since)
	}
	// mustDrop waits up to 1 s (the firewall follows the engine's table
	// by a store write) for each node in ns to drop client's SYNs, and
	// returns how long the slowest took.
	mustDrop := func(t *testing.T, client string, ns ...*fleetNode) time.Duration {
		t.Helper()
		start := time.Now()
		took := make([]time.Duration, len(ns))
		var wg sync.WaitGroup
		for i, n := range ns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					try := time.Now()
					if !n.synPasses(clients[client]) {
						took[i] = try.Sub(start) // the first SYN dropped was sent then
						return
					}
					if time.Since(start) > time.Second {
						took[i] = -1
						return
					}
					time.Sleep(time.Millisecond)
				}
			}()
		}
		wg.Wait()
		var slowest time.Duration
		for i, d := range took {
			if d < 0 {
				t.Errorf("%s: SYN from %s to port 25 still passes after 1s; want dropped", ns[i].name, client)
			}
			slowest = max(slowest, d)
		}
		return slowest
	}
	mustPass := func(t *testing.T, client string, ns ...*fleetNode) {
		t.Helper()
		start := time.Now()
		for _, n := range ns {
			for !n.synPasses(clients[client]) {
				if time.Since(start) > 2*time.Second {
					t.Errorf("%s: SYN from %s to port 25 still dropped after 2s; want passed", n.name, client)
					break
				}
			}
		}
	}

	top := t
	t.Run("ban on A from its log reaches B and C within 1s", func(t *testing.T) {
		a.unknownUsers(t, "198.51.100.1", 5)
		testenv.WaitFor(t, "A bans", func() bool { _, ok := a.ban("198.51.100.1/32"); return ok })
		banned := time.Now()
		took := mustDrop(t, "198.51.100.1", b, c)
		t.Logf("B and C drop SYNs from 198.51.100.1 %v after A listed its ban", took.Round(time.Millisecond))
		mustDrop(t, "198.51.100.1", a)
		waitBanned("198.51.100.1/32", banned, b, c)
		mustPass(t, "198.51.100.2", a, b, c)
	})

	t.Run("banner list names the node a ban came from", func(t *testing.T) {
		if _, err := a.do(control.Request{Cmd: control.CmdBan, Prefix: "198.51.100.2", For: "1h", Reason: "by hand on A"}); err != nil {
			t.Fatal(err)
		}
		waitBanned("198.51.100.2/32", time.Now(), b, c)
		for _, n := range []*fleetNode{b, c} {
			if bi, _ := n.ban("198.51.100.2/32"); bi.Node != "mxa" || bi.Source != "fleet" {
				t.Errorf("%s lists %+v, want node mxa, source fleet", n.name, bi)
			}
		}
		if bi, _ := a.ban("198.51.100.2/32"); bi.Node != "" {
			t.Errorf("A lists its own ban as from %q", bi.Node)
		}
		mustDrop(t, "198.51.100.2", a, b, c)
	})

	t.Run("an attack spread below each node's threshold is banned everywhere", func(t *testing.T) {
		a.unknownUsers(t, "198.51.100.3", 2)
		b.unknownUsers(t, "198.51.100.3", 2)
		c.unknownUsers(t, "198.51.100.3", 1)
		waitBanned("198.51.100.3/32", time.Now(), a, b, c)
		mustDrop(t, "198.51.100.3", a, b, c)
	})

	t.Run("unban on C lifts the ban on A and B", func(t *testing.T) {
		if _, err := c.do(control.Request{Cmd: control.CmdUnban, Prefix: "198.51.100.1"}); err != nil {
			t.Fatal(err)
		}
		for _, n := range nodes {
			testenv.WaitFor(t, n.name+" lifts 198.51.100.1", func() bool { _, ok := n.ban("198.51.100.1/32"); return !ok })
		}
		mustPass(t, "198.51.100.1", a, b, c)
	})

	t.Run("allowlisted on C: C refuses the fleet ban, A and B apply it", func(t *testing.T) {
		if _, err := a.do(control.Request{Cmd: control.CmdBan, Prefix: "203.0.113.5", For: "1h"}); err != nil {
			t.Fatal(err)
		}
		waitBanned("203.0.113.5/32", time.Now(), a, b)
		testenv.WaitFor(t, "C refuses", func() bool { s, _ := c.status(); return s.Engine.Fleet.Refused > 0 })
		if _, ok := c.ban("203.0.113.5/32"); ok {
			t.Error("C banned its allowlisted 203.0.113.5")
		}
		mustDrop(t, "203.0.113.5", a, b)
		mustPass(t, "203.0.113.5", c)
		if logs, _ := os.ReadFile(filepath.Join(c.dir, "daemon.log")); !strings.Contains(string(logs), "refusing fleet ban") {
			t.Error("C did not log the refused fleet ban")
		}
	})

	t.Run("Redis away: each bans alone; back empty: all converge to the union", func(t *testing.T) {
		stopRedis()
		for _, n := range nodes {
			testenv.WaitFor(t, n.name+" notices", func() bool { s, _ := n.status(); return s.Fleet != nil && !s.Fleet.Connected })
		}
		a.unknownUsers(t, "198.51.100.4", 5)
		if _, err := b.do(control.Request{Cmd: control.CmdBan, Prefix: "198.51.100.5", For: "1h"}); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, "A bans alone", func() bool { _, ok := a.ban("198.51.100.4/32"); return ok })
		mustDrop(t, "198.51.100.4", a)
		mustDrop(t, "198.51.100.5", b)
		mustPass(t, "198.51.100.4", b, c)
		mustPass(t, "198.51.100.5", a, c)

		startRedis(top, port) // empty: no persistence
		waitBanned("198.51.100.4/32", time.Now(), a, b, c)
		waitBanned("198.51.100.5/32", time.Now(), a, b, c)
		waitBanned("198.51.100.2/32", time.Now(), a, b, c) // from before the outage
		waitBanned("198.51.100.3/32", time.Now(), a, b, c)
		mustDrop(t, "198.51.100.4", a, b, c)
		mustDrop(t, "198.51.100.5", a, b, c)
		for _, n := range nodes {
			if s, _ := n.status(); !s.Fleet.Connected {
				t.Errorf("%s not connected again", n.name)
			}
		}
	})

	t.Run("a node stopped while others banned catches up on start", func(t *testing.T) {
		c.stop(t)
		stopped := time.Now()
		if _, err := a.do(control.Request{Cmd: control.CmdBan, Prefix: "198.51.100.6", For: "1h"}); err != nil {
			t.Fatal(err)
		}
		if _, err := b.do(control.Request{Cmd: control.CmdUnban, Prefix: "198.51.100.2"}); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, "A's ban reaches B", func() bool {
			_, ok := b.ban("198.51.100.6/32")
			if !ok && time.Since(stopped) > 5*time.Second {
				for _, n := range []*fleetNode{a, b} {
					s, _ := n.status()
					t.Fatalf("%s fleet %+v engine %+v", n.name, s.Fleet, s.Engine.Fleet)
				}
			}
			return ok
		})
		c.start(top, true)
		waitBanned("198.51.100.6/32", time.Now(), c)
		testenv.WaitFor(t, "C lifts 198.51.100.2", func() bool { _, ok := c.ban("198.51.100.2/32"); return !ok })
		mustDrop(t, "198.51.100.6", c)
		mustPass(t, "198.51.100.2", c)
		if s, _ := c.status(); s.Fleet.Replayed == 0 && s.Engine.Fleet.Replayed == 0 {
			t.Logf("C status: %+v", s.Fleet)
		}
	})
}
