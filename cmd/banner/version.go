package main

import (
	"context"
	"fmt"

	"github.com/banner-mta/banner/banner/daemon"
)

func cmdVersion(_ context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "version", "", "Print the version")
	if _, err := parseInterspersed(fs, args); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "banner %s\n", daemon.Version())
	return nil
}
