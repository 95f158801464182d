package store

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/banner-mta/banner/banner"
)

func openTemp(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "sub", "banner.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestOpenModesAndLock(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	path := filepath.Join(dir, "banner.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, c := range []struct {
		name string
		want os.FileMode
	}{{dir, 0o700}, {path, 0o600}} {
		fi, err := os.Stat(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != c.want {
			t.Errorf("%s: mode %o, want %o", c.name, got, c.want)
		}
	}
	if testing.Short() {
		return
	}
	// A second open (same process, separate flock) must time out clearly.
	_, err = Open(path)
	if err == nil || !strings.Contains(err.Error(), "locked by another banner process") {
		t.Fatalf("second Open: err = %v, want a lock error", err)
	}
}

func TestBansRoundTrip(t *testing.T) {
	s := openTemp(t)
	now := time.UnixMilli(time.Now().UnixMilli())
	bans := []Ban{
		{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Since: now, Until: now.Add(time.Hour), Count: 1, Reason: "dnsbl", Source: "policy", Kind: "dnsbl"},
		{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Since: now, Until: now.Add(2 * time.Hour), Count: 2, Reason: "manual", Source: "cli", Kind: "manual"},
		{Prefix: netip.MustParsePrefix("2001:db8::/64"), Since: now, Until: now.Add(4 * time.Hour), Count: 3},
	}
	hist := []History{{Prefix: bans[0].Prefix, Count: 1, LastEnd: bans[0].Until}}
	if err := s.PutBans(bans, hist); err != nil {
		t.Fatal(err)
	}
	got, err := s.Bans()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 {
		t.Fatalf("got %d bans, want 3", len(got))
	}
	byPrefix := map[netip.Prefix]Ban{}
	for _, b := range got {
		byPrefix[b.Prefix] = b
	}
	for _, want := range bans {
		g := byPrefix[want.Prefix]
		if !g.Since.Equal(want.Since) || !g.Until.Equal(want.Until) || g.Count != want.Count || g.Reason != want.Reason || g.Source != want.Source || g.Kind != want.Kind {
			t.Errorf("%v: got %+v, want %+v", want.Prefix, g, want)
		}
	}
	h, ok, err := s.History(bans[0].Prefix)
	if err != nil || !ok || h.Count != 1 || !h.LastEnd.Equal(bans[0].Until) {
		t.Errorf("History = %+v, %v, %v", h, ok, err)
	}
	if _, ok, err := s.History(bans[1].Prefix); ok || err != nil {
		t.Errorf("History of unknown prefix = %v, %v", ok, err)
	}
	if err := s.DeleteBans([]netip.Prefix{bans[0].Prefix, netip.MustParsePrefix("192.0.2.1/32")}); err != nil {
		t.Fatal(err)
	}
	got, _ = s.Bans()
	if len(got) != 2 {
		t.Errorf("after delete: %d bans, want 2", len(got))
	}
	n, err := s.PruneHistory(now.Add(2 * time.Hour))
	if err != nil || n != 1 {
		t.Errorf("PruneHistory = %d, %v; want 1", n, err)
	}
}

func TestApplyRejectsBadPrefix(t *testing.T) {
	s := openTemp(t)
	good := Ban{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Until: time.Now().Add(time.Hour), Count: 1}
	for name, p := range map[string]netip.Prefix{
		"zero":      {},
		"host bits": netip.MustParsePrefix("198.51.100.7/24"),
	} {
		t.Run(name, func(t *testing.T) {
			bad := Ban{Prefix: p, Until: time.Now(), Count: 1}
			if err := s.PutBans([]Ban{good, bad}, nil); err == nil {
				t.Fatal("PutBans accepted a bad prefix")
			}
			if got, _ := s.Bans(); len(got) != 0 {
				t.Fatalf("partial write: %v", got)
			}
		})
	}
}

func TestCorruptValues(t *testing.T) {
	tests := []struct {
		name    string
		bucket  []byte
		key     string
		value   string
		wantErr string
	}{
		{"ban not json", bucketBans, "198.51.100.7/32", "\x00\x01garbage", `ban 198.51.100.7/32: corrupt value`},
		{"ban json", bucketBans, "198.51.100.8/32", "{}", `ban 198.51.100.8/32: corrupt value "{}": corrupt record: unknown format`},
		{"ban empty", bucketBans, "198.51.100.8/32", "", `ban 198.51.100.8/32: corrupt value "": corrupt record: unknown format`},
		{"ban truncated", bucketBans, "198.51.100.9/32", "\x01\x02", `ban 198.51.100.9/32: corrupt value "\x01\x02": corrupt record: bad until`},
		{"ban no until", bucketBans, "198.51.100.9/32", "\x01\x02\x00\x01\x00\x00\x00", `missing until`},
		{"ban zero count", bucketBans, "198.51.100.9/32", "\x01\x02\x04\x00\x00\x00\x00", `count 0 out of range`},
		{"ban string beyond end", bucketBans, "198.51.100.9/32", "\x01\x02\x04\x01\x09ab", `reason length 9 beyond the value's end`},
		{"ban trailing bytes", bucketBans, "198.51.100.9/32", "\x01\x02\x04\x01\x00\x00\x00zz", `2 trailing bytes`},
		{"ban bad key", bucketBans, "not-a-prefix", `{"s":1,"u":1,"n":1}`, `ban bad key "not-a-prefix"`},
		{"ban host bits key", bucketBans, "198.51.100.9/24", `{"s":1,"u":1,"n":1}`, `ban bad key "198.51.100.9/24": host bits set`},
		{"history truncated", bucketHistory, "198.51.100.7/32", `{"n":`, `history 198.51.100.7/32: corrupt value`},
		{"history zero count", bucketHistory, "198.51.100.7/32", `{"n":0,"e":5}`, `count 0 < 1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTemp(t)
			good := Ban{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Until: time.Now().Add(time.Hour), Count: 1}
			if err := s.PutBans([]Ban{good}, []History{{Prefix: good.Prefix, Count: 1, LastEnd: good.Until}}); err != nil {
				t.Fatal(err)
			}
			if err := s.db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(tc.bucket).Put([]byte(tc.key), []byte(tc.value))
			}); err != nil {
				t.Fatal(err)
			}
			var err error
			var n int
			if string(tc.bucket) == "bans" {
				var bans []Ban
				bans, err = s.Bans()
				n = len(bans)
			} else {
				var hs []History
				hs, err = s.Histories()
				n = len(hs)
				if p, perr := netip.ParsePrefix(tc.key); perr == nil {
					if _, _, herr := s.History(p); herr == nil || !strings.Contains(herr.Error(), tc.key) {
						t.Errorf("History(%s) err = %v, want one naming the key", tc.key, herr)
					}
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !errors.Is(err, ErrCorrupt) {
				t.Errorf("err = %v, want it to contain %q", err, tc.wantErr)
			}
			if n != 1 {
				t.Errorf("got %d good records, want 1 (the good one survives)", n)
			}
		})
	}
	t.Run("log position", func(t *testing.T) {
		s := openTemp(t)
		if err := s.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketLogPos).Put([]byte("/var/log/mail.log"), []byte("[1,2"))
		}); err != nil {
			t.Fatal(err)
		}
		_, _, err := s.LogPosition("/var/log/mail.log")
		if err == nil || !strings.Contains(err.Error(), `"/var/log/mail.log": corrupt value`) {
			t.Errorf("err = %v", err)
		}
	})
}

func TestLogPosition(t *testing.T) {
	s := openTemp(t)
	if _, ok, err := s.LogPosition("/var/log/mail.log"); ok || err != nil {
		t.Fatalf("empty store: %v, %v", ok, err)
	}
	want := banner.LogPosition{Device: 2049, Inode: 1234567, Offset: 4096, Size: 8192, ModTime: time.Unix(1700000000, 123)}
	if err := s.SetLogPosition("/var/log/mail.log", want); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.LogPosition("/var/log/mail.log")
	if err != nil || !ok || got.Device != want.Device || got.Inode != want.Inode || got.Offset != want.Offset || got.Size != want.Size || !got.ModTime.Equal(want.ModTime) {
		t.Fatalf("LogPosition = %+v, %v, %v; want %+v", got, ok, err, want)
	}
	if err := s.SetLogPosition("x", banner.LogPosition{Offset: -1}); err == nil {
		t.Error("negative offset accepted")
	}
	// A journal source's position is its cursor.
	jc := banner.LogPosition{Cursor: "s=1a;i=2b;b=3c;m=4d;t=5e;x=6f"}
	if err := s.ApplyWithPositions(nil, nil, nil, map[string]banner.LogPosition{"journal": jc}); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := s.LogPosition("journal"); err != nil || !ok || got != jc {
		t.Fatalf("journal cursor = %+v, %v, %v; want %+v", got, ok, err, jc)
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "banner.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b := Ban{Prefix: netip.MustParsePrefix("198.51.100.7/32"), Until: time.Now().Add(time.Hour), Count: 1}
	if err := s.PutBans([]Ban{b}, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := s.Bans()
	if err != nil || len(got) != 1 || got[0].Prefix != b.Prefix {
		t.Fatalf("after reopen: %v, %v", got, err)
	}
}

func FuzzDecodeBan(f *testing.F) {
	f.Add([]byte("198.51.100.7/32"), encodeBan(Ban{Since: time.UnixMilli(1), Until: time.UnixMilli(2), Count: 3, Reason: "r", Source: "log", Kind: "pattern"}))
	f.Add([]byte("2001:db8::/64"), []byte("\x01\x02\x04\x01\x09ab"))
	f.Add([]byte("x"), []byte("{}"))
	f.Fuzz(func(t *testing.T, k, v []byte) {
		b, err := decodeBan(k, v)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v does not wrap ErrCorrupt", err)
			}
			return
		}
		// A value that decodes survives a round trip.
		b2, err := decodeBan(k, encodeBan(b))
		if err != nil || b2 != b {
			t.Fatalf("round trip of %q: %+v, %v; want %+v", v, b2, err, b)
		}
	})
}

// TestOpenReadOnly: reads what a writer stored, writes nothing, waits for
// the writer's lock, and refuses files that are not stores.
func TestOpenReadOnly(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "banner.db")
	if _, err := OpenReadOnly(path); err == nil {
		t.Fatal("OpenReadOnly created or accepted a missing file")
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("OpenReadOnly created the file")
	}
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b := Ban{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Since: time.Unix(1000, 0), Until: time.Unix(2000, 0), Count: 1, Reason: "x", Source: "cli"}
	if err := w.PutBans([]Ban{b}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenReadOnly(path); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Errorf("OpenReadOnly while a writer holds the file: %v, want a lock error", err)
	}
	w.Close()
	r, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got, err := r.Bans(); err != nil || len(got) != 1 || got[0].Prefix != b.Prefix {
		t.Errorf("Bans() = %v, %v", got, err)
	}
	if err := r.PutBans([]Ban{b}, nil); err == nil {
		t.Error("write through a read-only store succeeded")
	}
	other := filepath.Join(dir, "other.db")
	os.WriteFile(other, []byte("not a database"), 0o600)
	if _, err := OpenReadOnly(other); err == nil {
		t.Error("a non-database file was accepted")
	}
}

// TestEmptyFileIsDamaged: a 0-byte store file (truncated, or copied from
// nothing) is refused as damaged rather than taken for a new store, which
// would lift every ban in the firewall as a stray.
func TestEmptyFileIsDamaged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "banner.db")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	st, err := Open(path)
	if err == nil {
		st.Close()
		t.Fatal("Open took an empty file for a new store")
	}
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("Open of an empty file: %v, want ErrDamaged saying it is empty", err)
	}
}

// TestLockedIsErrLocked: a store held by another process gives ErrLocked.
func TestLockedIsErrLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "banner.db")
	st, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if testing.Short() {
		t.Skip("waits LockTimeout")
	}
	if _, err := OpenReadOnly(path); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}
