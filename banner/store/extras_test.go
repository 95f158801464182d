package store

import (
	"errors"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Good senders and trails are written in the transaction of a batch, read
// back, deleted by zero records, and a bad record is skipped and named.
func TestExtrasRoundTrip(t *testing.T) {
	s := openTemp(t)
	if gs, err := s.GoodSenders(); err != nil || len(gs) != 0 {
		t.Fatalf("a new store has good senders %v, %v", gs, err)
	}
	p1, p2 := netip.MustParsePrefix("192.0.2.1/32"), netip.MustParsePrefix("2001:db8::/64")
	last := time.UnixMilli(time.Now().UnixMilli())
	x := Extras{
		Senders: []GoodSender{{Prefix: p1, Last: last}, {Prefix: p2, Last: last.Add(time.Second)}},
		Trails:  []Trail{{Prefix: p1, Events: []TrailEvent{{Time: last, Source: "log", Kind: "unknown_user", Key: "a@example.test", Outcome: "scored", Weight: 1, Score: 1, Origin: "/var/log/mail.log:10"}}}},
	}
	if err := s.ApplyWithExtras(nil, nil, nil, nil, x); err != nil {
		t.Fatal(err)
	}
	gs, err := s.GoodSenders()
	if err != nil || len(gs) != 2 || !gs[0].Last.Equal(last) && !gs[1].Last.Equal(last) {
		t.Fatalf("good senders %v, %v", gs, err)
	}
	ts, err := s.Trails()
	if err != nil || len(ts) != 1 || ts[0].Prefix != p1 || !ts[0].Events[0].Time.Equal(last) {
		t.Fatalf("trails %+v, %v", ts, err)
	}
	got, want := ts[0].Events[0], x.Trails[0].Events[0]
	got.Time, want.Time = time.Time{}, time.Time{}
	if got != want {
		t.Errorf("trail event read back %+v, want %+v", got, want)
	}
	// Deletions.
	if err := s.ApplyWithExtras(nil, nil, nil, nil, Extras{Senders: []GoodSender{{Prefix: p1}}, Trails: []Trail{{Prefix: p1}}}); err != nil {
		t.Fatal(err)
	}
	if gs, _ := s.GoodSenders(); len(gs) != 1 || gs[0].Prefix != p2 {
		t.Errorf("after deleting %v: %v", p1, gs)
	}
	if ts, _ := s.Trails(); len(ts) != 0 {
		t.Errorf("after deleting the trail: %v", ts)
	}
	// An invalid prefix writes nothing of the batch.
	bad := Extras{Senders: []GoodSender{{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Last: last}, {Prefix: netip.MustParsePrefix("192.0.2.7/24"), Last: last}}}
	if err := s.ApplyWithExtras(nil, nil, nil, nil, bad); err == nil {
		t.Error("a prefix with host bits set was stored")
	}
	if gs, _ := s.GoodSenders(); len(gs) != 1 {
		t.Errorf("a failed batch wrote %v", gs)
	}
	// A corrupt record is skipped and named.
	if err := s.db.Update(func(tx *bolt.Tx) error {
		if err := tx.Bucket(bucketSenders).Put([]byte("192.0.2.9/32"), []byte("xx")); err != nil {
			return err
		}
		return tx.Bucket(bucketTrails).Put([]byte("192.0.2.9/32"), []byte("{"))
	}); err != nil {
		t.Fatal(err)
	}
	if gs, err := s.GoodSenders(); !errors.Is(err, ErrCorrupt) || len(gs) != 1 {
		t.Errorf("corrupt good sender: %v, %v", gs, err)
	}
	if _, err := s.Trails(); !errors.Is(err, ErrCorrupt) {
		t.Errorf("corrupt trail: %v", err)
	}
}

// A store written before the extras existed (no buckets), opened
// read-only, has none and is no error.
func TestExtrasAbsentReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "banner.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	ro, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if gs, err := ro.GoodSenders(); err != nil || gs != nil {
		t.Errorf("good senders %v, %v", gs, err)
	}
	if ts, err := ro.Trails(); err != nil || ts != nil {
		t.Errorf("trails %v, %v", ts, err)
	}
}
