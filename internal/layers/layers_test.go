package layers

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/banner-mta/banner"

// layer of every package of the module (by its directory), lowest first.
// A package may import only packages of a strictly lower layer. DESIGN.md
// draws the same table; a new package needs a line here.
var layer = map[string]int{
	// 0: the vocabulary, importing no project package.
	"banner": 0,
	// 1: one job each, knowing only the vocabulary.
	"policyd":           1,
	"dnsbl":             1,
	"banner/store":      1,
	"banner/firewall":   1,
	"banner/ownnets":    1,
	"banner/recipients": 1,
	"banner/control":    1,
	"banner/follow":     1,
	"banner/fleet":      1,
	"banner/fcrdns":     1,
	"banner/dnslist":    1,
	"banner/blocklist":  1,
	// 2: sources and the decision, over layer 1.
	"banner/logwatch": 2,
	"banner/policy":   2,
	"banner/engine":   2,
	// 3: what reads every part: the file format, the metrics.
	"banner/config":  3,
	"banner/metrics": 3,
	// 4: the one composition root.
	"banner/daemon": 4,
	// 5: commands: flags and printing.
	"cmd/banner":     5,
	"cmd/policyload": 5,
	"cmd/mailloggen": 5,
}

// testSupport are the internal packages for tests only: no production code
// imports them.
var testSupport = map[string]bool{
	"internal/testenv":     true,
	"internal/dnstest":     true,
	"internal/postfixtest": true,
	"internal/journaltest": true,
	"internal/vethtest":    true,
	"internal/layers":      true,
	"packaging":            true,
}

// forbidden lists modules a package must not depend on even indirectly: the
// policy decision and the log watcher stay free of the store and firewall
// libraries.
var forbidden = map[string][]string{
	"banner/policy":   {"go.etcd.io/bbolt", "github.com/coreos/go-iptables", "github.com/redis/go-redis/v9"},
	"banner/logwatch": {"go.etcd.io/bbolt", "github.com/coreos/go-iptables", "github.com/redis/go-redis/v9"},
	"banner/follow":   {"go.etcd.io/bbolt", "github.com/coreos/go-iptables"},
	"banner":          {"go.etcd.io/bbolt", "github.com/coreos/go-iptables"},
}

// imports returns, per package directory of the module, what its non-test
// files import.
func imports(t *testing.T, root string) map[string]map[string]bool {
	t.Helper()
	out := map[string]map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		dir, _ := filepath.Rel(root, filepath.Dir(path))
		dir = filepath.ToSlash(dir)
		if out[dir] == nil {
			out[dir] = map[string]bool{}
		}
		for _, im := range f.Imports {
			out[dir][strings.Trim(im.Path.Value, `"`)] = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestImportLayers(t *testing.T) {
	root := filepath.Join("..", "..")
	all := imports(t, root)
	var dirs []string
	for d := range all {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	for _, dir := range dirs {
		from, known := layer[dir]
		if !known && !testSupport[dir] {
			t.Errorf("package %s has no layer: add it to this test and to DESIGN.md", dir)
			continue
		}
		for im := range all[dir] {
			rel, ok := strings.CutPrefix(im, module+"/")
			if im == module {
				rel, ok = "banner", false
				t.Errorf("%s imports the module root %q, which is not a package", dir, im)
			}
			if !ok {
				continue
			}
			if testSupport[rel] {
				if !testSupport[dir] {
					t.Errorf("%s (production code) imports the test support package %s", dir, rel)
				}
				continue
			}
			to, known := layer[rel]
			if !known {
				continue // reported as a package without a layer
			}
			if testSupport[dir] {
				continue
			}
			if to >= from {
				t.Errorf("%s (layer %d) imports %s (layer %d): a package imports only lower layers", dir, from, rel, to)
			}
		}
	}
	// Indirect dependencies: follow the module's own imports.
	for dir, bad := range forbidden {
		seen := map[string]bool{}
		var walk func(d string) []string
		walk = func(d string) []string {
			if seen[d] {
				return nil
			}
			seen[d] = true
			var ext []string
			for im := range all[d] {
				if rel, ok := strings.CutPrefix(im, module+"/"); ok {
					ext = append(ext, walk(rel)...)
				} else {
					ext = append(ext, im)
				}
			}
			return ext
		}
		for _, im := range walk(dir) {
			for _, b := range bad {
				if strings.HasPrefix(im, b) {
					t.Errorf("%s depends on %s (through the module's imports): it must not", dir, im)
				}
			}
		}
	}
}
