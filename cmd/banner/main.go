// Command banner is a Postfix policy service and SMTP firewall feeder: it
// answers Postfix's check_policy_service from cached DNSBL lookups, watches
// mail.log for reject patterns, and bans clients that keep offending with
// time-limited DROPs on the SMTP port.
//
// Run `banner -h` for the subcommands.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
