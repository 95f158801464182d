package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"time"

	"github.com/banner-mta/banner/banner/config"
	"github.com/banner-mta/banner/dnsbl"
)

// Check looks addr up in the configured DNSBLs now, as the policy service
// would on a cache miss (no cache, the policy's request_timeout), without a
// running daemon. It returns the lookup and the configured zones, in the
// order of the result's. log receives the checker's errors.
func Check(ctx context.Context, cfg *config.File, addr netip.Addr, log *slog.Logger) (dnsbl.Result, []dnsbl.Zone, error) {
	dcfg := cfg.DNSBLConfig(log)
	dcfg.CacheSize = 0
	c, err := dnsbl.New(dcfg)
	if err != nil {
		return dnsbl.Result{}, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.Policy.RequestTimeout))
	defer cancel()
	res, err := c.Lookup(ctx, addr.Unmap())
	return res, c.Zones(), err
}
