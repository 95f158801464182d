package metrics

import (
	"encoding/json"
	"errors"
	"io"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	grafana "github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// dashboard is the part of Grafana's dashboard JSON model the test checks.
type dashboard struct {
	Title         string  `json:"title"`
	UID           string  `json:"uid"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name string `json:"name"`
			Type string `json:"type"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
		RefID        string `json:"refId"`
	} `json:"targets"`
}

// servedSeries scrapes the registry and returns, per banner metric, the
// label names its series carry.
func servedSeries(t *testing.T) map[string]map[string]bool {
	t.Helper()
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
	out := map[string]map[string]bool{}
	series := regexp.MustCompile(`(?m)^(banner_\w+)(?:\{([^}]*)\})? `)
	label := regexp.MustCompile(`(\w+)="`)
	for _, m := range series.FindAllStringSubmatch(string(body), -1) {
		if out[m[1]] == nil {
			out[m[1]] = map[string]bool{}
		}
		for _, l := range label.FindAllStringSubmatch(m[2], -1) {
			out[m[1]][l[1]] = true
		}
	}
	return out
}

// TestGrafanaDashboard checks conf/grafana/banner.json: Grafana's dashboard
// model (title, uid, schema version, unique panel ids, a 24-column grid
// without overlaps, a Prometheus data source on every query panel), and
// that every expression names metrics banner serves and groups and labels
// them only by labels those metrics have. No Grafana runs here (it is not
// packaged for Debian); this is the structural check.
func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile("../../conf/grafana/banner.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("not JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" || d.SchemaVersion < 30 || len(d.Panels) == 0 {
		t.Fatalf("title %q uid %q schemaVersion %d panels %d: want all set (schemaVersion >= 30)", d.Title, d.UID, d.SchemaVersion, len(d.Panels))
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct {
		Name string `json:"name"`
		Type string `json:"type"`
	}) bool {
		return v.Name == "DS_PROMETHEUS" && v.Type == "datasource"
	}) {
		t.Error("no DS_PROMETHEUS datasource variable")
	}
	served := servedSeries(t)
	metricRE := regexp.MustCompile(`\bbanner_\w+`)
	byRE := regexp.MustCompile(`\bby \(([^)]*)\)`)
	legendRE := regexp.MustCompile(`\{\{(\w+)\}\}`)
	ids := map[int]bool{}
	type rect struct{ x, y, w, h int }
	var rects []rect
	used := map[string]bool{}
	for _, p := range d.Panels {
		name := p.Type + " " + p.Title
		if ids[p.ID] || p.ID <= 0 {
			t.Errorf("%s: id %d not unique and positive", name, p.ID)
		}
		ids[p.ID] = true
		g := p.GridPos
		if g.W < 1 || g.H < 1 || g.X < 0 || g.Y < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v outside the 24-column grid", name, g)
		}
		r := rect{g.X, g.Y, g.W, g.H}
		for _, o := range rects {
			if r.x < o.x+o.w && o.x < r.x+r.w && r.y < o.y+o.h && o.y < r.y+r.h {
				t.Errorf("%s: gridPos %+v overlaps another panel %+v", name, g, o)
			}
		}
		rects = append(rects, r)
		if p.Type == "row" {
			continue
		}
		if p.Title == "" || p.Datasource == nil || p.Datasource.Type != "prometheus" || len(p.Targets) == 0 {
			t.Errorf("%s: want a title, a prometheus datasource and targets", name)
			continue
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: refId %q empty or repeated", name, tg.RefID)
			}
			refs[tg.RefID] = true
			if strings.Count(tg.Expr, "(") != strings.Count(tg.Expr, ")") {
				t.Errorf("%s: unbalanced parentheses in %s", name, tg.Expr)
			}
			metrics := metricRE.FindAllString(tg.Expr, -1)
			if len(metrics) == 0 {
				t.Errorf("%s: %q names no banner metric", name, tg.Expr)
			}
			labels := map[string]bool{}
			for _, m := range metrics {
				used[m] = true
				ls, ok := served[m]
				if !ok {
					t.Errorf("%s: %s is not a metric banner serves", name, m)
					continue
				}
				for l := range ls {
					labels[l] = true
				}
			}
			for _, m := range byRE.FindAllStringSubmatch(tg.Expr, -1) {
				for _, l := range strings.Split(m[1], ",") {
					if l = strings.TrimSpace(l); l != "" && !labels[l] {
						t.Errorf("%s: groups by %q, which %v do not have", name, l, metrics)
					}
				}
			}
			for _, m := range legendRE.FindAllStringSubmatch(tg.LegendFormat, -1) {
				if !labels[m[1]] {
					t.Errorf("%s: legend uses {{%s}}, which %v do not have", name, m[1], metrics)
				}
			}
		}
	}
	// The panels the issue asks for.
	for _, m := range []string{"banner_policy_requests_total", "banner_bans_by_kind_total", "banner_dnsbl_cache_hits_total",
		"banner_dnsbl_zone_down", "banner_reconcile_repairs_total", "banner_firewall_hook_repairs_total", "banner_log_lines_total",
		"banner_dnsbl_query_duration_seconds_bucket", "banner_log_lag_seconds", "banner_fleet_lag_seconds", "banner_fleet_messages_total"} {
		if !used[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
	var unused []string
	for m := range served {
		if !used[m] {
			unused = append(unused, m)
		}
	}
	slices.Sort(unused)
	t.Logf("%d panels; metrics on no panel: %v", len(d.Panels), unused)
}

// TestGrafanaDashboardSchema decodes conf/grafana/banner.json with the
// strict decoder of Grafana's own schema (grafana-foundation-sdk, generated
// from the dashboard and panel-plugin schemas Grafana validates against):
// no unknown field anywhere, every required field present, every value of
// its type, each panel's options those of its plugin; then the schema's
// own Validate. __inputs and __requires are left out first: they belong to
// the export format (Dashboards, Import reads and drops them), not to the
// dashboard model.
func TestGrafanaDashboardSchema(t *testing.T) {
	data, err := os.ReadFile("../../conf/grafana/banner.json")
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		t.Fatal(err)
	}
	if fields["__inputs"] == nil || fields["__requires"] == nil {
		t.Error("no __inputs or __requires: Import would not ask for the Prometheus data source")
	}
	delete(fields, "__inputs")
	delete(fields, "__requires")
	model, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	plugins.RegisterDefaultPlugins()
	// The v1 schema is the JSON model Grafana's Import page and file
	// provisioning take; v2 is a different format.
	//lint:ignore SA1019 banner.json is a v1 dashboard
	var d grafana.Dashboard
	if err := schemaErr(d.UnmarshalJSONStrict(model)); err != nil {
		t.Fatalf("not Grafana's dashboard schema:\n%v", err)
	}
	if err := schemaErr(d.Validate()); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if len(d.Panels) < 30 {
		t.Errorf("only %d panels decoded", len(d.Panels))
	}
}

// schemaErr returns err unless it is an empty cog.BuildErrors: the SDK's
// decoder returns its (nil) list of errors as a non-nil error.
func schemaErr(err error) error {
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}
