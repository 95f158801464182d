package logwatch

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestWatcherMatchesAnalyze: following testdata/sample.log from the start
// gives the same matches and counters as Analyze, over two files at once.
func TestWatcherMatchesAnalyze(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "sample.log"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	for _, p := range []string{a, b} {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	cfg := testConfig(a)
	cfg.Files = []string{a, b}
	cfg.FromStart = true
	cfg.OwnRejectMarker = "blocked by banner"
	cfg.Now = func() time.Time { return now }
	var mu sync.Mutex
	var got []Match
	w, err := New(cfg, func(m Match) { mu.Lock(); got = append(got, m); mu.Unlock() })
	if err != nil {
		t.Fatal(err)
	}
	stop := runWatcher(t, w)
	waitFor(t, "both files", func() bool { return w.Stats().Lines == 4000 })
	stop()
	rep, err := Analyze(bytes.NewReader(data), w.Matcher(), nil)
	if err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	if uint64(len(got)) != 2*rep.Matched || st.OwnRejects != 2*rep.OwnRejects || st.BadTimestamps != 0 {
		t.Fatalf("watcher %d matches %+v, analyze %+v", len(got), st, rep)
	}
	for _, p := range rep.Patterns {
		if st.Matched[p.Name] != 2*p.Matches {
			t.Errorf("%s: watcher %d, analyze %d (x2)", p.Name, st.Matched[p.Name], p.Matches)
		}
	}
	if st.Bytes != uint64(2*len(data)) {
		t.Errorf("bytes %d", st.Bytes)
	}
	if err := w.Run(context.Background()); err == nil {
		t.Error("second Run accepted")
	}
}

type failingStore struct{}

func (failingStore) LogPosition(string) (Position, bool, error) {
	return Position{}, false, errors.New("disk on fire")
}
func (failingStore) SetLogPosition(string, Position) error { return errors.New("disk on fire") }

// TestPositionStoreErrors: a broken store is counted and logged, reading goes on.
func TestPositionStoreErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	appendFile(t, path, numLine(0))
	cfg := testConfig(path)
	cfg.FromStart = true
	cfg.Positions = failingStore{}
	c := newCollector()
	w := newWatcher(t, cfg, c)
	stop := runWatcher(t, w)
	waitFor(t, "line", func() bool { return c.count() == 1 })
	appendFile(t, path, numLine(1))
	waitFor(t, "line", func() bool { return c.count() == 2 })
	stop()
	if st := w.Stats(); st.PositionErrors < 2 || st.PositionSaves != 0 {
		t.Fatalf("stats %+v", st)
	}
}
