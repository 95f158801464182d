package main

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"time"
)

// gen produces log lines.
type gen struct {
	r      *rand.Rand
	ratio  float64
	rfc    bool
	t      time.Time
	good   []client
	bad    []client
	qid    uint64
	host   string
	zones  []string
	users  []string
	domain []string
}

type client struct {
	name string
	addr netip.Addr
}

func newGen(seed uint64, ratio float64, rfc bool, t0 time.Time) *gen {
	g := &gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), ratio: ratio, rfc: rfc, t: t0, host: "mx1",
		zones:  []string{"zen.spamhaus.org", "bl.spamcop.net", "b.barracudacentral.org", "dnsbl.example"},
		users:  []string{"alice", "bob", "carol", "dave", "info", "sales", "postmaster", "support", "admin", "webmaster"},
		domain: []string{"example.com", "example.net", "example.org", "mail.example", "shop.example"},
	}
	for i := 0; i < 4000; i++ {
		g.good = append(g.good, g.client(i, "mail"))
	}
	for i := 0; i < 400; i++ {
		g.bad = append(g.bad, g.client(i, "dyn"))
	}
	return g
}

// client makes a client with a documentation-range or random address.
func (g *gen) client(i int, kind string) client {
	var a netip.Addr
	if g.r.IntN(10) == 0 {
		var b [16]byte
		b[0], b[1], b[2], b[3] = 0x20, 0x01, 0x0d, 0xb8
		for k := 8; k < 16; k++ {
			b[k] = byte(g.r.UintN(256))
		}
		a = netip.AddrFrom16(b)
	} else {
		a = netip.AddrFrom4([4]byte{byte(1 + g.r.IntN(222)), byte(g.r.UintN(256)), byte(g.r.UintN(256)), byte(1 + g.r.IntN(254))})
	}
	name := "unknown"
	if g.r.IntN(3) > 0 {
		name = fmt.Sprintf("%s%d.%s", kind, i, g.domain[g.r.IntN(len(g.domain))])
	}
	return client{name, a}
}

func (g *gen) pick(cs []client) client { return cs[g.r.IntN(len(cs))] }

func (g *gen) prefix(w *bufio.Writer, prog string) {
	g.t = g.t.Add(time.Duration(g.r.IntN(40)) * time.Millisecond)
	if g.rfc {
		w.WriteString(g.t.Format("2006-01-02T15:04:05.000000-07:00"))
	} else {
		w.WriteString(g.t.Format(time.Stamp))
	}
	fmt.Fprintf(w, " %s postfix/%s[%d]: ", g.host, prog, 1000+g.r.IntN(30000))
}

func (g *gen) queueID() string {
	g.qid++
	return fmt.Sprintf("%X", 0x4A0000000+g.qid*7919)
}

func (g *gen) addr() string {
	return g.users[g.r.IntN(len(g.users))] + "@" + g.domain[g.r.IntN(len(g.domain))]
}

func (g *gen) line(w *bufio.Writer) {
	if g.r.Float64() < g.ratio {
		g.reject(w)
	} else {
		g.normal(w)
	}
	w.WriteByte('\n')
}

func (g *gen) normal(w *bufio.Writer) {
	c := g.pick(g.good)
	switch n := g.r.IntN(20); {
	case n < 3:
		g.prefix(w, "smtpd")
		fmt.Fprintf(w, "connect from %s[%s]", c.name, c.addr)
	case n < 6:
		g.prefix(w, "smtpd")
		fmt.Fprintf(w, "disconnect from %s[%s] ehlo=1 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=6", c.name, c.addr)
	case n == 6:
		g.prefix(w, "smtpd")
		fmt.Fprintf(w, "%s: client=%s[%s]", g.queueID(), c.name, c.addr)
	case n == 7:
		g.prefix(w, "cleanup")
		fmt.Fprintf(w, "%s: message-id=<%d.%d@%s>", g.queueID(), g.r.Uint32(), g.r.Uint32(), g.domain[g.r.IntN(5)])
	case n < 10:
		g.prefix(w, "qmgr")
		fmt.Fprintf(w, "%s: from=<%s>, size=%d, nrcpt=1 (queue active)", g.queueID(), g.addr(), 1000+g.r.IntN(90000))
	case n < 12:
		g.prefix(w, "lmtp")
		fmt.Fprintf(w, "%s: to=<%s>, relay=mail.example.com[private/dovecot-lmtp], delay=0.%d, delays=0.05/0/0.01/0.03, dsn=2.0.0, status=sent (250 2.0.0 <%s> Saved)", g.queueID(), g.addr(), g.r.IntN(99), g.addr())
	case n == 12:
		g.prefix(w, "smtp")
		fmt.Fprintf(w, "%s: to=<%s>, relay=%s[%s]:25, delay=1.2, delays=0.1/0/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 OK 1700000000 x%d - gsmtp)", g.queueID(), g.addr(), c.name, c.addr, g.r.IntN(1e6))
	case n == 13:
		g.prefix(w, "qmgr")
		fmt.Fprintf(w, "%s: removed", g.queueID())
	case n == 14:
		g.prefix(w, "smtpd")
		fmt.Fprintf(w, "Anonymous TLS connection established from %s[%s]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)", c.name, c.addr)
	case n == 15:
		g.prefix(w, "postscreen")
		fmt.Fprintf(w, "CONNECT from [%s]:%d to [192.0.2.25]:25", c.addr, 1024+g.r.IntN(60000))
	case n == 16:
		g.prefix(w, "postscreen")
		fmt.Fprintf(w, "PASS OLD [%s]:%d", c.addr, 1024+g.r.IntN(60000))
	case n == 17:
		g.prefix(w, "smtpd")
		fmt.Fprintf(w, "lost connection after AUTH from %s[%s]", c.name, c.addr)
	case n == 18:
		g.prefix(w, "dnsblog")
		fmt.Fprintf(w, "addr %s listed by domain %s as 127.0.0.%d", c.addr, g.zones[g.r.IntN(len(g.zones))], 2+g.r.IntN(9))
	default:
		g.prefix(w, "anvil")
		fmt.Fprintf(w, "statistics: max connection rate 3/60s for (smtp:%s) at %s", c.addr, g.t.Format(time.Stamp))
	}
}

func (g *gen) reject(w *bufio.Writer) {
	c := g.pick(g.bad)
	rcpt := g.addr()
	tail := fmt.Sprintf("; from=<%s> to=<%s> proto=ESMTP helo=<%s>", g.addr(), rcpt, c.name)
	qid := "NOQUEUE"
	if g.r.IntN(4) == 0 {
		qid = g.queueID()
	}
	switch n := g.r.IntN(20); {
	case n < 6:
		g.prefix(w, "smtpd")
		z := g.zones[g.r.IntN(len(g.zones))]
		fmt.Fprintf(w, "%s: reject: RCPT from %s[%s]: 554 5.7.1 Service unavailable; Client host [%s] blocked using %s; https://www.spamhaus.org/query/ip/%s%s", qid, c.name, c.addr, c.addr, z, c.addr, tail)
	case n < 11:
		g.prefix(w, "smtpd")
		table := [...]string{"local recipient", "virtual alias", "virtual mailbox", "relay recipient"}[g.r.IntN(4)]
		u := fmt.Sprintf("nosuch%d@%s", g.r.IntN(500), g.domain[g.r.IntN(5)])
		fmt.Fprintf(w, "%s: reject: RCPT from %s[%s]: 550 5.1.1 <%s>: Recipient address rejected: User unknown in %s table; from=<%s> to=<%s> proto=ESMTP helo=<%s>", qid, c.name, c.addr, u, table, g.addr(), u, c.name)
	case n < 13:
		g.prefix(w, "postscreen")
		fmt.Fprintf(w, "NOQUEUE: reject: RCPT from [%s]:%d: 550 5.7.1 Service unavailable; client [%s] blocked using %s; from=<%s>, to=<%s>, proto=ESMTP, helo=<%s>", c.addr, 1024+g.r.IntN(60000), c.addr, g.zones[g.r.IntN(len(g.zones))], g.addr(), rcpt, c.name)
	case n == 13:
		g.prefix(w, "postscreen")
		fmt.Fprintf(w, `PREGREET %d after 0.%02d from [%s]:%d: EHLO %s\r\n`, 10+g.r.IntN(20), g.r.IntN(99), c.addr, 1024+g.r.IntN(60000), c.name)
	case n == 14:
		g.prefix(w, "smtpd")
		fmt.Fprintf(w, "too many errors after RCPT from %s[%s]", c.name, c.addr)
	case n == 15:
		g.prefix(w, "smtpd")
		fmt.Fprintf(w, "%s: reject: RCPT from %s[%s]: 554 5.7.1 <%s>: Relay access denied%s", qid, c.name, c.addr, rcpt, tail)
	case n == 16:
		g.prefix(w, "smtpd")
		fmt.Fprintf(w, "%s: reject: RCPT from %s[%s]: 504 5.5.2 <%s>: Helo command rejected: need fully-qualified hostname%s", qid, c.name, c.addr, "WIN-1234", tail)
	case n == 17:
		g.prefix(w, "smtpd")
		fmt.Fprintf(w, "%s: reject: RCPT from %s[%s]: 554 5.7.1 <%s>: Recipient address rejected: blocked by banner: listed in zen.spamhaus.org%s", qid, c.name, c.addr, rcpt, tail)
	case n == 18:
		g.prefix(w, "smtpd")
		fmt.Fprintf(w, "%s: reject: RCPT from %s[%s]: 450 4.7.25 Client host rejected: cannot find your hostname, [%s]%s", qid, c.name, c.addr, c.addr, tail)
	default:
		g.prefix(w, "smtpd")
		fmt.Fprintf(w, "warning: %s[%s]: SASL LOGIN authentication failed: UGFzc3dvcmQ6", c.name, c.addr)
	}
}
