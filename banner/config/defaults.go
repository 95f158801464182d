package config

import (
	"net/netip"
	"time"
)

func mustPrefix(s string) Prefix {
	p, err := ParsePrefix(s)
	if err != nil {
		panic(err)
	}
	return Prefix(p)
}

// Default returns the configuration banner uses for every key the file does
// not set. conf/banner.toml spells out exactly these values.
func Default() *File {
	return &File{
		Policy: Policy{
			Listen:         []string{"inet:127.0.0.1:10040"},
			AllowPeers:     []Prefix{mustPrefix("127.0.0.0/8"), mustPrefix("::1")},
			SocketUser:     "",
			SocketGroup:    "",
			PeerUsers:      []string{"postfix", "root"},
			MaxConnections: 1000,
			MaxPerUser:     100,
			MaxLine:        8192,
			MaxAttributes:  100,
			MaxRequest:     65536,
			ReadTimeout:    Duration(10 * time.Second),
			IdleTimeout:    Duration(330 * time.Second),
			RequestTimeout: Duration(5 * time.Second),
			FailAction:     "DUNNO",
			DNSBLAction:    "554 5.7.1 Service unavailable; Client host [{client}] blocked using {zone}",
			BannedAction:   "554 5.7.1 Service unavailable; Client host [{client}] is temporarily banned",
			DNSErrorAction: "DUNNO",
			SkipSASL:       true,
			DNSBLWeight:    1,
			Immediate: []Immediate{{
				Zone:    "zen.spamhaus.org",
				Codes:   "127.0.0.[4..7]",
				BanTime: Duration(3 * 24 * time.Hour),
			}},
		},
		DNSBL: DNSBL{
			Zones:            []string{"zen.spamhaus.org=127.0.0.[2..11]*3"},
			Threshold:        3,
			Resolvers:        []string{},
			ResolvConf:       "/etc/resolv.conf",
			QueryTimeout:     Duration(1500 * time.Millisecond),
			CacheSize:        100000,
			MinTTL:           Duration(time.Minute),
			MaxTTL:           Duration(time.Hour),
			NegativeTTL:      Duration(10 * time.Minute),
			ErrorLogInterval: Duration(10 * time.Minute),
			FailureBackoff:   Duration(30 * time.Second),
		},
		Ban: Ban{
			MaxRetry:          5,
			FindTime:          Duration(10 * time.Minute),
			BanTime:           Duration(time.Hour),
			Factor:            2,
			MaxTime:           Duration(7 * 24 * time.Hour),
			ForgetAfter:       Duration(7 * 24 * time.Hour),
			Allowlist:         []Prefix{},
			AllowLocal:        true,
			AllowMynetworks:   true,
			PostfixConfigDir:  "",
			IPv6Prefix:        128,
			EchoWindow:        Duration(2 * time.Minute),
			ReconcileInterval: Duration(5 * time.Minute),
			QueueSize:         10000,
		},
		Firewall: Firewall{
			Backend:        "ipset",
			Chain:          "BANNER",
			Ports:          []uint16{25},
			Drop:           "new",
			Set4:           "banner4",
			Set6:           "banner6",
			MaxElem:        1048576,
			IPv6:           true,
			LockWait:       Duration(5 * time.Second),
			CommandTimeout: Duration(10 * time.Second),
		},
		LogWatch: LogWatch{
			Files:          []string{"/var/log/mail.log"},
			PollInterval:   Duration(250 * time.Millisecond),
			RotateGrace:    Duration(time.Minute),
			MaxLine:        16384,
			Builtin:        []string{"rbl", "unknown_user", "postscreen", "too_many_errors"},
			BuiltinWeights: map[string]float64{},
			IgnoreServices: []string{"submission", "submissions", "smtps"},
		},
		Recipients: Recipients{
			Domains:            []string{},
			Files:              []string{},
			RecipientDelimiter: "+",
			Weight:             1,
			ReloadInterval:     Duration(30 * time.Second),
		},
		Store:   Store{Path: "/var/lib/banner/banner.db"},
		Control: Control{Socket: "/run/banner/banner.sock"},
		Metrics: Metrics{Listen: "127.0.0.1:10041"},
		Log:     Log{Level: "info", Format: "text"},
	}
}

// loopbackAllowlist is always part of the ban allowlist, whatever the file says.
var loopbackAllowlist = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
