package store

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestHistoryEncodings: history records written by earlier versions
// (JSON) are read by History, Histories and Restore; a record written now
// is binary; rewriting an old record stores it binary.
func TestHistoryEncodings(t *testing.T) {
	s := openTemp(t)
	old := netip.MustParsePrefix("198.51.100.7/32")
	end := time.UnixMilli(1_900_000_000_123)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHistory).Put([]byte(old.String()), []byte(`{"n":3,"e":1900000000123}`))
	}); err != nil {
		t.Fatal(err)
	}
	fresh := History{Prefix: netip.MustParsePrefix("2001:db8::/64"), Count: 2, LastEnd: end}
	if err := s.Apply(nil, nil, []History{fresh}); err != nil {
		t.Fatal(err)
	}
	want := map[netip.Prefix]History{old: {Prefix: old, Count: 3, LastEnd: end}, fresh.Prefix: fresh}
	check := func(what string, hs []History) {
		t.Helper()
		if len(hs) != len(want) {
			t.Fatalf("%s: %d records, want %d", what, len(hs), len(want))
		}
		for _, h := range hs {
			if w := want[h.Prefix]; w.Count != h.Count || !w.LastEnd.Equal(h.LastEnd) {
				t.Errorf("%s: %+v, want %+v", what, h, w)
			}
		}
	}
	hs, err := s.Histories()
	if err != nil {
		t.Fatal(err)
	}
	check("Histories", hs)
	r, err := s.Restore(end.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	check("Restore", r.Hist)
	if h, ok, err := s.History(old); err != nil || !ok || h.Count != 3 {
		t.Errorf("History(old) = %+v, %v, %v", h, ok, err)
	}
	raw := func(p netip.Prefix) []byte {
		var v []byte
		_ = s.db.View(func(tx *bolt.Tx) error {
			v = append(v, tx.Bucket(bucketHistory).Get([]byte(p.String()))...)
			return nil
		})
		return v
	}
	if v := raw(fresh.Prefix); len(v) == 0 || v[0] != histFormat {
		t.Errorf("new record stored as %q, want the binary format", v)
	}
	if err := s.Apply(nil, nil, []History{{Prefix: old, Count: 4, LastEnd: end}}); err != nil {
		t.Fatal(err)
	}
	if v := raw(old); len(v) == 0 || v[0] != histFormat {
		t.Errorf("rewritten old record stored as %q, want the binary format", v)
	}
}

// TestCorruptBinaryHistory: damaged binary history records are reported
// naming their key, skipped, and pruned by Restore.
func TestCorruptBinaryHistory(t *testing.T) {
	for name, tc := range map[string]struct{ value, err string }{
		"truncated":      {"\x01", "bad count"},
		"no last end":    {"\x01\x02", "bad last end"},
		"trailing bytes": {"\x01\x02\x04zz", "2 trailing bytes"},
		"zero count":     {"\x01\x00\x04", "count 0 < 1"},
		"unknown format": {"\x07\x02\x04", "unknown format"},
		"empty":          {"", "unknown format"},
	} {
		t.Run(name, func(t *testing.T) {
			s := openTemp(t)
			good := History{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Count: 1, LastEnd: time.Now()}
			if err := s.Apply(nil, nil, []History{good}); err != nil {
				t.Fatal(err)
			}
			if err := s.db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketHistory).Put([]byte("198.51.100.7/32"), []byte(tc.value))
			}); err != nil {
				t.Fatal(err)
			}
			r, err := s.Restore(time.Now().Add(-time.Hour))
			if err == nil || !strings.Contains(err.Error(), "198.51.100.7/32") || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Restore err = %v, want one naming the key and %q", err, tc.err)
			}
			if len(r.Hist) != 1 || r.Pruned != 1 {
				t.Errorf("Restore: %d records, %d pruned; want 1 and 1", len(r.Hist), r.Pruned)
			}
			if hs, err := s.Histories(); err != nil || len(hs) != 1 {
				t.Errorf("after Restore: %d records, %v; want the good one, no error", len(hs), err)
			}
		})
	}
}

// TestRestorePrunesLazily: Restore returns the live history and every
// ban, deletes the history older than its cutoff, and writes nothing when
// there is nothing to prune; nor does PruneHistory.
func TestRestorePrunesLazily(t *testing.T) {
	s := openTemp(t)
	now := time.Now()
	bans := []Ban{
		{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Since: now, Until: now.Add(time.Hour), Count: 1, Reason: "r", Source: "log", Kind: "pattern"},
		{Prefix: netip.MustParsePrefix("192.0.2.2/32"), Since: now, Until: now.Add(time.Hour), Count: 2, Reason: "r", Source: "log", Kind: "pattern"},
	}
	hist := []History{
		{Prefix: bans[0].Prefix, Count: 1, LastEnd: now.Add(time.Hour)},
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Count: 5, LastEnd: now.Add(-48 * time.Hour)},
	}
	if err := s.PutBans(bans, hist); err != nil {
		t.Fatal(err)
	}
	txID := func() int {
		var id int
		_ = s.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
		return id
	}
	r, err := s.Restore(now.Add(-24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Bans) != 2 || len(r.Hist) != 1 || r.Pruned != 1 || r.PruneErr != nil {
		t.Fatalf("Restore = %d bans, %d history, %d pruned, %v; want 2, 1, 1, nil", len(r.Bans), len(r.Hist), r.Pruned, r.PruneErr)
	}
	if r.Bans[0].Reason != "r" || r.Bans[1].Count != 2 || r.Bans[1].Kind != "pattern" {
		t.Errorf("bans read back as %+v", r.Bans)
	}
	var early []Ban
	rb, err := s.RestoreBansFirst(now.Add(-24*time.Hour), func(b []Ban) { early = slices.Clone(b) })
	if err != nil || !slices.EqualFunc(early, rb.Bans, func(a, b Ban) bool { return a.Prefix == b.Prefix && a.Until.Equal(b.Until) }) || len(early) != 2 || len(rb.Hist) != 1 {
		t.Fatalf("RestoreBansFirst gave %+v early, then %+v, %v", early, rb, err)
	}
	before := txID()
	if r, err = s.Restore(now.Add(-24 * time.Hour)); err != nil || r.Pruned != 0 {
		t.Fatalf("second Restore: %d pruned, %v", r.Pruned, err)
	}
	if after := txID(); after != before {
		t.Errorf("a Restore with nothing to prune wrote (transaction %d -> %d)", before, after)
	}
	if n, err := s.PruneHistory(now.Add(-24 * time.Hour)); err != nil || n != 0 {
		t.Fatalf("PruneHistory = %d, %v; want 0, nil", n, err)
	}
	if after := txID(); after != before {
		t.Errorf("a PruneHistory with nothing to prune wrote (transaction %d -> %d)", before, after)
	}
}

// FuzzParseKey: the allocation-free IPv4 key parser agrees with
// netip.ParsePrefix on every canonical key and accepts nothing else.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"198.51.100.7/32", "0.0.0.0/0", "10.0.0.0/8", "01.2.3.4/32", "1.2.3.4/032", "1.2.3.4/33",
		"256.1.1.1/32", "1.2.3/24", "1.2.3.4", "1.2.3.4/", "198.51.100.7/24", "2001:db8::/64", "1.2.3.4/3x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := parseKey4([]byte(s))
		q, err := netip.ParsePrefix(s)
		canonical := err == nil && q.Addr().Is4() && q.Masked() == q && q.String() == s
		if ok != canonical || ok && p != q {
			t.Fatalf("parseKey4(%q) = %v, %v; netip: %v, %v (canonical %v)", s, p, ok, q, err, canonical)
		}
		if got, err := parseKey([]byte(s)); ok && (err != nil || got != p) {
			t.Fatalf("parseKey(%q) = %v, %v; want %v", s, got, err, p)
		}
	})
}

// BenchmarkRestoreRead: Restore's read of 100k bans and 100k history
// records (one transaction, no prune).
func BenchmarkRestoreRead(b *testing.B) {
	s, err := Open(b.TempDir() + "/banner.db")
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	bans := make([]Ban, 100_000)
	hist := make([]History, len(bans))
	for i := range bans {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
		bans[i] = Ban{Prefix: p, Since: now, Until: now.Add(time.Hour), Count: 1, Reason: "bench", Source: "log", Kind: "pattern"}
		hist[i] = History{Prefix: p, Count: 1, LastEnd: now.Add(time.Hour)}
	}
	if err := s.PutBans(bans, hist); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		r, err := s.Restore(now.Add(-time.Hour))
		if err != nil || len(r.Bans) != len(bans) || len(r.Hist) != len(bans) {
			b.Fatal(len(r.Bans), len(r.Hist), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(len(bans)), "ns/ban")
}

// TestBanGroupsEncoding: a ban's port groups survive the round trip; a
// ban of the main group alone is written in the format of stores before
// groups (readable by an earlier banner), and such records read as group 0
// (the main group).
func TestBanGroupsEncoding(t *testing.T) {
	since := time.Date(2026, 12, 3, 8, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name       string
		groups     uint8
		wantFormat byte
	}{
		{"old record", 0, banFormat},
		{"main", 1, banFormat},
		{"sasl", 2, banFormatGroups},
		{"both", 3, banFormatGroups},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b := Ban{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Since: since, Until: since.Add(time.Hour),
				Count: 2, Reason: "SASL LOGIN authentication failed", Source: "log", Kind: "sasl", Groups: tt.groups}
			v := encodeBan(b)
			if v[0] != tt.wantFormat {
				t.Errorf("format byte %d, want %d", v[0], tt.wantFormat)
			}
			got, err := decodeBan([]byte(b.Prefix.String()), v)
			if err != nil {
				t.Fatal(err)
			}
			want := b
			if want.Groups == 1 {
				want.Groups = 0 // written as an old record
			}
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
				t.Errorf("decoded %+v, want %+v", got, want)
			}
		})
	}
	// A format-1 value with a trailing byte is still corrupt.
	v := append(encodeBan(Ban{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Since: since, Until: since.Add(time.Hour), Count: 1}), 2)
	if _, err := decodeBan([]byte("192.0.2.7/32"), v); !errors.Is(err, ErrCorrupt) {
		t.Errorf("format 1 with a trailing byte: %v, want ErrCorrupt", err)
	}
}
