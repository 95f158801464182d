package follow

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/banner-mta/banner/internal/testenv"
)

// TestFollowPostfixLogrotate: Postfix's maillog_file (/var/log/postfix.log,
// which Debian ships no rotation for) rotated by the real logrotate with
// README's stanza (weekly, compress, delaycompress; forced here) while
// lines are written; postlogd reopening the file at "postfix reload" is
// the writer's reopen after each rotation. Every line is read once.
func TestFollowPostfixLogrotate(t *testing.T) {
	testenv.RequireCommands(t, "logrotate")
	dir := t.TempDir()
	path := filepath.Join(dir, "postfix.log")
	conf := filepath.Join(dir, "postfix-log.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`%s {
    weekly
    rotate 8
    compress
    delaycompress
    missingok
    notifempty
}
`, path)), 0o644); err != nil {
		t.Fatal(err)
	}
	const total, every = 30000, 5000
	wr := newWriter(t, path)
	c := newCollector()
	cfg := testConfig(path)
	cfg.FromStart = true
	w := newFollower(t, cfg, c)
	stop := runFollower(t, w)
	rot := 0
	for wr.n < total {
		wr.write(min(every, total-wr.n))
		if wr.n >= total {
			break
		}
		// A weekly rotation never comes before the follower has read the
		// week: wait for it (on a loaded machine the loop would otherwise
		// rotate twice within one poll, and the middle file is gzipped and
		// gone before the follower ever opened it).
		n := wr.n
		waitFor(t, "the follower to catch up", func() bool { return c.count() >= n })
		out, err := exec.Command("logrotate", "--force", "--state", filepath.Join(dir, "state"), conf).CombinedOutput()
		if err != nil {
			t.Fatalf("logrotate: %v: %s", err, out)
		}
		rot++
		wr.write(50) // postlogd writes to the renamed file until reload
		wr.reopen()  // postfix reload: postlogd reopens postfix.log
	}
	waitFor(t, "all lines", func() bool { return c.count() >= total })
	stop()
	c.exactlyOnce(t, total)
	if st := w.Stats(); st.Rotations != uint64(rot) {
		t.Errorf("stats %+v, want %d rotations", st, rot)
	}
	if _, err := os.Stat(path + ".2.gz"); err != nil {
		t.Errorf("logrotate did not compress the older file: %v", err)
	}
}
