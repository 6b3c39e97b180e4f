// Package grafana_test keeps deploy/grafana/parley.json honest: every
// metric a panel queries must be one that parley or daprd exposes, and
// every parley metric must have a panel.
package grafana_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/parley-im/parley/app/metrics"
)

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Title  string  `json:"title"`
	UID    string  `json:"uid"`
	Panels []panel `json:"panels"`
	Templ  struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func load(t *testing.T) dashboard {
	t.Helper()
	data, err := os.ReadFile("parley.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("parley.json is not a dashboard: %v", err)
	}
	return d
}

// metricName finds the metric names in a PromQL expression: the
// identifiers with a known prefix, once variables are left out (variable
// drops "$job", whose name is no metric).
var (
	metricName = regexp.MustCompile(`\b(?:parley|dapr|go|process)_[a-zA-Z0-9_]+\b`)
	variable   = regexp.MustCompile(`\$\{?\w+\}?`)
)

func metricNames(expr string) []string {
	return metricName.FindAllString(variable.ReplaceAllString(expr, ""), -1)
}

// queries returns every PromQL expression of the dashboard, panels and
// template variables, each with where it is.
func queries(d dashboard) map[string]string {
	out := map[string]string{}
	for _, p := range d.Panels {
		for i, t := range p.Targets {
			out[p.Title+" #"+string(rune('A'+i))] = t.Expr
		}
	}
	for _, v := range d.Templ.List {
		if v.Type != "query" {
			continue // a datasource or constant variable queries nothing
		}
		switch q := v.Query.(type) {
		case string:
			out["variable "+v.Name] = q
		case map[string]any:
			if s, ok := q["query"].(string); ok {
				out["variable "+v.Name] = s
			}
		}
	}
	return out
}

// parleyFamilies gathers what a parley process's /metrics serves: its own
// metrics and the Go and process collectors, by family name and type.
func parleyFamilies(t *testing.T) map[string]dto.MetricType {
	t.Helper()
	reg := metrics.NewRegistry()
	if _, err := metrics.New(reg); err != nil {
		t.Fatal(err)
	}
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]dto.MetricType{}
	for _, f := range fams {
		out[f.GetName()] = f.GetType()
	}
	return out
}

// daprFamilies reads the metric names daprd defines from the source of
// the github.com/dapr/dapr module in go.mod (pkg/diagnostics), named as its
// Prometheus exporter names them: "component/state/latencies" is
// dapr_component_state_latencies.
func daprFamilies(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/dapr/dapr").Output()
	if err != nil {
		t.Fatalf("find the dapr module: %v", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "pkg", "diagnostics")
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s (is the module downloaded? %v)", dir, err)
	}
	literal := regexp.MustCompile(`"((?:grpc\.io/)?[a-z_]+/[a-z_/]+)"`)
	names := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range literal.FindAllStringSubmatch(string(src), -1) {
			names["dapr_"+strings.NewReplacer(".", "_", "/", "_").Replace(m[1])] = true
		}
	}
	if !names["dapr_grpc_io_server_server_latency"] || !names["dapr_component_state_latencies"] {
		t.Fatalf("read %d metric names from %s, without the ones parley's dashboard is built on", len(names), dir)
	}
	return names
}

func TestEveryMetricTheDashboardNamesExists(t *testing.T) {
	t.Parallel()
	d := load(t)
	parley := parleyFamilies(t)
	dapr := daprFamilies(t)
	histogram := func(name string) bool {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok {
				if typ, found := parley[base]; found && typ == dto.MetricType_HISTOGRAM {
					return true
				}
				if dapr[base] {
					return true
				}
			}
		}
		return false
	}
	seen := map[string]bool{}
	for where, expr := range queries(d) {
		names := metricNames(expr)
		if len(names) == 0 {
			t.Errorf("%s: %q names no metric", where, expr)
		}
		for _, n := range names {
			seen[n] = true
			_, inParley := parley[n]
			if !inParley && !dapr[n] && !histogram(n) {
				t.Errorf("%s: metric %s is exposed neither by parley (app/metrics) nor by daprd", where, n)
			}
		}
	}
	var hasParley, hasDapr bool
	for n := range seen {
		hasParley = hasParley || strings.HasPrefix(n, "parley_")
		hasDapr = hasDapr || strings.HasPrefix(n, "dapr_")
	}
	if !hasParley || !hasDapr {
		t.Errorf("the dashboard shows parley metrics: %v, daprd metrics: %v; want both side by side", hasParley, hasDapr)
	}
}

func TestEveryParleyMetricHasAPanel(t *testing.T) {
	t.Parallel()
	var all strings.Builder
	for _, expr := range queries(load(t)) {
		all.WriteString(expr)
		all.WriteByte('\n')
	}
	shown := metricNames(all.String())
	for _, name := range metrics.Names() {
		if !slices.ContainsFunc(shown, func(s string) bool {
			return s == name || s == name+"_bucket" || s == name+"_sum" || s == name+"_count"
		}) {
			t.Errorf("metric %s has no panel in parley.json", name)
		}
	}
}

func TestPanelsAreWellFormed(t *testing.T) {
	t.Parallel()
	d := load(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard title %q, uid %q: want both set, so that imports replace rather than duplicate", d.Title, d.UID)
	}
	ids := map[int]string{}
	for _, p := range d.Panels {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
	}
}
