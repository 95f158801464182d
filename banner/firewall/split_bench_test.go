package firewall

import (
	"net/netip"
	"testing"
	"time"
)

// BenchmarkSplit100k: normalizing, de-duplicating and sorting by family a
// batch of 100,000 entries (every Add and Replace of a bulk ban or a
// restore does it once).
func BenchmarkSplit100k(b *testing.B) {
	es := make([]Entry, 100_000)
	for i := range es {
		es[i] = Entry{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32), Timeout: time.Hour}
	}
	b.ReportAllocs()
	for b.Loop() {
		if got := split(es, true); len(got.v4) != len(es) {
			b.Fatal(len(got.v4))
		}
	}
}
