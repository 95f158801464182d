package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/banner-mta/banner/banner"
)

// The buckets of Extras. They are created by the first write that needs
// them, so a store made by an older banner (or opened read-only) simply
// has none yet.
var (
	bucketSenders = []byte("senders")
	bucketTrails  = []byte("trails")
)

// GoodSender is a client whose mail Postfix accepted, keyed like bans
// (the address, or its /ipv6_prefix), and when it last delivered.
type GoodSender struct {
	Prefix netip.Prefix
	Last   time.Time
}

// TrailEvent is one entry of an address's event trail: what banner saw
// about it and what it did, for `banner explain`.
type TrailEvent struct {
	Time   time.Time `json:"time"`
	Source string    `json:"source,omitempty"`
	Kind   string    `json:"kind,omitempty"`
	Key    string    `json:"key,omitempty"`
	Reason string    `json:"reason,omitempty"`
	// Origin is where the event came from: "FILE:OFFSET" for a log line,
	// the protocol state for a policy request.
	Origin string  `json:"origin,omitempty"`
	Weight float64 `json:"weight,omitempty"` // the weight it added to the score
	// Outcome is what the engine did with it: "scored", "ban", "echo",
	// "repeat", "stale", "while_banned", "good_sender", "unban", ...
	Outcome string `json:"outcome"`
	// Score is the score after the event; BanFor the length of the ban it
	// caused and Count that ban's escalation level.
	Score  float64       `json:"score,omitempty"`
	BanFor time.Duration `json:"ban_for,omitempty"`
	Count  int           `json:"count,omitempty"`
}

// Trail is the newest events about one prefix, oldest first.
type Trail struct {
	Prefix netip.Prefix
	Events []TrailEvent
}

// Extras is what the engine writes besides bans, history and positions, in
// the same transaction: good senders (a zero Last deletes the record) and
// event trails (an empty Events deletes the trail).
type Extras struct {
	Senders []GoodSender
	Trails  []Trail
}

func (x Extras) empty() bool { return len(x.Senders) == 0 && len(x.Trails) == 0 }

// ApplyWithExtras is ApplyWithPositions that also writes x, all in one
// transaction.
func (s *Store) ApplyWithExtras(put []Ban, del []netip.Prefix, hist []History, pos map[string]banner.LogPosition, x Extras) error {
	return s.applyAll(put, del, hist, pos, x)
}

// applyExtras writes x in tx.
func applyExtras(tx *bolt.Tx, x Extras) error {
	if x.empty() {
		return nil
	}
	if len(x.Senders) > 0 {
		b, err := tx.CreateBucketIfNotExists(bucketSenders)
		if err != nil {
			return fmt.Errorf("creating bucket %s: %w", bucketSenders, err)
		}
		for _, g := range x.Senders {
			k, err := prefixKey(g.Prefix)
			if err != nil {
				return fmt.Errorf("storing good sender: %w", err)
			}
			if g.Last.IsZero() {
				err = b.Delete(k)
			} else {
				err = b.Put(k, binary.BigEndian.AppendUint64(nil, uint64(g.Last.UnixMilli())))
			}
			if err != nil {
				return fmt.Errorf("storing good sender %s: %w", k, err)
			}
		}
	}
	if len(x.Trails) > 0 {
		b, err := tx.CreateBucketIfNotExists(bucketTrails)
		if err != nil {
			return fmt.Errorf("creating bucket %s: %w", bucketTrails, err)
		}
		// In key order, as the bans (an unban -all of 100,000 writes as many
		// trails).
		tk := keyed{recs: make([]keyedRec, 0, len(x.Trails))}
		for _, t := range x.Trails {
			if err := tk.key(t.Prefix); err != nil {
				return fmt.Errorf("storing event trail: %w", err)
			}
			if len(t.Events) > 0 { // else: delete
				v, err := json.Marshal(t.Events)
				if err != nil {
					return fmt.Errorf("storing event trail %s: %w", t.Prefix, err)
				}
				tk.buf = append(tk.buf, v...)
			}
			tk.end(len(t.Events) > 0)
		}
		for _, kv := range tk.sorted() {
			var err error
			if kv.v == nil {
				err = b.Delete(kv.k)
			} else {
				err = b.Put(kv.k, kv.v)
			}
			if err != nil {
				return fmt.Errorf("storing event trail %s: %w", kv.k, err)
			}
		}
	}
	return nil
}

// GoodSenders returns every stored good sender. Undecodable records are
// skipped and named in the returned error (wrapping ErrCorrupt).
func (s *Store) GoodSenders() ([]GoodSender, error) {
	var out []GoodSender
	var errs []error
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSenders)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			p, err := parseKey(k)
			if err == nil && len(v) != 8 {
				err = fmt.Errorf("value of %d bytes, want 8", len(v))
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("good sender %q: %w: %w", k, ErrCorrupt, err))
				return nil
			}
			out = append(out, GoodSender{Prefix: p, Last: time.UnixMilli(int64(binary.BigEndian.Uint64(v)))})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: reading good senders: %w", err)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("store: %w", errors.Join(errs...))
	}
	return out, nil
}

// Trails returns every stored event trail. Undecodable records are skipped
// and named in the returned error (wrapping ErrCorrupt).
func (s *Store) Trails() ([]Trail, error) {
	var out []Trail
	var errs []error
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTrails)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			p, err := parseKey(k)
			var evs []TrailEvent
			if err == nil {
				err = json.Unmarshal(v, &evs)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("event trail %q: %w: %w", k, ErrCorrupt, err))
				return nil
			}
			out = append(out, Trail{Prefix: p, Events: evs})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: reading event trails: %w", err)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("store: %w", errors.Join(errs...))
	}
	return out, nil
}
