package daemon

import (
	"log/slog"
	"net/netip"

	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/banner/fcrdns"
)

// fcrdnsHook returns the engine's AllowName for [ban] allow_fcrdns (nil
// when it is empty), asking the DNSBL checker's resolvers.
func fcrdnsHook(cfg *config.File, resolvers []string, log *slog.Logger) (func(netip.Addr) (string, bool), error) {
	if len(cfg.Ban.AllowFCrDNS) == 0 {
		return nil, nil
	}
	c, err := fcrdns.New(cfg.FCrDNSConfig(resolvers, log))
	if err != nil {
		return nil, err
	}
	return c.Allowed, nil
}
