package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"

	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/daemon"
	"github.com/banner-mta/banner/dnsbl"
)

// Exit statuses of `banner check`.
const (
	checkListed    = 0 // the score reached the threshold
	checkNotListed = 1 // it did not
	checkError     = 2 // usage or configuration error
	checkUnknown   = 3 // a zone failed and its answer could change the verdict
)

// checkHelp documents the exit statuses in `banner check -h`.
const checkHelp = `Exit status: 0 listed (the score reached the threshold), 1 not listed,
2 usage or configuration error, 3 could not tell (a zone failed and its
answer could change the verdict)`

// exitStatus is an error that carries a command's exit status. err, when
// not nil, is printed like any other failure.
type exitStatus struct {
	code int
	err  error
}

func (e *exitStatus) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitStatus) Unwrap() error { return e.err }

// checkVerdict turns a lookup into `banner check`'s exit status. zones are
// the configured zones, in the order of res.Zones. A zone that failed
// might have matched (adding its weight) or not: the verdict stands only
// if it is the same either way.
func checkVerdict(res dnsbl.Result, zones []dnsbl.Zone) int {
	if !res.Unknown {
		if res.Listed {
			return checkListed
		}
		return checkNotListed
	}
	// The lowest and highest scores the failed zones allow, added in
	// configuration order as dnsbl adds the score.
	var lo, hi float64
	for i := range res.Zones {
		z := &res.Zones[i]
		w := z.Weight
		if z.Err == nil || i >= len(zones) {
			lo += w
			hi += w
			continue
		}
		lo += min(zones[i].Weight, 0)
		hi += max(zones[i].Weight, 0)
	}
	switch {
	case lo >= res.Threshold:
		return checkListed
	case hi < res.Threshold:
		return checkNotListed
	}
	return checkUnknown
}

// exitWith prints the error an exitStatus carries, if any, and returns its
// code.
func exitWith(stderr io.Writer, name string, err error) int {
	var es *exitStatus
	if !errors.As(err, &es) {
		return 1
	}
	if es.err != nil {
		fmt.Fprintf(stderr, "banner %s: %v\n", name, es.err)
	}
	return es.code
}

// loadOrDefault reads the configuration; a missing default file means the
// built-in defaults, so check and test-log work on a machine without one.
func loadOrDefault(env *cliEnv, path string) (*config.File, error) {
	cfg, err := config.Load(path)
	if err != nil && path == config.DefaultPath && errors.Is(err, fs.ErrNotExist) {
		fmt.Fprintf(env.stderr, "note: %s not found; using the built-in defaults\n", path)
		return config.Default(), nil
	}
	return cfg, err
}

func cmdCheck(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "check", "[-config F] [-json] IP", "Look an address up in the configured DNSBLs, without the daemon")
	flagsUsage := fs.Usage
	fs.Usage = func() {
		flagsUsage()
		fmt.Fprintf(env.stdout, "\n%s.\n", checkHelp)
	}
	cfgPath := configFlag(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return fmt.Errorf("%w: want exactly one IP address", errUsage)
	}
	ip, err := netip.ParseAddr(pos[0])
	if err != nil || ip.Zone() != "" {
		return fmt.Errorf("%w: invalid IP address %q", errUsage, pos[0])
	}
	fail := func(err error) error { return &exitStatus{code: checkError, err: err} }
	cfg, err := loadOrDefault(env, *cfgPath)
	if err != nil {
		return fail(err)
	}
	res, zones, err := daemon.Check(ctx, cfg, ip, slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelError})))
	if err != nil {
		return fail(err)
	}
	if *asJSON {
		err = writeJSON(env.stdout, res)
	} else {
		err = dnsbl.WriteReport(env.stdout, res)
	}
	if err != nil {
		return fail(err)
	}
	if code := checkVerdict(res, zones); code != checkListed {
		return &exitStatus{code: code}
	}
	return nil
}
