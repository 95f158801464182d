package firewall

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func FuzzParseIPSetSave(f *testing.F) {
	f.Add("create banner4 hash:net family inet hashsize 1024 maxelem 1048576 timeout 0\nadd banner4 10.0.0.1 timeout 27\nadd banner4 10.1.0.0/16 timeout 0\n")
	f.Add("add banner4 2001:db8::/64 timeout 0 nomatch\nadd banner4 192.0.2.7 comment \"x y\" timeout 5\n")
	f.Add("add banner4 ::ffff:1.2.3.4 timeout 4294967296\nadd banner4 0.0.0.0/0\nadd banner4")
	f.Fuzz(func(t *testing.T, s string) {
		es, err := parseIPSetSave([]byte(s), "banner4")
		if err != nil {
			return
		}
		// Every entry is canonical and survives a round trip through the
		// form Add writes.
		var b strings.Builder
		for _, e := range es {
			if p, err := normalize(e.Prefix); err != nil || p != e.Prefix {
				t.Fatalf("entry %v not canonical (%v, %v)", e, p, err)
			}
			if e.Timeout < 0 {
				t.Fatalf("negative timeout in %v", e)
			}
			fmt.Fprintf(&b, "add banner4 %s timeout %d\n", ipsetElem(e.Prefix), ipsetTimeout(e.Timeout))
		}
		want := slices.Clone(es)
		for i := range want { // Add caps timeouts the kernel would refuse
			want[i].Timeout = min(want[i].Timeout, MaxIPSetTimeout*time.Second)
		}
		again, err := parseIPSetSave([]byte(b.String()), "banner4")
		if err != nil || !slices.Equal(again, want) {
			t.Fatalf("round trip: %v, %v; want %v", again, err, want)
		}
	})
}

func FuzzSplitWords(f *testing.F) {
	f.Add(`-A INPUT -p tcp -m multiport --dports 25 -j BANNER`)
	f.Add(`-A INPUT -m comment --comment "a \"b\" c" -j BANNER`)
	f.Add(`-A INPUT -m comment --comment "unterminated`)
	f.Fuzz(func(t *testing.T, s string) {
		w := splitWords(s)
		if !strings.ContainsAny(s, "\"\\") {
			if want := strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '\t' }); !slices.Equal(w, want) {
				t.Fatalf("splitWords(%q) = %q, want %q", s, w, want)
			}
		}
		_ = jumpsTo(w, "BANNER")
		_, _ = dropSource(w)
	})
}
