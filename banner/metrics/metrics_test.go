package metrics

import (
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

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

func allSources() Sources {
	return Sources{
		Policyd: func() policyd.Stats {
			return policyd.Stats{Current: 3, Accepted: 10, Requests: 100, Errors: map[policyd.Reason]uint64{policyd.ReasonReadTimeout: 1}}
		},
		Policy: func() policy.Stats {
			return policy.Stats{Decisions: map[policy.Decision]uint64{policy.DecisionDUNNO: 90, policy.DecisionDNSBL: 10}}
		},
		DNSBL: func() dnsbl.Stats {
			return dnsbl.Stats{Lookups: 5, CacheHits: 3, CacheMisses: 2, Zones: []dnsbl.ZoneStats{{Zone: "zen.spamhaus.org", Queries: 2,
				Latency: dnsbl.Latency{Count: 2, Sum: 30 * time.Millisecond, Buckets: make([]uint64, len(dnsbl.LatencyBounds))}}}}
		},
		Engine: func() engine.Stats {
			return engine.Stats{Events: map[banner.Kind]uint64{banner.KindDNSBL: 4}, ActiveBans: 1, Bans: 1, BansByKind: map[banner.Kind]uint64{banner.KindDNSBL: 1}}
		},
		Firewall: func() firewall.Stats { return firewall.Stats{Adds: 1} },
		LogWatch: func() logwatch.Stats {
			return logwatch.Stats{Lines: 1000, Matched: map[string]uint64{"rbl": 2},
				Files: []logwatch.FileState{{Path: "/var/log/mail.log", Open: true, Offset: 900, Size: 1000}},
				Lags:  []logwatch.Lag{{Source: "/var/log/mail.log", Lag: 2 * time.Second, At: time.Unix(1764000000, 0)}}}
		},
		DNSList: func() dnslist.Stats { return dnslist.Stats{Queries: 3, Banned: 1, NotListed: 2} },
		Recipients: func() recipients.Stats {
			return recipients.Stats{Entries: 7, Reloads: 1, Known: 5, Unknown: 2, LastReload: time.Unix(1764000000, 0)}
		},
		Fleet: func() fleet.Stats {
			return fleet.Stats{Enabled: true, Connected: true, Lag: 3 * time.Millisecond, Sent: 4, Received: 2,
				NodesSeen: map[string]time.Time{"mx2": time.Unix(1764000000, 0)}}
		},
	}
}

// TestLint runs Prometheus' own metric linter over every banner metric.
func TestLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(&collector{src: allSources()})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// TestREADMEListsEveryMetric keeps README's metrics table and the exported
// metrics the same set, both ways.
func TestREADMEListsEveryMetric(t *testing.T) {
	srv := httptest.NewServer(Handler(New(allSources())))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	var served []string
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (banner_\w+) `).FindAllStringSubmatch(string(body), -1) {
		served = append(served, m[1])
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, line := range strings.Split(string(readme), "\n") {
		if !strings.HasPrefix(line, "| `banner_") {
			continue
		}
		first := strings.Split(line, "|")[1]
		for _, m := range regexp.MustCompile("`(banner_\\w+)`").FindAllStringSubmatch(first, -1) {
			documented = append(documented, m[1])
		}
	}
	slices.Sort(served)
	slices.Sort(documented)
	for _, n := range served {
		if !slices.Contains(documented, n) {
			t.Errorf("%s is served but not in README's metrics table", n)
		}
	}
	for _, n := range documented {
		if !slices.Contains(served, n) {
			t.Errorf("README lists %s, which is not served", n)
		}
	}
	if len(served) < 30 {
		t.Errorf("only %d banner metrics served: %v", len(served), served)
	}
}
