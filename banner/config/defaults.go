package config

import (
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/banner-mta/banner/banner"
	"github.com/banner-mta/banner/banner/dnslist"
	"github.com/banner-mta/banner/banner/engine"
	"github.com/banner-mta/banner/banner/firewall"
	"github.com/banner-mta/banner/banner/fleet"
	"github.com/banner-mta/banner/banner/logwatch"
	"github.com/banner-mta/banner/banner/policy"
	"github.com/banner-mta/banner/banner/recipients"
	"github.com/banner-mta/banner/dnsbl"
	"github.com/banner-mta/banner/policyd"
)

// Default returns the configuration banner uses for every key the file does
// not set: each package's DefaultConfig written in the file's terms, and
// the few settings that belong to the file itself (store, control socket,
// metrics, logging). conf/banner.toml spells out exactly these values.
func Default() *File {
	pd := policyd.DefaultConfig()
	pc := policy.DefaultConfig()
	dc := dnsbl.DefaultConfig()
	lsc := dnslist.DefaultConfig()
	ec := engine.DefaultConfig()
	fc := firewall.DefaultConfig()
	lc := logwatch.DefaultConfig()
	rc := recipients.DefaultConfig()
	flc := fleet.DefaultConfig()
	f := &File{
		Policy: Policy{
			Listen:         slices.Clone(pd.Listen),
			AllowPeers:     filePrefixes(pd.AllowPeers),
			SocketUser:     pd.SocketUser,
			SocketGroup:    pd.SocketGroup,
			PeerUsers:      slices.Clone(pd.PeerUsers),
			MaxPerUser:     pd.MaxConnsPerUser,
			MaxConnections: pd.MaxConns,
			MaxLine:        pd.MaxLineBytes,
			MaxAttributes:  pd.MaxAttrs,
			MaxRequest:     pd.MaxRequestBytes,
			ReadTimeout:    Duration(pd.ReadTimeout),
			IdleTimeout:    Duration(pd.IdleTimeout),
			RequestTimeout: Duration(pd.RequestTimeout),
			FailAction:     pd.FailAction,
			DNSBLAction:    pc.DNSBLAction,
			BannedAction:   pc.BannedAction,
			DNSErrorAction: pc.DNSErrorAction,
			SkipSASL:       pc.SkipSASL,
			DNSBLWeight:    pc.DNSBLWeight,
		},
		DNSBL: DNSBL{
			Zones:            slices.Clone(dc.Zones),
			Threshold:        dc.Threshold,
			Resolvers:        append([]string{}, dc.Resolvers...),
			ResolvConf:       dc.ResolvConf,
			QueryTimeout:     Duration(dc.QueryTimeout),
			CacheSize:        dc.CacheSize,
			MinTTL:           Duration(dc.MinTTL),
			MaxTTL:           Duration(dc.MaxTTL),
			NegativeTTL:      Duration(dc.NegativeTTL),
			DQSKey:           dc.DQSKey,
			ErrorLogInterval: Duration(dc.ErrorLogInterval),
			FailureBackoff:   Duration(dc.FailureBackoff),
		},
		DNSList: DNSList{
			Listen:       lsc.Listen,
			Zone:         lsc.Zone,
			TTL:          Duration(lsc.TTL),
			ListScored:   lsc.ListScored,
			AllowClients: filePrefixes(lsc.AllowClients),
		},
		Ban: Ban{
			MaxRetry:          ec.MaxRetry,
			FindTime:          Duration(ec.FindTime),
			BanTime:           Duration(ec.BanTime),
			Factor:            ec.Factor,
			MaxTime:           Duration(ec.MaxTime),
			BanTimeJitter:     Duration(ec.BanTimeJitter),
			ForgetAfter:       Duration(ec.ForgetAfter),
			Allowlist:         filePrefixes(ec.Allowlist),
			AllowLocal:        true,
			AllowMynetworks:   true,
			PostfixConfigDir:  "",
			IPv6Prefix:        ec.IPv6Prefix,
			EchoWindow:        Duration(ec.EchoWindow),
			ReconcileInterval: Duration(ec.ReconcileInterval),
			QueueSize:         ec.QueueSize,
			GoodSenderDays:    int(ec.GoodSenderFor / (24 * time.Hour)),
			GoodSenderFactor:  ec.GoodSenderFactor,
			GoodSendersMax:    ec.MaxGoodSenders,
			AllowFCrDNS:       []string{},
			SASL: KindBan{
				MaxRetry: ec.Kinds[banner.KindSASL].MaxRetry,
				FindTime: Duration(ec.Kinds[banner.KindSASL].FindTime),
				Ports:    slices.Clone(fc.SASLPorts),
			},
		},
		Firewall: Firewall{
			Backend:        fc.Backend,
			NFTTable:       fc.NFTTable,
			NFTPriority:    fc.NFTPriority,
			Chain:          fc.Chain,
			Ports:          slices.Clone(fc.Ports),
			Drop:           fc.Drop,
			Set4:           fc.Set4,
			Set6:           fc.Set6,
			MaxElem:        fc.MaxElem,
			IPv6:           fc.IPv6,
			LockWait:       Duration(fc.LockWait),
			CommandTimeout: Duration(fc.CommandTimeout),
		},
		LogWatch: LogWatch{
			Files:          slices.Clone(lc.Files),
			FromStart:      lc.FromStart,
			PollInterval:   Duration(lc.PollInterval),
			RotateGrace:    Duration(lc.RotateGrace),
			MaxLine:        lc.MaxLineLen,
			Builtin:        slices.Clone(lc.Builtin),
			BuiltinWeights: maps.Clone(lc.BuiltinWeights),
			IgnoreServices: slices.Clone(lc.IgnoreServices),
		},
		Recipients: Recipients{
			Domains:            append([]string{}, rc.Domains...),
			Files:              append([]string{}, rc.Files...),
			RecipientDelimiter: rc.RecipientDelimiter,
			Weight:             pc.RecipientWeight,
			ReloadInterval:     Duration(30 * time.Second),
		},
		Store:   Store{Path: "/var/lib/banner/banner.db"},
		Control: Control{Socket: "/run/banner/banner.sock"},
		Metrics: Metrics{Listen: "127.0.0.1:10041"},
		Log:     Log{Level: "info", Format: "text"},
		Fleet:   Fleet{Redis: flc.URL, KeyPrefix: flc.KeyPrefix, MaxLen: int(flc.MaxLen), QueueSize: flc.QueueSize},
	}
	if f.LogWatch.BuiltinWeights == nil {
		f.LogWatch.BuiltinWeights = map[string]float64{}
	}
	for _, r := range pc.Immediate {
		f.Policy.Immediate = append(f.Policy.Immediate, Immediate{Zone: r.Zone, Codes: r.Codes.String(), BanTime: Duration(r.BanFor)})
	}
	return f
}

// filePrefixes converts prefixes to the file's type (never nil, so that
// the defaults print as empty lists).
func filePrefixes(ps []netip.Prefix) []Prefix {
	out := []Prefix{}
	for _, p := range ps {
		out = append(out, Prefix(p))
	}
	return out
}
