package daemon

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/config"
)

// writeBacklog writes lines "too many errors" lines, perClient for each
// client, interleaved, stamped now, and returns the number of clients.
func writeBacklog(t *testing.T, path string, clients, perClient int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	stamp := time.Now().Format(time.Stamp)
	for round := range perClient {
		for c := range clients {
			fmt.Fprintf(w, "%s mx postfix/smtpd[%d]: too many errors after RCPT from unknown[10.%d.%d.%d]\n",
				stamp, 1000+round, c>>16&255, c>>8&255, c&255)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// startBacklogDaemon runs a daemon over log (from its start) and returns it
// with a stop function that waits for Run to return.
func startBacklogDaemon(t *testing.T, dir, log string) (*Daemon, func()) {
	t.Helper()
	cfg := testConfig(t, dir)
	cfg.LogWatch.Files = []string{log}
	cfg.LogWatch.FromStart = true
	cfg.Ban.FindTime = config.Duration(time.Hour) // the lines are stamped at the start of the test
	d, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	return d, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// TestBacklogNothingLost: a backlog far larger than the engine's queue
// (100,000 "too many errors" lines from 20,000 clients, 5 each: the
// default maxretry) is read from the start; the log source waits for the
// engine instead of dropping, so every client is banned. It once gave 4,858
// bans and 75,650 events dropped as "queue full".
func TestBacklogNothingLost(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 100,000 lines")
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	const clients, per = 20000, 5
	writeBacklog(t, log, clients, per)
	t0 := time.Now()
	d, stop := startBacklogDaemon(t, dir, log)
	defer stop()
	deadline := time.Now().Add(2 * time.Minute)
	for d.engine.Stats().Bans < clients {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(t0)
	s := d.engine.Stats()
	if s.Bans != clients || s.DroppedQueueFull != 0 {
		t.Fatalf("%d bans (want %d), %d events dropped as queue full (want 0)", s.Bans, clients, s.DroppedQueueFull)
	}
	t.Logf("%d lines, %d bans in %v: %.0f lines/s; the source waited for the engine %d times",
		clients*per, s.Bans, took.Round(time.Millisecond), float64(clients*per)/took.Seconds(), s.BackPressure)
}

// TestStopMidBacklogNothingLostNothingTwice: a stop in the middle of a
// backlog, then a start: every line's event is handled exactly once over
// the two runs (the position saved at the stop covers exactly the events
// the engine handled), and the first run's bans are kept. Once a stop lost
// up to a queue's worth of events while saving the position past them.
func TestStopMidBacklogNothingLostNothingTwice(t *testing.T) {
	if testing.Short() {
		t.Skip("reads 100,000 lines")
	}
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	const clients, per = 20000, 5
	writeBacklog(t, log, clients, per)
	var events, firstBans uint64
	for run := 0; ; run++ {
		d, stop := startBacklogDaemon(t, dir, log)
		if run == 0 {
			for d.engine.Stats().Bans == 0 { // reading and banning is under way
				time.Sleep(time.Millisecond)
			}
			stop()
			n := d.engine.Stats().Events["too_many_errors"]
			firstBans = d.engine.Stats().Bans
			events += n
			t.Logf("first run stopped after %d of %d events", n, clients*per)
			if n >= clients*per {
				t.Log("the whole backlog was read before the stop: the test proves less")
			}
			continue
		}
		want := uint64(clients*per) - events
		deadline := time.Now().Add(2 * time.Minute)
		for d.engine.Stats().Events["too_many_errors"] < want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(300 * time.Millisecond) // more than a repeat would take to show
		s := d.engine.Stats()
		stop()
		events += s.Events["too_many_errors"]
		if events != clients*per {
			t.Errorf("%d events handled over both runs, want %d (one per line)", events, clients*per)
		}
		// Scores live in memory: a client with some of its five lines read
		// before the stop and the rest after is not banned. Every ban of
		// the first run is still in force.
		if n := uint64(len(d.engine.List())); n < firstBans {
			t.Errorf("%d bans after the restart, fewer than the %d of the first run", n, firstBans)
		}
		return
	}
}
