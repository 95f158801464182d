package fleet

import (
	"bytes"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/banner-mta/banner/banner"
)

func TestEncodeDecode(t *testing.T) {
	t0 := time.UnixMilli(1_760_000_000_123)
	p := netip.MustParsePrefix("203.0.113.0/24")
	for _, tc := range []struct {
		name string
		m    Message
	}{
		{"ban", Message{Op: OpBan, Node: "mx1", Time: t0, Prefix: p, Since: t0, Until: t0.Add(time.Hour), Count: 3, Reason: "dictionary attack", Kind: banner.KindUnknownUser}},
		{"ban closing both port groups", Message{Op: OpBan, Node: "mx1", Time: t0, Prefix: p, Since: t0, Until: t0.Add(time.Hour), Count: 1, Kind: banner.KindSASL, Groups: banner.AllGroups}},
		{"republished ban", Message{Op: OpBan, Node: "mx2", Origin: "mx1", Time: t0, Prefix: p, Since: t0, Until: t0.Add(time.Hour), Count: 1}},
		{"unban", Message{Op: OpUnban, Node: "mx3", Time: t0, Prefix: netip.MustParsePrefix("2001:db8::1/128")}},
		{"forget", Message{Op: OpForget, Node: "mx3", Time: t0, Prefix: p}},
		{"unban all", Message{Op: OpUnbanAll, Node: "mx3", Time: t0}},
		{"event", Message{Op: OpEvent, Node: "mx1", Time: t0, Event: banner.Event{Addr: netip.MustParseAddr("198.51.100.7"),
			Kind: banner.KindUnknownUser, Weight: 1, Time: t0, Source: banner.SourceLog, Key: "a@example.com", Reason: "550 user unknown"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Encode(tc.m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode(%s): %v", b, err)
			}
			want := tc.m
			want.V = Version
			if want.Op == OpBan {
				want.Count = max(want.Count, 1)
			}
			if got.Op != want.Op || got.Node != want.Node || got.Origin != want.Origin || !got.Time.Equal(want.Time) ||
				got.Prefix != want.Prefix || !got.Until.Equal(want.Until) || got.Count != want.Count || got.Reason != want.Reason ||
				got.Event.Addr != want.Event.Addr || got.Event.Key != want.Event.Key || got.Event.Weight != want.Event.Weight ||
				got.Groups != want.Groups {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestDecodeRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     error
	}{
		{"not json", `{`, ErrMalformed},
		{"no version", `{"op":"ban","n":"mx1","p":"1.2.3.4/32","u":5}`, ErrMalformed},
		{"no node", `{"v":1,"op":"unban_all"}`, ErrMalformed},
		{"host bits", `{"v":1,"op":"ban","n":"mx1","p":"1.2.3.4/24","u":5}`, ErrMalformed},
		{"bad prefix", `{"v":1,"op":"unban","n":"mx1","p":"nonsense"}`, ErrMalformed},
		{"ends before start", `{"v":1,"op":"ban","n":"mx1","p":"1.2.3.4/32","s":10,"u":5}`, ErrMalformed},
		{"negative weight", `{"v":1,"op":"event","n":"mx1","a":"1.2.3.4","w":-1}`, ErrMalformed},
		{"zoned", `{"v":1,"op":"event","n":"mx1","a":"fe80::1%eth0"}`, ErrMalformed},
		{"oversized", `{"v":1,"op":"unban_all","n":"mx1","r":"` + strings.Repeat("x", MaxMessageBytes) + `"}`, ErrMalformed},
		{"long node", `{"v":1,"op":"unban_all","n":"` + strings.Repeat("x", MaxNodeBytes+1) + `"}`, ErrMalformed},
		{"newer op", `{"v":2,"op":"quarantine","n":"mx1"}`, ErrUnknownOp},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode([]byte(tc.in)); !errors.Is(err, tc.want) {
				t.Errorf("Decode(%.80s) = %v, want %v", tc.in, err, tc.want)
			}
		})
	}
	// A newer version with fields this one does not know still works.
	m, err := Decode([]byte(`{"v":7,"op":"unban","n":"mx9","p":"192.0.2.0/24","future":{"x":1}}`))
	if err != nil || m.Prefix != netip.MustParsePrefix("192.0.2.0/24") || m.V != 7 {
		t.Errorf("newer version: %+v, %v", m, err)
	}
}

// TestEncodeCutsLongTexts: what Encode writes, Decode accepts.
func TestEncodeCutsLongTexts(t *testing.T) {
	m := Message{Op: OpEvent, Node: strings.Repeat("n", 100), Event: banner.Event{Addr: netip.MustParseAddr("192.0.2.1"),
		Key: strings.Repeat("é", MaxKeyBytes), Reason: strings.Repeat("r", 5000)}}
	b, err := Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(b); err != nil {
		t.Fatalf("Decode(Encode(long)) = %v", err)
	}
}

// FuzzDecode: no input panics, and whatever Decode accepts survives
// another round trip.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"v":1,"op":"ban","n":"mx1","t":1,"p":"203.0.113.0/24","s":1,"u":2,"c":1,"r":"x","k":"manual"}`))
	f.Add([]byte(`{"v":1,"op":"event","n":"mx1","a":"::ffff:1.2.3.4","w":0.5,"key":"a@b","src":"log"}`))
	f.Add([]byte(`{"v":1,"op":"unban_all","n":"mx1"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		out, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode(Decode(%q)): %v", b, err)
		}
		m2, err := Decode(out)
		if err != nil {
			t.Fatalf("Decode(Encode(Decode(%q))) = %v (%s)", b, err, out)
		}
		out2, _ := Encode(m2)
		if !bytes.Equal(out, out2) {
			t.Fatalf("not stable: %s then %s", out, out2)
		}
	})
}

// TestDecodeGroups: a ban's port groups travel; bits of groups this
// version does not know (a newer node's) are dropped, and a message
// without groups (an older node's) decodes with none.
func TestDecodeGroups(t *testing.T) {
	for _, tc := range []struct {
		wire string
		want banner.Groups
	}{
		{`{"v":1,"op":"ban","n":"mx1","t":1,"p":"192.0.2.1/32","s":1,"u":2,"k":"sasl","g":3}`, banner.AllGroups},
		{`{"v":1,"op":"ban","n":"mx1","t":1,"p":"192.0.2.1/32","s":1,"u":2,"k":"sasl","g":6}`, banner.GroupSASL},
		{`{"v":1,"op":"ban","n":"mx1","t":1,"p":"192.0.2.1/32","s":1,"u":2,"k":"sasl"}`, 0},
	} {
		m, err := Decode([]byte(tc.wire))
		if err != nil || m.Groups != tc.want {
			t.Errorf("Decode(%s) groups %v, %v; want %v", tc.wire, m.Groups, err, tc.want)
		}
	}
}
