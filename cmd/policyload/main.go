// Command policyload is a load generator for Postfix policy servers: it
// keeps -conns persistent connections busy with policy requests, one at a
// time per connection as smtpd does, and prints throughput and latency.
//
// With -self it instead starts a policyd server whose handler answers
// DUNNO at once and a bare Go echo server (read until the blank line, write
// "action=DUNNO\n\n", nothing else), loads both the same way and prints the
// ratio, so the cost of policyd itself can be judged. The servers run in
// this process, or with -fork in a child process (policyload -serve), so
// client and servers do not share one Go scheduler.
//
// By default the load is closed-loop: each connection sends its next
// request as soon as the reply arrives, so the servers run flat out and the
// latency is mostly queueing. With -rate the load is open-loop: requests
// are due at a fixed total rate spread over the connections (still one
// outstanding request per connection, as smtpd sends them), and latency is
// measured from when a request was due, so a slow reply also counts against
// the requests that had to wait for it.
//
//	policyload -addr 127.0.0.1:10040 -conns 8 -duration 10s
//	policyload -self -conns 1,8,64 -duration 5s
//	policyload -self -fork -conns 64 -rate 5000,20000 -duration 5s
//	policyload -serve-floor -listen 127.0.0.1:10061
//
// -serve-floor runs only the bare echo, on -listen, as the floor a real
// policy server (a banner daemon) is measured against from another
// process: it frames requests as any policy server must (every line read
// to its "\n", the request ended by the blank line) and answers DUNNO,
// nothing else.
//
// Only loopback addresses and unix sockets are accepted as targets.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/banner-mta/banner/policyd"
)

// defaultRequest is a request captured from Postfix 3.7.
const defaultRequest = `request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
client_address=127.0.0.1
client_name=unknown
client_port=50002
reverse_client_name=unknown
server_address=127.0.0.1
server_port=25
helo_name=client.example.net
sender=normal@sender.example
recipient=carol@example.test
recipient_count=0
queue_id=BB59DBE20B
instance=6b29.6b05eb8e.b8ce6.0
size=0
etrn_domain=
stress=
sasl_method=
sasl_username=
sasl_sender=
ccert_subject=
ccert_issuer=
ccert_fingerprint=
ccert_pubkey_fingerprint=
encryption_protocol=
encryption_cipher=
encryption_keysize=0
policy_context=

`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	addr     string
	conns    []int
	duration time.Duration
	requests int
	warmup   time.Duration
	reqs     [][]byte
	self     bool
	fork     bool
	rounds   int
	cpuprof  string
	rates    []float64 // open-loop total requests/s; empty: closed loop
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("policyload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	var connsFlag, reqFile, rateFlag string
	var serve, serveFloor bool
	var listen string
	fs.StringVar(&o.addr, "addr", "127.0.0.1:10040", "target: host:port, inet:host:port or unix:/path (loopback only)")
	fs.StringVar(&connsFlag, "conns", "8", "persistent connections; a comma list runs once per value")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each run (ignored if -requests is set)")
	fs.IntVar(&o.requests, "requests", 0, "stop each run after this many requests in total")
	fs.DurationVar(&o.warmup, "warmup", 300*time.Millisecond, "load before measuring each run")
	fs.StringVar(&reqFile, "request-file", "", "requests to send in turn: wire form, or a capture file with '--- ' separator lines (default: a Postfix 3.7 RCPT request)")
	fs.BoolVar(&o.self, "self", false, "start policyd and a bare echo server in this process and compare them")
	fs.BoolVar(&o.fork, "fork", false, "with -self: run the two servers in a child process (policyload -serve)")
	fs.BoolVar(&serve, "serve", false, "only run the two -self servers on loopback, print their addresses and wait")
	fs.BoolVar(&serveFloor, "serve-floor", false, "only run the bare echo (the floor) on -listen, print its address and wait")
	fs.StringVar(&listen, "listen", "127.0.0.1:0", "with -serve-floor: the loopback address to listen on")
	fs.StringVar(&rateFlag, "rate", "", "open loop: total requests/s over all connections; a comma list runs once per value (default: closed loop, as fast as replies come)")
	fs.IntVar(&o.rounds, "rounds", 4, "with -self: alternate between the two servers this many times per -conns value")
	fs.StringVar(&o.cpuprof, "cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	for _, f := range strings.Split(connsFlag, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			fmt.Fprintf(stderr, "policyload: -conns %q: want positive integers\n", connsFlag)
			return 2
		}
		o.conns = append(o.conns, n)
	}
	if rateFlag != "" {
		for _, f := range strings.Split(rateFlag, ",") {
			r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
			if err != nil || !(r > 0 && r <= 1e7) {
				fmt.Fprintf(stderr, "policyload: -rate %q: want request rates between 1 and 10000000 per second\n", rateFlag)
				return 2
			}
			o.rates = append(o.rates, r)
		}
	}
	o.reqs = [][]byte{[]byte(defaultRequest)}
	if reqFile != "" {
		data, err := os.ReadFile(reqFile)
		if err != nil {
			fmt.Fprintf(stderr, "policyload: %v\n", err)
			return 1
		}
		if o.reqs = splitRequests(data); len(o.reqs) == 0 {
			fmt.Fprintf(stderr, "policyload: no requests in %s\n", reqFile)
			return 1
		}
	}
	if o.cpuprof != "" {
		f, err := os.Create(o.cpuprof)
		if err != nil {
			fmt.Fprintf(stderr, "policyload: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "policyload: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	var err error
	switch {
	case serve:
		err = runServe(ctx, stdout)
	case serveFloor:
		err = runServeFloor(ctx, listen, stdout)
	case o.self:
		err = runSelf(ctx, o, stdout)
	default:
		err = runTarget(ctx, o, stdout)
	}
	if err != nil {
		fmt.Fprintf(stderr, "policyload: %v\n", err)
		return 1
	}
	return 0
}

// splitRequests accepts one request in wire form, several separated by
// blank lines, or a capture file whose requests follow "--- " lines.
func splitRequests(data []byte) [][]byte {
	var out [][]byte
	var cur bytes.Buffer
	flush := func() {
		if cur.Len() > 0 {
			out = append(out, append(bytes.Clone(cur.Bytes()), '\n'))
			cur.Reset()
		}
	}
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		t := bytes.TrimRight(line, "\r\n")
		switch {
		case bytes.HasPrefix(t, []byte("--- ")), len(t) == 0:
			flush()
		default:
			cur.Write(t)
			cur.WriteByte('\n')
		}
	}
	flush()
	return out
}

// target parses -addr and refuses anything but loopback and unix sockets.
func target(addr string) (network, address string, err error) {
	if p, ok := strings.CutPrefix(addr, "unix:"); ok {
		return "unix", p, nil
	}
	hp := strings.TrimPrefix(addr, "inet:")
	ap, err := netip.ParseAddrPort(hp)
	if err != nil {
		return "", "", fmt.Errorf("-addr %q: want an IP:port: %w", addr, err)
	}
	if !ap.Addr().Unmap().IsLoopback() {
		return "", "", fmt.Errorf("-addr %q: only loopback targets are allowed", addr)
	}
	return "tcp", ap.String(), nil
}

// loadRates returns the -rate values, or a single 0 (closed loop).
func (o options) loadRates() []float64 {
	if len(o.rates) == 0 {
		return []float64{0}
	}
	return o.rates
}

// rateLabel prints an open-loop rate, or "max" for closed loop.
func rateLabel(r float64) string {
	if r == 0 {
		return "max"
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

func runTarget(ctx context.Context, o options, w io.Writer) error {
	network, addr, err := target(o.addr)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conns\trate\trequests\treq/s\tp50\tp90\tp99\tmax\terrors\t")
	for _, n := range o.conns {
		for _, rate := range o.loadRates() {
			r, err := load(ctx, network, addr, n, rate, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%.0f\t%v\t%v\t%v\t%v\t%d\t\n", n, rateLabel(rate), len(r.lats), r.rate(),
				r.pct(50), r.pct(90), r.pct(99), r.pct(100), r.errors)
		}
	}
	return tw.Flush()
}

// maxServerConns is the connection limit of the -self and -serve servers.
const maxServerConns = 4096

// startServers starts the DUNNO policyd server and the bare echo on
// loopback ports; they stop with ctx.
func startServers(ctx context.Context) (policydAddr, bareAddr string, srv *policyd.Server, err error) {
	cfg := policyd.DefaultConfig()
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.MaxConns = maxServerConns
	srv, err = policyd.New(cfg, policyd.HandlerFunc(func(context.Context, *policyd.Request) string { return "DUNNO" }))
	if err != nil {
		return "", "", nil, err
	}
	if err := srv.Listen("127.0.0.1:0"); err != nil {
		return "", "", nil, err
	}
	go srv.Serve(ctx)
	bareAddr, err = startBareEcho(ctx)
	if err != nil {
		return "", "", nil, err
	}
	return srv.Addrs()[0].String(), bareAddr, srv, nil
}

// runServe is -serve: the servers of -self, their addresses on stdout,
// until ctx ends (SIGINT, SIGTERM).
func runServe(ctx context.Context, w io.Writer) error {
	pAddr, bAddr, _, err := startServers(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "policyd=%s bare=%s\n", pAddr, bAddr)
	<-ctx.Done()
	return nil
}

// runServeFloor is -serve-floor: the bare echo alone on addr, its address
// on stdout, until ctx ends.
func runServeFloor(ctx context.Context, addr string, w io.Writer) error {
	if _, _, err := target(addr); err != nil {
		return fmt.Errorf("-listen: %w", err)
	}
	a, err := startBareEchoOn(ctx, addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "bare=%s\n", a)
	<-ctx.Done()
	return nil
}

// forkServers starts "policyload -serve" as a child process and returns
// the addresses it prints. The child is killed when ctx ends or this
// process dies.
func forkServers(ctx context.Context) (policydAddr, bareAddr string, err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", "", fmt.Errorf("-fork: %w", err)
	}
	cmd := exec.CommandContext(ctx, exe, "-serve")
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", "", fmt.Errorf("-fork: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return "", "", fmt.Errorf("-fork: %w", err)
	}
	go func() { <-ctx.Done(); cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return "", "", fmt.Errorf("-fork: reading the child's addresses: %w", err)
	}
	return parseServeLine(line)
}

// parseServeLine parses "policyd=ADDR bare=ADDR\n" as -serve prints it.
func parseServeLine(line string) (policydAddr, bareAddr string, err error) {
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		if _, _, err := target(v); err != nil {
			return "", "", fmt.Errorf("-fork: child printed %q: %w", line, err)
		}
		switch k {
		case "policyd":
			policydAddr = v
		case "bare":
			bareAddr = v
		}
	}
	if policydAddr == "" || bareAddr == "" {
		return "", "", fmt.Errorf("-fork: child printed %q, want policyd=ADDR bare=ADDR", line)
	}
	return policydAddr, bareAddr, nil
}

func runSelf(ctx context.Context, o options, w io.Writer) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if n := slices.Max(o.conns); n > maxServerConns-10 {
		return fmt.Errorf("-conns %d: at most %d with -self", n, maxServerConns-10)
	}
	var pAddr, bare string
	var srv *policyd.Server
	var err error
	if o.fork {
		pAddr, bare, err = forkServers(sctx)
	} else {
		pAddr, bare, srv, err = startServers(sctx)
	}
	if err != nil {
		return err
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "conns\trate\tpolicyd req/s\tp50\tp90\tp99\tmax\tbare req/s\tbare p50\tbare p99\tratio\t")
	for _, n := range o.conns {
		for _, rate := range o.loadRates() {
			// Alternate short slices so drift in the shared machine's load
			// hits both servers alike.
			rounds := max(o.rounds, 1)
			half := o
			half.duration /= time.Duration(rounds)
			half.requests /= rounds
			var p, b result
			for range rounds {
				rp, err := load(ctx, "tcp", pAddr, n, rate, half)
				if err != nil {
					return fmt.Errorf("policyd: %w", err)
				}
				rb, err := load(ctx, "tcp", bare, n, rate, half)
				if err != nil {
					return fmt.Errorf("bare echo: %w", err)
				}
				p.merge(rp)
				b.merge(rb)
			}
			fmt.Fprintf(tw, "%d\t%s\t%.0f\t%v\t%v\t%v\t%v\t%.0f\t%v\t%v\t%.2f\t\n", n, rateLabel(rate), p.rate(),
				p.pct(50), p.pct(90), p.pct(99), p.pct(100), b.rate(), b.pct(50), b.pct(99), p.rate()/b.rate())
		}
	}
	if srv != nil {
		if st := srv.Stats(); st.Timeouts > 0 || st.Requests == 0 {
			fmt.Fprintf(tw, "policyd stats: %+v\n", st)
		}
	}
	return tw.Flush()
}

// startBareEcho runs the baseline server: no limits, no deadlines, no
// handler goroutine; read until a blank line, write the reply.
func startBareEcho(ctx context.Context) (string, error) {
	return startBareEchoOn(ctx, "127.0.0.1:0")
}

// startBareEchoOn is startBareEcho on a given address.
func startBareEchoOn(ctx context.Context, addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	context.AfterFunc(ctx, func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				reply := []byte("action=DUNNO\n\n")
				for {
					line, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(line) == 1 {
						if _, err := c.Write(reply); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), nil
}

type result struct {
	lats    []time.Duration
	elapsed time.Duration
	errors  int
}

func (r *result) merge(o result) {
	r.lats = append(r.lats, o.lats...)
	r.elapsed += o.elapsed
	r.errors += o.errors
	slices.Sort(r.lats)
}

func (r result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(len(r.lats)) / r.elapsed.Seconds()
}

// pct returns the p-th percentile latency (p=100: the maximum), rounded to
// a microsecond; lats must be sorted.
func (r result) pct(p float64) time.Duration {
	if len(r.lats) == 0 {
		return 0
	}
	i := int(float64(len(r.lats))*p/100+0.5) - 1
	i = min(max(i, 0), len(r.lats)-1)
	return r.lats[i].Round(time.Microsecond)
}

// load runs conns workers against addr, each doing strictly sequential
// request/reply round trips, first for o.warmup unmeasured, then for
// o.duration or until o.requests replies arrived in total. With rate > 0
// each worker's requests are due every conns/rate seconds (the workers
// staggered evenly); a request held up by a late reply is timed from when
// it was due, one sent on time from when it was sent. Otherwise each
// request goes out as soon as the previous reply is in.
func load(ctx context.Context, network, addr string, conns int, rate float64, o options) (result, error) {
	cs := make([]net.Conn, conns)
	for i := range cs {
		c, err := net.Dial(network, addr)
		if err != nil {
			for _, c := range cs[:i] {
				c.Close()
			}
			return result{}, err
		}
		cs[i] = c
	}
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()

	var measuring atomic.Bool
	var stop atomic.Bool
	stopped := make(chan struct{}) // closed with stop, to cut sleeps short
	halt := func() {
		if stop.CompareAndSwap(false, true) {
			close(stopped)
		}
	}
	var done atomic.Int64
	per := make([]result, conns)
	start := make(chan struct{})
	var interval time.Duration // between one worker's requests, open loop
	if rate > 0 {
		interval = time.Duration(float64(conns) / rate * float64(time.Second))
	}
	epoch := time.Now().Add(10 * time.Millisecond)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			br := bufio.NewReader(c)
			lats := make([]time.Duration, 0, 4096)
			k := i
			due := epoch.Add(interval * time.Duration(i) / time.Duration(conns))
			timer := time.NewTimer(time.Hour)
			timer.Stop()
			defer timer.Stop()
			<-start
			for !stop.Load() {
				req := o.reqs[k%len(o.reqs)]
				k++
				t0 := time.Now()
				if interval > 0 {
					if wait := due.Sub(t0); wait > 0 {
						// On time: the clock starts when the request
						// goes out, so a late wake-up of this sleep
						// (the client's own jitter) is not counted.
						timer.Reset(wait)
						select {
						case <-timer.C:
						case <-stopped:
						}
						if stop.Load() {
							continue // the loop ends
						}
						t0 = time.Now()
					} else {
						// Held up by the previous reply: the clock
						// started when this request was due.
						t0 = due
					}
					due = due.Add(interval)
				}
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(req); err != nil {
					per[i].errors++
					return
				}
				if err := readReply(br); err != nil {
					per[i].errors++
					return
				}
				// A reply after the run's end is not counted: elapsed
				// stopped there.
				if measuring.Load() && !stop.Load() {
					lats = append(lats, time.Since(t0))
					if o.requests > 0 && done.Add(1) >= int64(o.requests) {
						halt()
					}
				}
			}
			per[i].lats = lats
		}()
	}
	close(start)
	sleep(ctx, o.warmup)
	measuring.Store(true)
	t0 := time.Now()
	if o.requests <= 0 {
		sleep(ctx, o.duration)
		halt()
	} else {
		for !stop.Load() && ctx.Err() == nil {
			sleep(ctx, 10*time.Millisecond)
		}
		halt()
	}
	elapsed := time.Since(t0)
	wg.Wait()
	var r result
	for _, p := range per {
		r.lats = append(r.lats, p.lats...)
		r.errors += p.errors
	}
	r.elapsed = elapsed
	slices.Sort(r.lats)
	if ctx.Err() != nil {
		return r, ctx.Err()
	}
	if len(r.lats) == 0 {
		return r, errors.New("no replies")
	}
	return r, nil
}

// readReply reads "action=...\n" and the blank line after it.
func readReply(br *bufio.Reader) error {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(line, []byte("action=")) {
		return fmt.Errorf("unexpected reply line %q", line)
	}
	blank, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if len(blank) != 1 {
		return fmt.Errorf("reply not ended by a blank line: %q", blank)
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
