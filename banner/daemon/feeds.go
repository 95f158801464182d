package daemon

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/banner-mta/banner/banner/blocklist"
	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/engine"
)

// feedCheckInterval is how often a feed's file is looked at for a change
// between its scheduled reloads.
var feedCheckInterval = 5 * time.Second

// feedTTL is how long a feed's bans last past its last reload: three
// intervals, so that two missed reloads lapse nothing, and bans of a feed
// that banner stopped reloading run out by themselves.
func feedTTL(interval time.Duration) time.Duration { return 3 * interval }

// runFeed keeps feed fd's bans those of its file: at start, every
// interval, and whenever the file changes (size, modification time,
// inode). A file that cannot be read or is too long changes nothing: its
// bans stay until their time runs out.
func (d *Daemon) runFeed(ctx context.Context, fd config.Feed) error {
	log := d.log.With("part", "feed", "feed", fd.Name)
	interval := fd.FeedInterval()
	var last os.FileInfo
	sync := func() {
		fi, err := os.Stat(fd.Path)
		if err != nil {
			log.Error("feed file unreadable; its bans stay until they run out", "path", fd.Path, "err", err)
			return
		}
		last = fi
		f, err := os.Open(fd.Path)
		if err != nil {
			log.Error("feed file unreadable; its bans stay until they run out", "path", fd.Path, "err", err)
			return
		}
		l, err := blocklist.Parse(f)
		f.Close()
		if err != nil {
			log.Error("feed file not loaded; its bans stay until they run out", "path", fd.Path, "err", err)
			return
		}
		if len(l.Bad) > 0 {
			log.Warn("feed lines skipped", "path", fd.Path, "count", len(l.Bad), "first", l.Bad[0].Error())
		}
		if _, err := d.engine.SyncFeed(ctx, fd.Name, l.Prefixes, feedTTL(interval)); err != nil &&
			!errors.Is(err, context.Canceled) && !errors.Is(err, engine.ErrClosed) {
			log.Error("feed sync", "err", err)
		}
	}
	changed := func() bool {
		fi, err := os.Stat(fd.Path)
		if err != nil || last == nil {
			return err == nil
		}
		return fi.Size() != last.Size() || !fi.ModTime().Equal(last.ModTime()) || !os.SameFile(fi, last)
	}
	sync()
	reload := time.NewTicker(interval)
	defer reload.Stop()
	check := time.NewTicker(min(feedCheckInterval, interval))
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-reload.C:
			sync()
		case <-check.C:
			if changed() {
				sync()
			}
		}
	}
}
