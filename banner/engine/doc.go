// Package engine decides bans: it scores the events the sources report
// (policy service, log watcher, CLI) within findtime, bans a client that
// reaches maxretry for an escalating time, expires and lifts bans, and keeps
// the firewall and the store in step with its decisions.
//
// It is an actor: one goroutine (run.go) owns the state (ledger.go) and
// takes events, control requests and checkpoints from channels. Log sources
// block on a full queue (back-pressure); the policy service does not wait
// and its dropped events are counted. Decisions reach the store in batches
// (flush.go) before the CLI is told they are done; restore.go loads the
// store into the kernel at start, and reconcile.go repairs the kernel from
// the store on an interval.
package engine
