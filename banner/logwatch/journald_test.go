package logwatch

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/journaltest"
	"github.com/banner-mta/banner/internal/testenv"
)

// TestJournaldCursorSurvival runs a real systemd-journald in a private
// mount namespace and reads it as banner does (journalctl without
// --directory): the cursor survives a stop and start of the reader,
// journalctl --rotate while reading and while stopped, and a journald
// restart, with every entry read exactly once; after --vacuum-files
// deletes the file the cursor points into, reading resumes at the oldest
// entry left, says so once, and repeats nothing.
func TestJournaldCursorSurvival(t *testing.T) {
	if testenv.RunInNetNS(t, "journalctl") {
		return
	}
	jd := journaltest.StartJournald(t)
	pos := &memPositions{}
	c := newCollector()
	write := func(from, to int) {
		for i := from; i < to; i++ {
			l := numLine(i)
			jd.Postfix("postfix/smtpd", strings.TrimSuffix(l[strings.Index(l, "NOQUEUE"):], "\n"))
		}
	}
	// waitSeen waits until every entry in [from, to) was read.
	waitSeen := func(what string, from, to int) {
		t.Helper()
		waitFor(t, what, func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			for i := from; i < to; i++ {
				if c.seen[i] == 0 {
					return false
				}
			}
			return true
		})
	}
	var logs testenv.SyncBuffer
	start := func() (*Watcher, func()) {
		cfg := testConfig("")
		cfg.Files = nil
		cfg.Journal = true
		cfg.Positions = pos
		cfg.SaveInterval = 20 * time.Millisecond
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
		w, err := New(cfg, c.emit)
		if err != nil {
			t.Fatal(err)
		}
		stop := runWatcher(t, w)
		waitFor(t, "journalctl running", func() bool { st := w.Stats().Journal; return st != nil && st.Running })
		time.Sleep(300 * time.Millisecond) // journalctl at the tail
		return w, stop
	}
	_, stop := start()
	write(0, 100)
	waitSeen("the first entries", 0, 100)
	jd.Ctl("--rotate")
	write(100, 200)
	waitSeen("entries after a rotation while reading", 100, 200)
	stop()

	write(200, 250)
	jd.Ctl("--rotate")
	write(250, 300)
	jd.Stop()
	jd.Start()
	write(300, 400)
	w, stop := start()
	waitSeen("entries written while stopped, across a rotation and a journald restart", 200, 400)
	stop()
	c.exactlyOnce(t, 400)
	if st := w.Stats().Journal; st.CursorLost != 0 {
		t.Fatalf("cursor lost: %+v", st)
	}

	// Vacuum: the file holding the cursor goes.
	write(400, 500)
	jd.Ctl("--rotate")
	write(500, 600)
	jd.Ctl("--rotate")
	t.Log(jd.Ctl("--vacuum-files=2")) // the active file and the newest archived one stay
	files := jd.Ctl("--header")
	t.Logf("%d journal files left", strings.Count(files, "File path:"))
	w, stop = start()
	waitSeen("the entries in the file left", 500, 600)
	time.Sleep(200 * time.Millisecond)
	stop()
	st := w.Stats().Journal
	if st.CursorLost != 1 || strings.Count(logs.String(), "no longer in the journal") != 1 {
		t.Fatalf("cursor lost %d times; logs:\n%s", st.CursorLost, logs.String())
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range 600 {
		if c.seen[i] > 1 {
			t.Fatalf("entry %d read %d times", i, c.seen[i])
		}
		if i < 400 || i >= 500 {
			if c.seen[i] != 1 {
				t.Fatalf("entry %d read %d times, want 1", i, c.seen[i])
			}
		}
	}
	t.Logf("after the vacuum: %d of the entries 400..499 in the vacuumed files were not read (expected)", 100-countRange(c.seen, 400, 500))
}

func countRange(seen map[int]int, from, to int) int {
	n := 0
	for i := from; i < to; i++ {
		if seen[i] > 0 {
			n++
		}
	}
	return n
}
