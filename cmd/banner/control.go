package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/control"
)

// controlSocket finds the daemon's socket from the configuration. The
// configuration file may be absent on a machine that only uses defaults.
// controlSocket returns the control socket named by the configuration at
// path. A configuration that does not load (say, broken by an edit the
// daemon refused on SIGHUP) must not lock the admin out of an emergency
// unban: then the socket is read from the file leniently, or else the
// default is used, with a warning on warn.
func controlSocket(path string, warn io.Writer) (string, error) {
	f, err := config.Load(path)
	if err == nil {
		return f.Control.Socket, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		if path == config.DefaultPath {
			return config.Default().Control.Socket, nil
		}
		return "", err
	}
	sock, how := config.Default().Control.Socket, "the default control socket"
	if s := config.ControlSocketLenient(path); s != "" {
		sock, how = s, "its control.socket"
	}
	fmt.Fprintf(warn, "warning: %v\nwarning: using %s %s to reach the daemon anyway\n", err, how, sock)
	return sock, nil
}

func controlDo(ctx context.Context, env *cliEnv, cfgPath string, req control.Request) (control.Response, error) {
	sock, err := controlSocket(cfgPath, env.stderr)
	if err != nil {
		return control.Response{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return control.Do(ctx, sock, req)
}
