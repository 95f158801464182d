package firewall

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// TestFirewallLocks: the lock on a chain or set is held once per network
// namespace, and free again when released.
func TestFirewallLocks(t *testing.T) {
	id := fmt.Sprintf("TEST-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	fc := func(backend, chain, set4, set6 string, v6 bool) Config {
		return Config{Backend: backend, Chain: chain, Set4: set4, Set6: set6, IPv6: v6}
	}
	first := fc(BackendIPSet, id, id+"-4", id+"-6", true)
	held, err := Lock(first)
	if err != nil {
		t.Fatal(err)
	}
	if held.Held() != 3 {
		t.Errorf("ipset backend with IPv6 holds %d locks, want 3 (chain, set4, set6)", held.Held())
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // "" means the lock is free
	}{
		{"same chain", fc(BackendIPTables, id, "", "", true), "another banner daemon (or teardown) manages chain " + id + " in this network namespace"},
		{"same set4, other chain", fc(BackendIPSet, id+"-x", id+"-4", id+"-y", true), "manages set " + id + "-4"},
		{"same set6, other chain", fc(BackendIPSet, id+"-x", id+"-y", id+"-6", true), "manages set " + id + "-6"},
		{"same set6 name but IPv6 off", fc(BackendIPSet, id+"-x", id+"-y", id+"-6", false), ""},
		{"none backend", fc(BackendNone, id, id+"-4", id+"-6", true), ""},
		{"other chain and sets", fc(BackendIPSet, id+"-x", id+"-y", id+"-z", true), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Lock(tc.cfg)
			got.Release()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("lock refused: %v", err)
			case tc.want != "" && (!errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// A refused attempt releases what it took before the conflict: the
	// free chain of "same set4, other chain" can be locked again.
	if again, err := Lock(fc(BackendIPTables, id+"-x", "", "", true)); err != nil {
		t.Errorf("chain left locked by a refused attempt: %v", err)
	} else {
		again.Release()
	}
	held.Release()
	held.Release() // harmless
	again, err := Lock(first)
	if err != nil {
		t.Fatalf("locks after release: %v", err)
	}
	again.Release()
}
