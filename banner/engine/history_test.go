package engine

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// TestHistoryWrittenWhenBanEnds: a ban's escalation history is stored when
// the ban ends, not when it is made (until then the ban record holds the
// count and the end): expired while banner runs, expired while it was
// down, lifted by unban, and a ban still live at a restart. In each case
// the next ban of the address, after a restart that leaves only the
// stored history to go on, is escalated to count 2.
func TestHistoryWrittenWhenBanEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, c *clock, e *Engine) // ends the ban of p1, which runs for an hour
	}{
		{"expired while running", func(t *testing.T, c *clock, e *Engine) {
			c.Add(time.Hour + time.Second)
			e.sync(t)
		}},
		{"expired while down", func(t *testing.T, c *clock, e *Engine) {
			e.Close()
			c.Add(time.Hour + time.Second)
		}},
		{"unban", func(t *testing.T, c *clock, e *Engine) {
			if err := e.Unban(context.Background(), p1); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock()
			path := filepath.Join(t.TempDir(), "banner.db")
			st := openStore(t, path)
			e := startEngine(t, testConfig(c), st, noneFirewall(t))
			if _, err := e.Ban(context.Background(), p1, 0, "first"); err != nil {
				t.Fatal(err)
			}
			if _, ok, err := st.History(p1); err != nil || ok {
				t.Fatalf("history stored while the ban is live: %v, %v", ok, err)
			}
			tc.end(t, c, e)
			e.Close()
			// Started twice: the first start writes what ended while it
			// was down; the second has only the stored history.
			startEngine(t, testConfig(c), st, noneFirewall(t)).Close()
			if h, ok, err := st.History(p1); err != nil || !ok || h.Count != 1 {
				t.Fatalf("stored history after the ban ended: %+v, %v, %v; want count 1", h, ok, err)
			}
			e = startEngine(t, testConfig(c), st, noneFirewall(t))
			c.Add(time.Minute)
			b, err := e.Ban(context.Background(), p1, 0, "again")
			if err != nil || b.Count != 2 || b.Until.Sub(b.Since) != 2*time.Hour {
				t.Errorf("the next ban: %+v, %v; want count 2 for 2h", b, err)
			}
		})
	}

	// Killed while the ban is live: the ban record is all there is, and
	// the restart's ledger derives the history from it.
	t.Run("live at a restart", func(t *testing.T) {
		c := newClock()
		st := openStore(t, filepath.Join(t.TempDir(), "banner.db"))
		e := startEngine(t, testConfig(c), st, noneFirewall(t))
		if _, err := e.Ban(context.Background(), p1, 0, "first"); err != nil {
			t.Fatal(err)
		}
		e.Close()
		e = startEngine(t, testConfig(c), st, noneFirewall(t))
		c.Add(time.Hour + time.Second)
		e.sync(t)
		b, err := e.Ban(context.Background(), p1, 0, "again")
		if err != nil || b.Count != 2 {
			t.Errorf("the next ban: %+v, %v; want count 2", b, err)
		}
	})
}
