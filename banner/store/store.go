// Package store persists banner's state in a bbolt file: active bans, the
// escalation history of every banned prefix, and the read positions of the
// log files banner tails. Every write is one bbolt transaction, fsynced on
// commit, so a ban that a write returned for survives a crash.
package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/banner-mta/banner/banner"
	bolterrors "go.etcd.io/bbolt/errors"
)

// initialMmap is the address space the file is first mapped with: bbolt
// remaps as the file grows, and each remap within a write transaction
// copies every node it touched; 64 MiB holds a store of several hundred
// thousand bans without one. It is address space, not memory: only the
// pages read are resident.
const initialMmap = 64 << 20

// LockTimeout is how long Open waits for the file lock held by another
// process before giving up.
const LockTimeout = 2 * time.Second

var (
	bucketBans    = []byte("bans")
	bucketHistory = []byte("history")
	bucketLogPos  = []byte("logpos")
)

// ErrLocked is wrapped by Open's and OpenReadOnly's error when another
// process (a running daemon) holds the file.
var ErrLocked = errors.New("database locked by another banner process")

// ErrCorrupt is wrapped by the errors about records that cannot be decoded.
// The other records are fine: callers use them and log the bad ones.
var ErrCorrupt = errors.New("corrupt record")

// ErrDamaged is wrapped by the errors about a file whose structure is
// broken, not just one record: bbolt refused the file, or reading it
// panicked or faulted on the memory map (a damaged page). Nothing read from
// such a file can be trusted, and the error does not wrap ErrCorrupt: a
// caller must not carry on as if the file held no bans (the engine would
// then lift every ban in the firewall as a stray). The error's text tells
// the admin what to do.
var ErrDamaged = errors.New("store file damaged")

// damaged is the error for a damaged file at path; cause is what bbolt
// returned or panicked with.
func damaged(path string, cause any) error {
	return fmt.Errorf("%w (%v): with banner stopped, move the file aside (mv %s %s.damaged) to start with an empty store; "+
		"banner then lifts the bans now in the firewall (the new store does not hold them, so they are removed as strays), "+
		"forgets the escalation history and reads log files without saved positions", ErrDamaged, cause, path, path)
}

// guard runs f, turning a panic inside bbolt, or a memory fault on its
// memory map (SIGBUS or SIGSEGV on a damaged or truncated file), into an
// error wrapping ErrDamaged instead of a crash. bbolt rolls back the
// transaction f was in as the panic unwinds. Any other panic (a bug in
// banner's own code, such as a nil dereference in a decoder) is no sign of
// a damaged file: it becomes an error carrying the stack, without the
// advice to move the file aside.
func guard(path string, f func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		fault, isFault := r.(interface{ Addr() uintptr })
		switch {
		case isFault && fault.Addr() >= 4096:
			// Not a nil dereference: a fault reading the mapped file,
			// wherever it happened (values are slices of the map).
			err = damaged(path, fmt.Sprintf("memory fault reading the mapped file, is it truncated or unreadable? %v", r))
		case panickedIn("go.etcd.io/bbolt"):
			err = damaged(path, r)
		default:
			err = fmt.Errorf("store: unexpected panic (a bug in banner, not a damaged file; please report it with this stack): %v\n%s", r, debug.Stack())
		}
	}()
	return f()
}

// panickedIn reports whether the function that panicked, as seen from a
// deferred call during the panic, belongs to the package with the given
// import path (or one below it).
func panickedIn(pkg string) bool {
	pc := make([]uintptr, 64)
	frames := runtime.CallersFrames(pc[:runtime.Callers(2, pc)])
	inPanic := false
	for {
		fr, more := frames.Next()
		switch {
		case fr.Function == "runtime.gopanic":
			inPanic = true
		case inPanic && !strings.HasPrefix(fr.Function, "runtime."):
			return strings.HasPrefix(fr.Function, pkg+".") || strings.HasPrefix(fr.Function, pkg+"/")
		}
		if !more {
			return false
		}
	}
}

// view is db.View under guard.
func (s *Store) view(fn func(*bolt.Tx) error) error {
	return guard(s.path, func() error { return s.db.View(fn) })
}

// update is db.Update under guard.
func (s *Store) update(fn func(*bolt.Tx) error) error {
	return guard(s.path, func() error { return s.db.Update(fn) })
}

// openError words an error of bolt.Open for a file already named by the
// caller: without the path os errors repeat, and with a hint when bbolt
// refuses the file as damaged.
func openError(path string, err error) error {
	// bbolt refuses a file shorter than its meta pages, as a copy cut
	// short leaves it, with a plain "file size too small N".
	if errors.Is(err, bolterrors.ErrInvalid) || errors.Is(err, bolterrors.ErrChecksum) ||
		(err != nil && strings.Contains(err.Error(), "file size too small")) {
		return damaged(path, err)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && pe.Path == path {
		return pe.Err
	}
	return err
}

// boltOpen is bolt.Open under guard. A panic in bolt.Open (a damaged
// freelist page) leaves the file open, mapped and locked; the lock is
// released here then (closing the file would not do: the mapping, which
// cannot be undone from here, holds the file open) and the file closed.
func boltOpen(path string, opts bolt.Options) (db *bolt.DB, err error) {
	var f *os.File
	opts.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		var err error
		f, err = os.OpenFile(name, flag, perm)
		return f, err
	}
	err = guard(path, func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &opts)
		return err
	})
	if errors.Is(err, ErrDamaged) && db == nil && f != nil {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}
	return db, err
}

// Store is an open state file. Its methods are safe for concurrent use.
type Store struct {
	db   *bolt.DB
	path string
}

// Ban is one persisted ban. Prefix is canonical (host bits zero).
type Ban struct {
	Prefix netip.Prefix
	Since  time.Time
	Until  time.Time
	Count  int    // this is the Count-th ban of Prefix (escalation level)
	Reason string // human text
	Source string // "policy", "log" or "cli"
	Kind   string // event kind that caused the ban
	// Groups are the firewall port groups the ban closes (banner.Groups);
	// 0, as in records written before groups existed, means the main
	// group.
	Groups uint8
}

// History is the escalation record of a prefix: how many times it has been
// banned and when its last ban ended (or is due to end).
type History struct {
	Prefix  netip.Prefix
	Count   int
	LastEnd time.Time
}

// Open opens (creating if needed) the state file at path. The parent
// directory is created with mode 0700 and the file with mode 0600. If another
// process holds the file, Open fails after LockTimeout.
func Open(path string) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: empty path")
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: %s: creating its directory: %w", path, err)
	}
	// bbolt would take an empty file for a new store, and the engine would
	// then lift every ban in the firewall as a stray. A store bbolt made
	// is never empty (it writes its meta pages at once): this one was
	// truncated, or copied from nothing.
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() == 0 {
		return nil, fmt.Errorf("store: opening %s: %w", path, damaged(path, "the file is empty (0 bytes)"))
	}
	db, err := boltOpen(path, bolt.Options{Timeout: LockTimeout, InitialMmapSize: initialMmap})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s: %w (waited %v): %w", path, ErrLocked, LockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, openError(path, err))
	}
	st := &Store{db: db, path: path}
	err = st.update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketBans, bucketHistory, bucketLogPos} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("creating bucket %s: %w", b, err)
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: initialising %s: %w", path, err)
	}
	return st, nil
}

// OpenReadOnly opens an existing state file for reading only (banner
// teardown, tools). It takes a shared lock, so it waits, up to LockTimeout,
// while a daemon holds the file; it never creates or changes anything.
// Writing through the returned Store fails.
func OpenReadOnly(path string) (*Store, error) {
	if fi, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	} else if fi.IsDir() {
		return nil, fmt.Errorf("store: %s: %w", path, syscall.EISDIR)
	}
	db, err := boltOpen(path, bolt.Options{Timeout: LockTimeout, ReadOnly: true})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("store: %s: %w (waited %v): %w", path, ErrLocked, LockTimeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store: opening %s read-only: %w", path, openError(path, err))
	}
	st := &Store{db: db, path: path}
	err = st.view(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketBans, bucketHistory, bucketLogPos} {
			if tx.Bucket(b) == nil {
				return fmt.Errorf("bucket %s missing: not a banner store", b)
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	return st, nil
}

// Path returns the file name the store was opened with.
func (s *Store) Path() string { return s.path }

// Close closes the file and releases its lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: closing %s: %w", s.path, err)
	}
	return nil
}

// Ban values are binary: a format byte (banFormat), then Since and Until
// as signed varint Unix milliseconds, Count as an unsigned varint, then
// Reason, Source and Kind, each an unsigned varint length and the bytes.
// Format banFormatGroups adds Groups as an unsigned varint at the end; a
// ban of the main group alone is written in format banFormat, as before
// groups existed, so a store of such bans stays readable by an earlier
// banner. Restoring 100k bans has to be quick.
const (
	banFormat       = 1
	banFormatGroups = 2
)

func encodeBan(b Ban) []byte {
	return appendBan(make([]byte, 0, 1+4*binary.MaxVarintLen64+3+len(b.Reason)+len(b.Source)+len(b.Kind)), b)
}

// appendBan appends the value of b to v.
func appendBan(v []byte, b Ban) []byte {
	groups := b.Groups != 0 && b.Groups != 1 // 1: banner.GroupMain
	if groups {
		v = append(v, banFormatGroups)
	} else {
		v = append(v, banFormat)
	}
	v = binary.AppendVarint(v, ms(b.Since))
	v = binary.AppendVarint(v, ms(b.Until))
	v = binary.AppendUvarint(v, uint64(b.Count))
	for _, s := range []string{b.Reason, b.Source, b.Kind} {
		v = binary.AppendUvarint(v, uint64(len(s)))
		v = append(v, s...)
	}
	if groups {
		v = binary.AppendUvarint(v, uint64(b.Groups))
	}
	return v
}

// banDecoder reads the fields of a ban value, remembering the first error.
type banDecoder struct {
	v   []byte
	err error
	in  interner
}

func (d *banDecoder) varint(field string) int64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Varint(d.v)
	if n <= 0 {
		d.err = fmt.Errorf("bad %s", field)
		return 0
	}
	d.v = d.v[n:]
	return x
}

func (d *banDecoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.v)
	if n <= 0 {
		d.err = fmt.Errorf("bad %s", field)
		return 0
	}
	d.v = d.v[n:]
	return x
}

func (d *banDecoder) str(field string) string {
	if d.err != nil {
		return ""
	}
	l, n := binary.Uvarint(d.v)
	if n <= 0 {
		d.err = fmt.Errorf("bad %s length", field)
		return ""
	}
	d.v = d.v[n:]
	if l > uint64(len(d.v)) {
		d.err = fmt.Errorf("%s length %d beyond the value's end", field, l)
		return ""
	}
	s := d.in.str(d.v[:l])
	d.v = d.v[l:]
	return s
}

// History values are binary since format histFormat: the format byte,
// Count as an unsigned varint and LastEnd as signed varint Unix
// milliseconds. Stores written by earlier versions hold JSON objects
// ({"n":COUNT,"e":MS}), told apart by their first byte '{'; they are read
// as they are and rewritten in the binary form when next written.
const histFormat = 1

// appendHistory appends the value of h to v.
func appendHistory(v []byte, h History) []byte {
	v = append(v, histFormat)
	v = binary.AppendUvarint(v, uint64(h.Count))
	return binary.AppendVarint(v, ms(h.LastEnd))
}

// histRecord is the JSON history value of earlier versions.
type histRecord struct {
	Count   int   `json:"n"`
	LastEnd int64 `json:"e"`
}

type posRecord struct {
	Device  uint64 `json:"dev"`
	Inode   uint64 `json:"ino"`
	Offset  int64  `json:"off"`
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime"`            // Unix nanoseconds
	Cursor  string `json:"cursor,omitempty"` // journal cursor
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

func prefixKey(p netip.Prefix) ([]byte, error) {
	if !p.IsValid() {
		return nil, fmt.Errorf("invalid prefix %v", p)
	}
	if p.Masked() != p {
		return nil, fmt.Errorf("prefix %v has host bits set", p)
	}
	return []byte(p.String()), nil
}

func parseKey(k []byte) (netip.Prefix, error) {
	if p, ok := parseKey4(k); ok {
		return p, nil
	}
	p, err := netip.ParsePrefix(string(k))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad key %q: %w", k, err)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("bad key %q: host bits set", k)
	}
	return p, nil
}

// parseKey4 parses a canonical IPv4 key ("198.51.100.0/24": no leading
// zeros, host bits zero) without allocating; ok is false for anything
// else, which parseKey then hands to netip.ParsePrefix.
func parseKey4(k []byte) (netip.Prefix, bool) {
	var a [4]byte
	i := 0
	for n := range 4 {
		v, digits := 0, 0
		for i < len(k) && k[i] >= '0' && k[i] <= '9' {
			if digits > 0 && v == 0 {
				return netip.Prefix{}, false // leading zero
			}
			v = v*10 + int(k[i]-'0')
			digits++
			i++
		}
		if digits == 0 || digits > 3 || v > 255 {
			return netip.Prefix{}, false
		}
		a[n] = byte(v)
		want := byte('.')
		if n == 3 {
			want = '/'
		}
		if i >= len(k) || k[i] != want {
			return netip.Prefix{}, false
		}
		i++
	}
	bits, digits := 0, 0
	for ; i < len(k); i++ {
		if k[i] < '0' || k[i] > '9' || digits == 2 || digits > 0 && bits == 0 {
			return netip.Prefix{}, false
		}
		bits = bits*10 + int(k[i]-'0')
		digits++
	}
	if digits == 0 || bits > 32 {
		return netip.Prefix{}, false
	}
	p := netip.PrefixFrom(netip.AddrFrom4(a), bits)
	if p.Masked() != p {
		return netip.Prefix{}, false
	}
	return p, true
}

// Apply writes a batch in one transaction: it stores (or replaces) the bans
// in put, deletes the bans keyed by del (absent keys are ignored), and stores
// the history records in hist; a history record with Count 0 deletes that
// prefix's record (the history was forgotten). Nothing is written if any
// item is invalid.
func (s *Store) Apply(put []Ban, del []netip.Prefix, hist []History) error {
	return s.ApplyWithPositions(put, del, hist, nil)
}

// ApplyWithPositions is Apply that also saves log read positions (by log
// name) in the same transaction: a position is durable exactly when the
// bans decided from the lines before it are.
func (s *Store) ApplyWithPositions(put []Ban, del []netip.Prefix, hist []History, pos map[string]banner.LogPosition) error {
	return s.applyAll(put, del, hist, pos, Extras{})
}

func (s *Store) applyAll(put []Ban, del []netip.Prefix, hist []History, pos map[string]banner.LogPosition, x Extras) error {
	err := s.update(func(tx *bolt.Tx) error {
		if err := applyExtras(tx, x); err != nil {
			return err
		}
		pb := tx.Bucket(bucketLogPos)
		for name, p := range pos {
			if name == "" || p.Offset < 0 {
				return fmt.Errorf("log position %q: invalid (offset %d)", name, p.Offset)
			}
			v, err := encodePosition(p)
			if err != nil {
				return fmt.Errorf("encoding log position %q: %w", name, err)
			}
			if err := pb.Put([]byte(name), v); err != nil {
				return fmt.Errorf("saving log position %q: %w", name, err)
			}
		}
		bb := tx.Bucket(bucketBans)
		hb := tx.Bucket(bucketHistory)
		// Sorted keys everywhere: putting or deleting in random order
		// shifts bbolt's nodes on every write (quadratic for large
		// batches: 100k records took tens of seconds), in key order it
		// appends to them.
		dk := keyed{recs: make([]keyedRec, 0, len(del))}
		for _, p := range del {
			if err := dk.key(p); err != nil {
				return fmt.Errorf("deleting ban: %w", err)
			}
			dk.end(false)
		}
		for _, k := range dk.sorted() {
			if err := bb.Delete(k.k); err != nil {
				return fmt.Errorf("deleting ban %s: %w", k.k, err)
			}
		}
		// bbolt keeps the values it is given until the commit: each
		// batch of records gets its own buffer.
		bk := keyed{buf: make([]byte, 0, len(put)*(20+banValueSize)), recs: make([]keyedRec, 0, len(put))}
		for _, b := range put {
			if err := bk.key(b.Prefix); err != nil {
				return fmt.Errorf("storing ban: %w", err)
			}
			bk.buf = appendBan(bk.buf, b)
			bk.end(true)
		}
		for _, x := range bk.sorted() {
			if err := bb.Put(x.k, x.v); err != nil {
				return fmt.Errorf("storing ban %s: %w", x.k, err)
			}
		}
		hk := keyed{buf: make([]byte, 0, len(hist)*(20+2*binary.MaxVarintLen64)), recs: make([]keyedRec, 0, len(hist))}
		for _, h := range hist {
			if err := hk.key(h.Prefix); err != nil {
				return fmt.Errorf("storing history: %w", err)
			}
			if h.Count != 0 { // else: delete
				hk.buf = appendHistory(hk.buf, h)
			}
			hk.end(h.Count != 0)
		}
		// Of two records of one prefix the later wins, as before.
		for _, x := range hk.sorted() {
			if x.v == nil {
				if err := hb.Delete(x.k); err != nil {
					return fmt.Errorf("deleting history %s: %w", x.k, err)
				}
				continue
			}
			if err := hb.Put(x.k, x.v); err != nil {
				return fmt.Errorf("storing history %s: %w", x.k, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// banValueSize is about the size of a ban value with short texts, to size
// buffers.
const banValueSize = 40

// keyed collects records (a prefix key and a value, or none for a
// deletion) in one buffer, and hands them out in key order, the order
// bbolt writes fastest.
type keyed struct {
	buf  []byte
	recs []keyedRec
	k0   int
	k1   int
}

type keyedRec struct {
	k0, k1, v1 int
	del        bool
}

// kv is a record in the buffer: v is nil for a deletion.
type kv struct{ k, v []byte }

// key starts a record keyed by p; its value is what the caller appends to
// buf before end.
func (ks *keyed) key(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("invalid prefix %v", p)
	}
	if p.Masked() != p {
		return fmt.Errorf("prefix %v has host bits set", p)
	}
	ks.k0 = len(ks.buf)
	ks.buf = p.AppendTo(ks.buf)
	ks.k1 = len(ks.buf)
	return nil
}

// end ends the record key started: with the value appended since, or a
// deletion.
func (ks *keyed) end(value bool) {
	ks.recs = append(ks.recs, keyedRec{k0: ks.k0, k1: ks.k1, v1: len(ks.buf), del: !value})
}

// sorted returns the records in key order; records of one key in the order
// they were added.
func (ks *keyed) sorted() []kv {
	// Sorted by the keys' first 16 bytes as two numbers (keys hold no
	// zero bytes, so a shorter key padded with zeros sorts as bytes.Compare
	// sorts it), then by the rest and the order added: 24-byte items and
	// mostly comparisons of integers, not of byte slices.
	type item struct {
		h0, h1 uint64
		i      int
	}
	items := make([]item, len(ks.recs))
	for i, r := range ks.recs {
		var h [16]byte
		copy(h[:], ks.buf[r.k0:r.k1])
		items[i] = item{binary.BigEndian.Uint64(h[:8]), binary.BigEndian.Uint64(h[8:]), i}
	}
	slices.SortFunc(items, func(x, y item) int {
		if x.h0 != y.h0 {
			return cmp.Compare(x.h0, y.h0)
		}
		if x.h1 != y.h1 {
			return cmp.Compare(x.h1, y.h1)
		}
		rx, ry := ks.recs[x.i], ks.recs[y.i]
		if rx.k1-rx.k0 > 16 || ry.k1-ry.k0 > 16 {
			if c := bytes.Compare(ks.buf[rx.k0:rx.k1], ks.buf[ry.k0:ry.k1]); c != 0 {
				return c
			}
		}
		return x.i - y.i
	})
	out := make([]kv, len(items))
	for j, it := range items {
		r := ks.recs[it.i]
		out[j].k = ks.buf[r.k0:r.k1:r.k1]
		if !r.del {
			out[j].v = ks.buf[r.k1:r.v1:r.v1]
		}
	}
	return out
}

// PutBans stores bans and their history records in one transaction.
func (s *Store) PutBans(bans []Ban, hist []History) error { return s.Apply(bans, nil, hist) }

// DeleteBans deletes the bans keyed by prefixes in one transaction. Absent
// prefixes are not an error.
func (s *Store) DeleteBans(prefixes []netip.Prefix) error { return s.Apply(nil, prefixes, nil) }

func decodeBan(k, v []byte) (Ban, error) { return decodeBanInterned(k, v, nil) }

// interner hands out one string per distinct byte content, so that 100k
// bans with a few distinct sources, kinds and reasons hold a few strings,
// not 300k. A nil interner allocates every string.
type interner map[string]string

// maxInterned bounds an interner: past it, new texts are allocated as
// they come (reasons can be all different).
const maxInterned = 4096

func (in interner) str(b []byte) string {
	if in == nil {
		return string(b)
	}
	if s, ok := in[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in) < maxInterned {
		in[s] = s
	}
	return s
}

func decodeBanInterned(k, v []byte, in interner) (Ban, error) {
	p, err := parseKey(k)
	if err != nil {
		return Ban{}, fmt.Errorf("ban %w: %w", err, ErrCorrupt)
	}
	if len(v) == 0 || (v[0] != banFormat && v[0] != banFormatGroups) {
		return Ban{}, fmt.Errorf("ban %s: corrupt value %.40q: %w: unknown format", k, v, ErrCorrupt)
	}
	d := banDecoder{v: v[1:], in: in}
	b := Ban{Prefix: p}
	b.Since = fromMS(d.varint("since"))
	b.Until = fromMS(d.varint("until"))
	count := d.uvarint("count")
	b.Reason = d.str("reason")
	b.Source = d.str("source")
	b.Kind = d.str("kind")
	var groups uint64
	if v[0] == banFormatGroups {
		groups = d.uvarint("groups")
	}
	switch {
	case d.err != nil:
	case len(d.v) != 0:
		d.err = fmt.Errorf("%d trailing bytes", len(d.v))
	case b.Until.IsZero():
		d.err = errors.New("missing until")
	case count < 1 || count > math.MaxInt32:
		d.err = fmt.Errorf("count %d out of range", count)
	case groups > math.MaxUint8:
		d.err = fmt.Errorf("groups %d out of range", groups)
	}
	if d.err != nil {
		return Ban{}, fmt.Errorf("ban %s: corrupt value %.40q: %w: %w", k, v, ErrCorrupt, d.err)
	}
	b.Count = int(count)
	b.Groups = uint8(groups)
	return b, nil
}

func decodeHistory(k, v []byte) (History, error) {
	p, err := parseKey(k)
	if err != nil {
		return History{}, fmt.Errorf("history %w: %w", err, ErrCorrupt)
	}
	var r histRecord
	switch {
	case len(v) > 0 && v[0] == histFormat:
		d := banDecoder{v: v[1:]}
		count := d.uvarint("count")
		r.LastEnd = d.varint("last end")
		switch {
		case d.err != nil:
		case len(d.v) != 0:
			d.err = fmt.Errorf("%d trailing bytes", len(d.v))
		case count > math.MaxInt32:
			d.err = fmt.Errorf("count %d out of range", count)
		}
		if d.err != nil {
			return History{}, fmt.Errorf("history %s: corrupt value %.40q: %w: %w", k, v, ErrCorrupt, d.err)
		}
		r.Count = int(count)
	case len(v) > 0 && v[0] == '{': // JSON, from earlier versions
		var j histRecord // apart: r would escape to the heap with it
		if err := json.Unmarshal(v, &j); err != nil {
			return History{}, fmt.Errorf("history %s: corrupt value %.40q: %w: %w", k, v, ErrCorrupt, err)
		}
		r = j
	default:
		return History{}, fmt.Errorf("history %s: corrupt value %.40q: %w: unknown format", k, v, ErrCorrupt)
	}
	if r.Count < 1 {
		return History{}, fmt.Errorf("history %s: corrupt value %.40q: %w: count %d < 1", k, v, ErrCorrupt, r.Count)
	}
	return History{Prefix: p, Count: r.Count, LastEnd: fromMS(r.LastEnd)}, nil
}

// Bans returns every stored ban in key order. A record that cannot be decoded
// is skipped and reported in the returned error (one joined error naming
// each bad key), so callers can use the good records and log the rest.
func (s *Store) Bans() ([]Ban, error) {
	var out []Ban
	var errs []error
	err := s.view(func(tx *bolt.Tx) error {
		var err error
		out, err = readBans(tx.Bucket(bucketBans), interner{}, &errs)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: reading bans: %w", err)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("store: %w", errors.Join(errs...))
	}
	return out, nil
}

// Restore reads what the engine needs at start in one read transaction:
// the escalation records whose last ban ended at or after forgetBefore,
// and every ban, in key order. Records older than that, and corrupt ones,
// are deleted afterwards in one write transaction, only if there are any
// (pruning is lazy: a restart with nothing to forget writes nothing).
// Like Bans, undecodable records are skipped and named in the returned
// error. A failed prune is reported apart, in Restored.PruneErr: it loses
// nothing.
func (s *Store) Restore(forgetBefore time.Time) (Restored, error) {
	return s.RestoreBansFirst(forgetBefore, nil)
}

// RestoreBansFirst is Restore, reading the bans before the history and
// giving them to onBans (if not nil) as soon as they are read, inside the
// read transaction, so that a caller can start on them while the history
// is read. onBans must not keep the slice past Restored's use; it is the
// same as Restored.Bans.
func (s *Store) RestoreBansFirst(forgetBefore time.Time, onBans func([]Ban)) (r Restored, err error) {
	var hist []History
	var bans []Ban
	var errs []error
	var dead [][]byte
	in := interner{}
	err = s.view(func(tx *bolt.Tx) error {
		var err error
		if bans, err = readBans(tx.Bucket(bucketBans), in, &errs); err != nil {
			return err
		}
		if onBans != nil {
			onBans(bans)
		}
		hb := tx.Bucket(bucketHistory)
		hist = make([]History, 0, hb.Stats().KeyN)
		return hb.ForEach(func(k, v []byte) error {
			h, err := decodeHistory(k, v)
			if err != nil {
				errs = append(errs, err)
			}
			if err != nil || h.LastEnd.Before(forgetBefore) {
				dead = append(dead, append([]byte(nil), k...))
				return nil
			}
			hist = append(hist, h)
			return nil
		})
	})
	if err != nil {
		return Restored{}, fmt.Errorf("store: reading bans and history: %w", err)
	}
	r = Restored{Hist: hist, Bans: bans}
	if len(dead) > 0 {
		err = s.update(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketHistory)
			for _, k := range dead {
				if err := b.Delete(k); err != nil {
					return fmt.Errorf("deleting history %s: %w", k, err)
				}
			}
			return nil
		})
		if err != nil {
			r.PruneErr = fmt.Errorf("store: pruning history: %w", err)
		} else {
			r.Pruned = len(dead)
		}
	}
	if len(errs) > 0 {
		return r, fmt.Errorf("store: %w", errors.Join(errs...))
	}
	return r, nil
}

// Restored is what Restore read.
type Restored struct {
	Hist     []History // live escalation records, in key order
	Bans     []Ban     // every ban, live or expired, in key order
	Pruned   int       // history records deleted (forgotten or corrupt)
	PruneErr error     // the prune's failure, if it failed
}

// History returns the escalation record of prefix, and whether there is one.
func (s *Store) History(prefix netip.Prefix) (History, bool, error) {
	k, err := prefixKey(prefix)
	if err != nil {
		return History{}, false, fmt.Errorf("store: history: %w", err)
	}
	var h History
	var found bool
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketHistory).Get(k)
		if v == nil {
			return nil
		}
		found = true
		h, err = decodeHistory(k, v)
		return err
	})
	if err != nil {
		return History{}, false, fmt.Errorf("store: %w", err)
	}
	return h, found, nil
}

// Histories returns every escalation record. Like Bans, undecodable records
// are skipped and named in the returned error.
func (s *Store) Histories() ([]History, error) {
	var out []History
	var errs []error
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHistory).ForEach(func(k, v []byte) error {
			h, err := decodeHistory(k, v)
			if err != nil {
				errs = append(errs, err)
				return nil
			}
			out = append(out, h)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: reading history: %w", err)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("store: %w", errors.Join(errs...))
	}
	return out, nil
}

// PruneHistory deletes the escalation records whose last ban ended before
// the given time, and corrupt records, and returns how many it deleted.
// The records are looked at in a read transaction; the write transaction
// (and its fsync) happens only when there is something to delete.
func (s *Store) PruneHistory(before time.Time) (int, error) {
	var dead [][]byte
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHistory).ForEach(func(k, v []byte) error {
			h, err := decodeHistory(k, v)
			if err != nil || h.LastEnd.Before(before) {
				dead = append(dead, append([]byte(nil), k...))
			}
			return nil
		})
	})
	if err != nil || len(dead) == 0 {
		if err != nil {
			return 0, fmt.Errorf("store: pruning history: %w", err)
		}
		return 0, nil
	}
	err = s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketHistory)
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return fmt.Errorf("deleting history %s: %w", k, err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: pruning history: %w", err)
	}
	return len(dead), nil
}

// LogPosition returns the saved read position of the log file path, and
// whether there is one.
func (s *Store) LogPosition(path string) (banner.LogPosition, bool, error) {
	var p banner.LogPosition
	var found bool
	err := s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketLogPos).Get([]byte(path))
		if v == nil {
			return nil
		}
		var r posRecord
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("log position %q: corrupt value %.40q: %w", path, v, err)
		}
		if r.Offset < 0 {
			return fmt.Errorf("log position %q: corrupt value %.40q: negative offset", path, v)
		}
		found = true
		p = banner.LogPosition{Device: r.Device, Inode: r.Inode, Offset: r.Offset, Size: r.Size, Cursor: r.Cursor}
		if r.ModTime != 0 {
			p.ModTime = time.Unix(0, r.ModTime)
		}
		return nil
	})
	if err != nil {
		return banner.LogPosition{}, false, fmt.Errorf("store: %w", err)
	}
	return p, found, nil
}

// SetLogPosition saves the read position of the log file path.
func (s *Store) SetLogPosition(path string, p banner.LogPosition) error {
	if path == "" {
		return errors.New("store: log position: empty path")
	}
	if p.Offset < 0 {
		return fmt.Errorf("store: log position %q: negative offset %d", path, p.Offset)
	}
	v, err := encodePosition(p)
	if err != nil {
		return fmt.Errorf("store: encoding log position %q: %w", path, err)
	}
	err = s.update(func(tx *bolt.Tx) error { return tx.Bucket(bucketLogPos).Put([]byte(path), v) })
	if err != nil {
		return fmt.Errorf("store: saving log position %q: %w", path, err)
	}
	return nil
}

func encodePosition(p banner.LogPosition) ([]byte, error) {
	r := posRecord{Device: p.Device, Inode: p.Inode, Offset: p.Offset, Size: p.Size, Cursor: p.Cursor}
	if !p.ModTime.IsZero() {
		r.ModTime = p.ModTime.UnixNano()
	}
	return json.Marshal(r)
}

// readBans decodes every ban in b, in key order; undecodable records are
// skipped and their errors appended to errs.
func readBans(b *bolt.Bucket, in interner, errs *[]error) ([]Ban, error) {
	out := make([]Ban, 0, b.Stats().KeyN)
	err := b.ForEach(func(k, v []byte) error {
		ban, err := decodeBanInterned(k, v, in)
		if err != nil {
			*errs = append(*errs, err)
			return nil
		}
		out = append(out, ban)
		return nil
	})
	return out, err
}
