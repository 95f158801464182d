package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestUnitStartsBeforePostfix: the shipped unit orders banner before the
// unit that really runs Postfix on Debian and Ubuntu, the instance
// postfix@-.service (postfix.service only starts it), and before
// postfix.service for distributions without instances.
func TestUnitStartsBeforePostfix(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "..", "conf", "banner.service"))
	if err != nil {
		t.Fatal(err)
	}
	var before []string
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Before="); ok {
			before = append(before, strings.Fields(v)...)
		}
	}
	for _, want := range []string{"postfix.service", "postfix@-.service"} {
		if !slices.Contains(before, want) {
			t.Errorf("conf/banner.service: Before= %v lacks %s", before, want)
		}
	}
}
