package daemon

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/control"
	"github.com/banner-mta/banner/internal/testenv"
)

const childDaemonEnv = "BANNER_TEST_CHILD_DAEMON"

// TestChildDaemon is not a test: TestKill9RepeatsBanNobody runs it in a
// child process, as a daemon to kill.
func TestChildDaemon(t *testing.T) {
	path := os.Getenv(childDaemonEnv)
	if path == "" {
		t.Skip("run by TestKill9RepeatsBanNobody")
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	d.Run(context.Background()) // until killed
}

// TestKill9RepeatsBanNobody: after kill -9 in the middle of a backlog, the
// restarted daemon reads again the lines after the last saved position;
// their counts from before the kill died with the process, so a repeat
// never adds to a score twice: with 4 lines per client (maxretry 5),
// nobody is banned, however the lines fall on the two runs.
func TestKill9RepeatsBanNobody(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a daemon twice")
	}
	testenv.Require(t, os.Geteuid() == 0, "the control socket answers root only: run as root")
	dir := t.TempDir()
	log := filepath.Join(dir, "mail.log")
	const clients, per = 50000, 4
	writeBacklog(t, log, clients, per)
	cfg := testConfig(t, dir) // for its store and socket paths
	text := "[ban]\nfindtime = \"1h\"\nallow_mynetworks = false\n[firewall]\nbackend = \"none\"\n" +
		"[logwatch]\nfiles = [\"" + log + "\"]\nfrom_start = true\n" +
		"[store]\npath = \"" + cfg.Store.Path + "\"\n[control]\nsocket = \"" + cfg.Control.Socket + "\"\n[metrics]\nlisten = \"\"\n" +
		"[policy]\nlisten = [\"inet:" + testenv.FreeAddr(t) + "\"]\n[dnsbl]\nresolvers = [\"127.0.0.1:53\"]\n"
	path := filepath.Join(dir, "banner.toml")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := config.Load(path); err != nil {
		t.Fatal(err)
	}
	startChild := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run", "^TestChildDaemon$", "-test.count", "1")
		cmd.Env = append(os.Environ(), childDaemonEnv+"="+path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	status := func() (Status, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		resp, err := control.Do(ctx, cfg.Control.Socket, control.Request{Cmd: control.CmdStatus})
		if err != nil {
			return Status{}, false
		}
		var s Status
		return s, json.Unmarshal(resp.Status, &s) == nil
	}
	child := startChild()
	var before uint64
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		if s, ok := status(); ok && s.Engine.Events["too_many_errors"] > 0 {
			before = s.Engine.Events["too_many_errors"]
			break
		}
		time.Sleep(time.Millisecond)
	}
	child.Process.Signal(syscall.SIGKILL)
	child.Wait()
	if before == 0 {
		t.Fatal("the first daemon handled nothing before the kill")
	}

	child = startChild()
	defer func() { child.Process.Signal(syscall.SIGKILL); child.Wait() }()
	var s Status
	deadline = time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		var ok bool
		if s, ok = status(); ok && s.LogWatch != nil && s.LogWatch.Files != nil && s.LogWatch.Files[0].Offset == s.LogWatch.Files[0].Size {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	s, _ = status()
	second := s.Engine.Events["too_many_errors"]
	repeated := int64(before+second) - clients*per
	t.Logf("first run: at least %d events before kill -9; second run: %d; at least %d lines were read twice", before, second, max(repeated, 0))
	if s.Engine.Bans != 0 {
		t.Errorf("%d bans: lines read twice counted twice", s.Engine.Bans)
	}
}
