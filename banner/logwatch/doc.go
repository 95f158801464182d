// Package logwatch follows Postfix's mail log and reports the lines that
// show a client misbehaving: DNSBL rejects, rejects for unknown recipients,
// postscreen rejects, "too many errors", and lines matched by the admin's
// own fail2ban-style patterns.
//
// Matching is a pure function of the line (Matcher.MatchLine). The built-in
// patterns are a small hand-written parser anchored on the syslog structure
// ("TIMESTAMP HOST postfix[-inst]/[svc/]smtpd[PID]: ") and on the position of
// the client in Postfix's reject format ("QUEUEID|NOQUEUE: reject: STAGE from
// NAME[ADDR]: CODE ..."). The client address is taken from that position
// only, never from text the client controls (HELO, sender, recipient,
// reverse name), and the reverse name must consist of hostname characters.
// Names are never resolved: <HOST> in admin patterns only matches address
// literals.
//
// The Watcher reads Sources (the log files, which banner/follow follows
// through rename rotation, copytruncate and restarts; later others, such
// as the systemd journal) and matches each entry, a raw syslog line or an
// entry split already (Matcher.MatchRecord). Analyze analyses a log
// offline, and OpenLogs opens logs for it (`banner test-log`).
package logwatch
