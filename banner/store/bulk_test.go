package store

import (
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// BenchmarkApply100k: one transaction storing 100,000 bans, as a bulk
// ban of 100,000 addresses writes them (the bans of the round before
// deleted in one transaction, untimed), on the file system of the test's
// temporary directory, fsync included; with a history record each
// ("+history", as an expiry of as many writes them), and without (a new
// ban's history is its ban record until the ban ends).
func BenchmarkApply100k(b *testing.B) {
	b.Run("bans", func(b *testing.B) { benchApply100k(b, false) })
	b.Run("bans+history", func(b *testing.B) { benchApply100k(b, true) })
}

func benchApply100k(b *testing.B, withHist bool) {
	st, err := Open(filepath.Join(b.TempDir(), "banner.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	const n = 100000
	now := time.Now()
	round := 0
	for b.Loop() {
		b.StopTimer()
		round++
		bans := make([]Ban, n)
		hist := make([]History, n)
		del := make([]netip.Prefix, n)
		for i := range bans {
			v := uint32(round)<<20 | uint32(i)
			p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(v >> 16), byte(v >> 8), byte(v)}), 32)
			bans[i] = Ban{Prefix: p, Since: now, Until: now.Add(time.Hour), Count: 1, Reason: "bench", Source: "cli", Kind: "manual"}
			hist[i] = History{Prefix: p, Count: 1, LastEnd: now.Add(time.Hour)}
			del[i] = p
		}
		// Map order, as the engine hands them over.
		m := make(map[netip.Prefix]int, n)
		for i, x := range bans {
			m[x.Prefix] = i
		}
		bans, hist = bans[:0], hist[:0]
		for p := range m {
			bans = append(bans, Ban{Prefix: p, Since: now, Until: now.Add(time.Hour), Count: 1, Reason: "bench", Source: "cli", Kind: "manual"})
			if withHist {
				hist = append(hist, History{Prefix: p, Count: 1, LastEnd: now.Add(time.Hour)})
			}
		}
		b.StartTimer()
		if err := st.Apply(bans, nil, hist); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := st.Apply(nil, del, nil); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// TestKeyedSorted: keyed hands records out in bytes.Compare order of their
// keys (IPv4 and IPv6, short and long keys, shared first 16 bytes), records
// of one key in the order added.
func TestKeyedSorted(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var ks keyed
	type want struct {
		k string
		n int
	}
	var all []want
	for i := range 5000 {
		var p netip.Prefix
		switch rng.IntN(4) {
		case 0:
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(rng.IntN(3)), byte(rng.IntN(256)), byte(rng.IntN(256))}), 32)
		case 1:
			p = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(rng.IntN(256)), byte(rng.IntN(256)), 0, 0}), 16)
		case 2:
			var a [16]byte
			a[0], a[1], a[2], a[3] = 0x20, 0x01, 0x0d, 0xb8
			a[4], a[5], a[15] = byte(rng.IntN(3)), byte(rng.IntN(256)), byte(rng.IntN(256))
			p = netip.PrefixFrom(netip.AddrFrom16(a), 128)
		default:
			if len(all) == 0 {
				continue
			}
			p = netip.MustParsePrefix(all[rng.IntN(len(all))].k) // a duplicate
		}
		p = p.Masked()
		if err := ks.key(p); err != nil {
			t.Fatal(err)
		}
		ks.buf = append(ks.buf, byte(i), byte(i>>8))
		ks.end(true)
		all = append(all, want{p.String(), i})
	}
	slices.SortStableFunc(all, func(x, y want) int { return strings.Compare(x.k, y.k) })
	got := ks.sorted()
	if len(got) != len(all) {
		t.Fatalf("%d records, want %d", len(got), len(all))
	}
	for i, w := range all {
		if string(got[i].k) != w.k || int(got[i].v[0])|int(got[i].v[1])<<8 != w.n&0xffff {
			t.Fatalf("record %d: %s #%d, want %s #%d", i, got[i].k, int(got[i].v[0])|int(got[i].v[1])<<8, w.k, w.n)
		}
	}
}
