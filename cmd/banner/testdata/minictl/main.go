// Command minictl is what a small `banner ban` binary linking only the
// control client would cost: it sends one ban request to the daemon's
// socket and prints the answer, with no configuration file read, no
// flags package and none of the daemon's packages. BenchmarkBanCLI times
// it beside the real `banner ban`; it is not installed.
//
//	minictl SOCKET PREFIX DURATION
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/banner-mta/banner/banner/control"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: minictl SOCKET PREFIX DURATION")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := control.Do(ctx, os.Args[1], control.Request{Cmd: control.CmdBan, Prefix: os.Args[2], For: os.Args[3], Reason: "banned by hand"})
	if err != nil {
		fmt.Fprintln(os.Stderr, "minictl:", err)
		os.Exit(1)
	}
	fmt.Printf("banned %s until %s\n", resp.Ban.Prefix, resp.Ban.Until.Format(time.RFC3339))
}
