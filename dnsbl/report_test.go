package dnsbl

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/internal/dnstest"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// resolverPort hides the test server's random port in golden output.
var resolverPort = regexp.MustCompile(`127\.0\.0\.1:\d+`)

func TestWriteReportGolden(t *testing.T) {
	tests := []struct {
		name  string
		zones []string
		key   string
		setup func(s *dnstest.Server, ip netip.Addr)
		twice bool // report the second, cached lookup
	}{
		{name: "listed", zones: threeZones, setup: func(s *dnstest.Server, ip netip.Addr) {
			s.Set(QueryName(ip, "zen.spamhaus.org"), addrs("127.0.0.4", "127.0.0.10"), 300*time.Second)
			s.Set(QueryName(ip, "bl.spamcop.net"), addrs("127.0.0.2"), 10*time.Second)
		}},
		{name: "clean", zones: threeZones, setup: func(s *dnstest.Server, ip netip.Addr) {
			s.Set(QueryName(ip, "list.dnswl.org"), addrs("127.0.5.0"), 3600*time.Second)
		}},
		{name: "errors", zones: threeZones, setup: func(s *dnstest.Server, ip netip.Addr) {
			s.Set(QueryName(ip, "zen.spamhaus.org"), addrs("127.255.255.254"), 300*time.Second)
			s.SetServfail("bl.spamcop.net")
			s.Set(QueryName(ip, "list.dnswl.org"), addrs("127.0.15.2"), 300*time.Second)
		}},
		{name: "dqs-cached-ipv6", zones: []string{DefaultZone}, key: testKey, twice: true, setup: func(s *dnstest.Server, ip netip.Addr) {
			s.Set(QueryName(ip, testKey+".zen.dq.spamhaus.net"), addrs("127.0.0.3"), 600*time.Second)
		}},
		{name: "no-zones"},
		// Refused with an error code (a public resolver): the zone did
		// answer, so the verdict must not blame the resolver.
		{name: "refused-public-resolver", zones: []string{DefaultZone}, setup: func(s *dnstest.Server, ip netip.Addr) {
			s.Set(QueryName(ip, "zen.spamhaus.org"), addrs("127.255.255.254"), 300*time.Second)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.zones, func(c *Config) { c.DQSKey = tt.key })
			ip := netip.MustParseAddr("192.0.2.99")
			if tt.key != "" {
				ip = netip.MustParseAddr("2001:db8::1")
			}
			if tt.setup != nil {
				tt.setup(e.srv, ip)
			}
			r := e.lookup(t, ip.String())
			if tt.twice {
				e.clock.Advance(100 * time.Second)
				r = e.lookup(t, ip.String())
			}
			var b strings.Builder
			if err := WriteReport(&b, r); err != nil {
				t.Fatal(err)
			}
			got := resolverPort.ReplaceAllString(b.String(), "127.0.0.1:PORT")
			path := filepath.Join("testdata", "report-"+tt.name+".golden")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -run TestWriteReportGolden -update ./dnsbl/)", err)
			}
			if got != string(want) {
				t.Errorf("report differs from %s:\n--- got\n%s--- want\n%s", path, got, want)
			}
			if strings.Contains(got, testKey) {
				t.Error("report shows the DQS key")
			}
		})
	}
}
