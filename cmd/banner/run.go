package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/daemon"
)

func newLogger(w io.Writer, cfg *config.File) *slog.Logger {
	level, _ := cfg.LogLevel()
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func cmdRun(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "run", "[-config F] [-check]", "Run the daemon: policy service, log watcher and firewall feeder")
	cfgPath := configFlag(fs)
	check := fs.Bool("check", false, "only validate the configuration, print warnings about settings that are\nlegal but almost surely wrong and about this machine (files, directories,\ncommands banner needs), then exit: 1 on errors, 0 with warnings only")
	if err := parseNoArgs(fs, args); err != nil {
		return err
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if *check {
		ws := append(cfg.Warnings(), daemon.Preflight(cfg)...)
		config.SortWarnings(ws) // the file's and the machine's, in file order
		for _, w := range ws {
			fmt.Fprintf(env.stdout, "warning: %s\n", w)
		}
		fmt.Fprintf(env.stdout, "%s: configuration OK%s\n", *cfgPath, warningCount(len(ws)))
		return nil
	}
	log := newLogger(env.stderr, cfg)
	slog.SetDefault(log)
	logWarnings(log, cfg.Warnings())
	d, err := daemon.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				d.Reload()
			}
		}
	}()
	return d.Run(ctx)
}

// warningCount is ", N warnings" for the -check summary, "" for none.
func warningCount(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return ", 1 warning"
	}
	return fmt.Sprintf(", %d warnings", n)
}

// logWarnings logs the configuration's warnings at start-up, except those
// the daemon's parts log themselves.
func logWarnings(log *slog.Logger, ws []config.Warning) {
	for _, w := range ws {
		if w.LoggedByDaemon {
			continue
		}
		at := w.Path
		if w.Line > 0 {
			at = fmt.Sprintf("%s:%d", w.Path, w.Line)
		}
		log.Warn("configuration: "+w.Msg, "key", w.Key, "at", at)
	}
}
