package store

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/banner-mta/banner/banner"
)

// storeLayout is a closed store file and where its pages are.
type storeLayout struct {
	path      string
	pageSize  int
	pages     int     // pages in use (the high water mark)
	rootPage  int     // leaf holding the bucket headers
	bansRoot  int     // root page of the bans bucket (a branch)
	hist      History // one of the stored history records
	bansCount int     // how many bans were stored
	pageTypes map[int]string
}

// writeLayout writes a store with enough bans for the bans bucket to span a
// branch page and many leaves, closes it and returns its layout.
func writeLayout(t *testing.T) storeLayout {
	t.Helper()
	path := filepath.Join(t.TempDir(), "banner.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	now := time.UnixMilli(1_700_000_000_000)
	var bans []Ban
	var hist []History
	for i := range 2000 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), 32)
		bans = append(bans, Ban{Prefix: p, Since: now, Until: now.Add(time.Hour), Count: 1, Reason: "test ban", Source: "cli", Kind: "manual"})
		if i < 10 {
			hist = append(hist, History{Prefix: p, Count: 1, LastEnd: now.Add(time.Hour)})
		}
	}
	if err := s.PutBans(bans, hist); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	l := storeLayout{path: path, hist: hist[0], bansCount: len(bans), pageTypes: map[int]string{}}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l.pageSize = db.Info().PageSize
	err = db.View(func(tx *bolt.Tx) error {
		l.rootPage = int(tx.Cursor().Bucket().Root())
		l.bansRoot = int(tx.Bucket(bucketBans).Root())
		for id := 0; ; id++ {
			info, err := tx.Page(id)
			if err != nil {
				return err
			}
			if info == nil {
				l.pages = id
				return nil
			}
			l.pageTypes[id] = info.Type
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if l.pageTypes[l.bansRoot] != "branch" || l.pageTypes[l.rootPage] != "leaf" || l.bansRoot < 2 || l.rootPage < 2 {
		t.Fatalf("unexpected layout: root page %d, bans root %d, pages %v", l.rootPage, l.bansRoot, l.pageTypes)
	}
	return l
}

// smash overwrites whole pages with a byte pattern. Every page bbolt
// reads is checked against its own id first, so the damage is found (and
// bbolt panics) the same way on every run.
func smash(t *testing.T, l storeLayout, ids ...int) {
	t.Helper()
	f, err := os.OpenFile(l.path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := bytes.Repeat([]byte{0xa5}, l.pageSize)
	for _, id := range ids {
		if id < 2 {
			t.Fatalf("page %d is a meta page", id)
		}
		if _, err := f.WriteAt(junk, int64(id*l.pageSize)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// checkDamaged checks that err is the damaged-file error: it wraps
// ErrDamaged (and not ErrCorrupt, which callers skip past) and tells the
// admin to move the file aside.
func checkDamaged(t *testing.T, what string, err error, path string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: no error", what)
	}
	if !errors.Is(err, ErrDamaged) || errors.Is(err, ErrCorrupt) {
		t.Errorf("%s: %v: want ErrDamaged, not ErrCorrupt", what, err)
	}
	msg := err.Error()
	if want := fmt.Sprintf("mv %s %s.damaged", path, path); !strings.Contains(msg, want) {
		t.Errorf("%s: %q does not say %q", what, msg, want)
	}
	if strings.Contains(msg, "store: store:") {
		t.Errorf("%s: doubled prefix in %q", what, msg)
	}
}

// TestDamagedBansBucket: a broken page under the bans bucket leaves Open
// and the other buckets working; reading or writing bans is an error, not
// a panic.
func TestDamagedBansBucket(t *testing.T) {
	l := writeLayout(t)
	smash(t, l, l.bansRoot)
	s, err := Open(l.path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	bans, err := s.Bans()
	checkDamaged(t, "Bans", err, l.path)
	if bans != nil {
		t.Errorf("Bans returned %d bans from a damaged bucket", len(bans))
	}
	if !strings.HasPrefix(err.Error(), "store: reading bans: store file damaged (") {
		t.Errorf("Bans: %q", err)
	}
	err = s.PutBans([]Ban{{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Until: time.Now().Add(time.Hour), Count: 1}}, nil)
	checkDamaged(t, "PutBans", err, l.path)
	// The history bucket is intact.
	hs, err := s.Histories()
	if err != nil || len(hs) != 10 {
		t.Errorf("Histories = %d records, %v; want 10, nil", len(hs), err)
	}
	if h, ok, err := s.History(l.hist.Prefix); err != nil || !ok || h.Count != 1 {
		t.Errorf("History = %v, %v, %v", h, ok, err)
	}
	if err := s.SetLogPosition("/var/log/mail.log", banner.LogPosition{Offset: 7}); err != nil {
		t.Errorf("SetLogPosition after a failed write: %v", err)
	}
}

// TestDamagedFileOpen: a file bbolt cannot even set up is refused by Open
// and OpenReadOnly with the clear error, and the lock is released: a
// second Open reports the damage again instead of timing out on the lock.
func TestDamagedFileOpen(t *testing.T) {
	t.Run("root page", func(t *testing.T) {
		l := writeLayout(t)
		smash(t, l, l.rootPage)
		for i := range 2 {
			_, err := Open(l.path)
			checkDamaged(t, fmt.Sprintf("Open #%d", i+1), err, l.path)
			if err != nil && !strings.HasPrefix(err.Error(), "store: initialising "+l.path+": store file damaged (") {
				t.Errorf("Open: %q", err)
			}
		}
		_, err := OpenReadOnly(l.path)
		checkDamaged(t, "OpenReadOnly", err, l.path)
	})
	t.Run("every page but the meta pages", func(t *testing.T) {
		l := writeLayout(t)
		var all []int
		for id := 2; id < l.pages; id++ {
			all = append(all, id)
		}
		smash(t, l, all...)
		for i := range 2 {
			_, err := Open(l.path)
			checkDamaged(t, fmt.Sprintf("Open #%d", i+1), err, l.path)
			if err != nil && strings.Count(err.Error(), l.path) != 3 { // "opening PATH" and the mv command
				t.Errorf("Open: path not named once (plus the mv command): %q", err)
			}
		}
		_, err := OpenReadOnly(l.path)
		checkDamaged(t, "OpenReadOnly", err, l.path)
	})
	t.Run("not a database", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "banner.db")
		if err := os.WriteFile(path, bytes.Repeat([]byte("not a database\n"), 1000), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Open(path)
		checkDamaged(t, "Open", err, path)
		if err != nil && !strings.Contains(err.Error(), "invalid database") {
			t.Errorf("Open: %q does not carry bbolt's reason", err)
		}
	})
}

// TestTruncatedUnderfoot: the file shrinking under an open store makes
// reads fault on the memory map (SIGBUS); that is an error too, not a
// crash of the whole process.
func TestTruncatedUnderfoot(t *testing.T) {
	l := writeLayout(t)
	s, err := Open(l.path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := os.Truncate(l.path, int64(2*l.pageSize)); err != nil {
		t.Fatal(err)
	}
	_, err = s.Bans()
	checkDamaged(t, "Bans", err, l.path)
	if err != nil && !strings.Contains(err.Error(), "memory fault reading the mapped file") {
		t.Errorf("Bans: %q does not name the fault", err)
	}
	_, err = s.Histories()
	checkDamaged(t, "Histories", err, l.path)
}

// TestOpenErrorNamesPathOnce: os errors carry the path too; Open says it
// once.
func TestOpenErrorNamesPathOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "banner.db")
	if err := os.Mkdir(path, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, open := range map[string]func(string) (*Store, error){"Open": Open, "OpenReadOnly": OpenReadOnly} {
		_, err := open(path)
		if err == nil || strings.Count(err.Error(), path) != 1 || !errors.Is(err, syscall.EISDIR) {
			t.Errorf("%s = %v, want an EISDIR error naming %s once", name, err, path)
		}
	}
}

// TestTruncatedCopy: a file cut short of bbolt's meta pages, as an
// interrupted copy leaves it, is reported as damaged, with the hint.
func TestTruncatedCopy(t *testing.T) {
	for _, size := range []int64{1, 100, 4096, 5000} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			l := writeLayout(t)
			if err := os.Truncate(l.path, size); err != nil {
				t.Fatal(err)
			}
			_, err := Open(l.path)
			checkDamaged(t, "Open", err, l.path)
		})
	}
}

// TestBugIsNotDamage: a panic in banner's own code inside a transaction (a
// decoder's nil dereference, a plain panic) is an error with its stack,
// not ErrDamaged: moving the file aside would lift every ban for nothing.
func TestBugIsNotDamage(t *testing.T) {
	l := writeLayout(t)
	s, err := Open(l.path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, fn := range map[string]func(*bolt.Tx) error{
		"nil dereference": func(*bolt.Tx) error {
			var p *Ban
			_ = p.Prefix
			return nil
		},
		"panic": func(*bolt.Tx) error { panic("decoder bug") },
	} {
		t.Run(name, func(t *testing.T) {
			err := s.view(fn)
			if err == nil || errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), "a bug in banner, not a damaged file") ||
				!strings.Contains(err.Error(), "TestBugIsNotDamage") {
				t.Errorf("got %v; want an unexpected-panic error with the stack, not ErrDamaged", err)
			}
		})
	}
	// The store is still usable.
	if _, err := s.Bans(); err != nil {
		t.Errorf("Bans after a recovered bug: %v", err)
	}
}
