package logwatch

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/testenv"
)

// numLine is a real unknown-user reject carrying the number n in the
// recipient, so that every line read can be accounted for.
func numLine(n int) string {
	return fmt.Sprintf("Nov 24 10:00:00 mx postfix/smtpd[1]: NOQUEUE: reject: RCPT from unknown[192.0.2.1]: 550 5.1.1 <u%d@example.test>: Recipient address rejected: User unknown in local recipient table; from=<> to=<u%d@example.test> proto=ESMTP helo=<h>\n", n, n)
}

// collector counts how often each numbered line was emitted.
type collector struct {
	mu    sync.Mutex
	seen  map[int]int
	order []int // numbers in the order emitted
	total int
	other []string
}

func newCollector() *collector { return &collector{seen: map[int]int{}} }

func (c *collector) emit(m Match) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.total++
	s := strings.TrimSuffix(strings.TrimPrefix(m.Key, "u"), "@example.test")
	n, err := strconv.Atoi(s)
	if err != nil {
		c.other = append(c.other, m.Line)
		return
	}
	c.seen[n]++
	c.order = append(c.order, n)
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// exactlyOnce checks that lines 0..n-1 were each seen once.
func (c *collector) exactlyOnce(t *testing.T, n int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var missing, dup []int
	for i := 0; i < n; i++ {
		switch c.seen[i] {
		case 1:
		case 0:
			missing = append(missing, i)
		default:
			dup = append(dup, i)
		}
	}
	if len(missing) > 0 || len(dup) > 0 || len(c.other) > 0 || c.total != n {
		t.Fatalf("total %d want %d; %d missing (first %v), %d duplicated (first %v), other %q",
			c.total, n, len(missing), head(missing), len(dup), head(dup), c.other)
	}
}

func head(s []int) []int { return s[:min(len(s), 10)] }

func testConfig(path string) Config {
	cfg := DefaultConfig()
	cfg.Files = []string{path}
	cfg.PollInterval = 2 * time.Millisecond
	cfg.RotateGrace = 10 * time.Second
	cfg.SaveInterval = 0
	cfg.Location = time.UTC
	cfg.Logger = slog.New(slog.DiscardHandler)
	return cfg
}

func newWatcher(t *testing.T, cfg Config, c *collector) *Watcher {
	t.Helper()
	w, err := New(cfg, c.emit)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func runWatcher(t *testing.T, w *Watcher) (stop func()) {
	t.Helper()
	return testenv.Background(t, w.Run)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.WaitFor(t, what, cond)
}

func appendFile(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}
