package config

import (
	"log/slog"

	"github.com/banner-mta/banner/banner/fcrdns"
)

// FCrDNSConfig maps [ban] allow_fcrdns onto the fcrdns Checker's Config,
// asking resolvers (the DNSBL checker's).
func (f *File) FCrDNSConfig(resolvers []string, log *slog.Logger) fcrdns.Config {
	c := fcrdns.DefaultConfig()
	c.Suffixes = f.Ban.AllowFCrDNS
	c.Resolvers = resolvers
	c.Logger = log
	return c
}

// validateFCrDNS checks the suffixes (the resolvers are known only at
// start-up).
func (f *File) validateFCrDNS() error {
	return f.FCrDNSConfig([]string{"127.0.0.1:53"}, nil).Validate()
}
