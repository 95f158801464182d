package follow

import (
	"context"
	"io"
	"log"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nxadm/tail"

	"github.com/banner-mta/banner/banner"
)

// TestNxadmTailLosesLinesAfterRename is the evidence for not using
// github.com/nxadm/tail v1.4.11 for following: after a rename rotation, a
// syslog daemon goes on writing to the old file until it is told to reopen
// its output. nxadm/tail reopens the path as soon as it sees the rename and
// never reads the old descriptor again, so those lines are lost. The same
// sequence is run through our follower, which must read every line.
func TestNxadmTailLosesLinesAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mail.log")
	appendFile(t, path, numLine(0))
	old, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()

	tl, err := tail.TailFile(path, tail.Config{Follow: true, ReOpen: true, CompleteLines: true,
		Logger: log.New(io.Discard, "", 0)})
	if err != nil {
		t.Fatal(err)
	}
	defer tl.Cleanup()
	defer tl.Stop() //nolint:errcheck // test cleanup
	c := newCollector()
	fl, ours := stepFollower(t, func() Config { cfg := testConfig(path); cfg.FromStart = true; return cfg }())
	ctx := context.Background()
	fl.poll(ctx)

	collect := func(d time.Duration) {
		deadline := time.After(d)
		for {
			select {
			case l := <-tl.Lines:
				c.emit([]byte(l.Text), banner.LogPosition{})
			case <-deadline:
				return
			}
		}
	}
	waitFor(t, "nxadm/tail reading line 0", func() bool { collect(10 * time.Millisecond); return c.count() == 1 })
	// logrotate: rename, create; the daemon writes line 1 to the old file
	// (it has not reopened yet), then line 2 to the new one.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(old, numLine(1)); err != nil {
		t.Fatal(err)
	}
	appendFile(t, path, numLine(2))
	fl.poll(ctx)
	fl.poll(ctx)
	collect(1500 * time.Millisecond)

	if ours.count() != 3 || ours.seen[0] != 1 || ours.seen[1] != 1 || ours.seen[2] != 1 {
		t.Fatalf("our follower: seen %v, want lines 0, 1, 2 once", ours.seen)
	}
	var lost []int
	for i := 0; i < 3; i++ {
		if c.seen[i] == 0 {
			lost = append(lost, i)
		}
	}
	if len(lost) > 0 {
		t.Logf("EVIDENCE: nxadm/tail lost lines %v of 0..2 across one rename rotation (seen %v)", lost, c.seen)
	} else {
		t.Logf("nxadm/tail read all lines this time (it races with its inotify events): seen %v", c.seen)
	}
}
