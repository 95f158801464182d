package dnsbl

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Errors a ZoneResult.Err wraps; test with errors.Is.
var (
	// ErrTimeout: no reply within the query timeout.
	ErrTimeout = errors.New("no reply in time")
	// ErrServFail: the resolver answered SERVFAIL.
	ErrServFail = errors.New("resolver answered SERVFAIL")
	// ErrRefused: the resolver answered REFUSED.
	ErrRefused = errors.New("resolver answered REFUSED")
	// ErrRcode: the resolver answered another error rcode.
	ErrRcode = errors.New("resolver answered an error")
	// ErrBlocked: the list answered an error code in 127.255.255.0/24,
	// typically because the query came through a public/open resolver.
	ErrBlocked = errors.New("DNS list answered an error code, not a listing")
	// ErrBogus: the reply held only addresses outside 127.0.0.0/8.
	ErrBogus = errors.New("DNS list answered addresses outside 127.0.0.0/8")
	// ErrMismatch: the reply did not answer the question asked.
	ErrMismatch = errors.New("reply does not match the query")
	// ErrNetwork: the query could not be sent or the reply not read.
	ErrNetwork = errors.New("network error")
	// ErrDeadline: the caller's context ended before the zone answered.
	ErrDeadline = errors.New("no answer before the lookup deadline")
	// ErrZoneDown: the zone was not asked because its recent queries
	// failed (Config.FailureBackoff); a probe query decides when it is
	// asked again.
	ErrZoneDown = errors.New("zone down after failed queries, not asked")
)

// errKind indexes the per-kind error counters.
type errKind int

const (
	kindTimeout errKind = iota
	kindServFail
	kindRefused
	kindRcode
	kindBlocked
	kindBogus
	kindMismatch
	kindNetwork
	kindDeadline
	// kindDown marks the error reported for a zone skipped while down; it
	// is never counted in Checker.errs (skips count in Skipped) and
	// unwraps to ErrZoneDown.
	kindDown
	numKinds
)

var kindErrs = [numKinds]error{ErrTimeout, ErrServFail, ErrRefused, ErrRcode, ErrBlocked, ErrBogus, ErrMismatch, ErrNetwork, ErrDeadline, ErrZoneDown}

// ZoneError is the error of one zone's lookup. Its text never contains a
// DQS key.
type ZoneError struct {
	Zone   string // the query domain, DQS key masked
	Detail string // what happened, with the remedy where there is one
	kind   errKind
}

func (e *ZoneError) Error() string { return e.Zone + ": " + e.Detail }

// Unwrap returns the sentinel for the kind of error (ErrTimeout, ...).
func (e *ZoneError) Unwrap() error { return kindErrs[e.kind] }

// Result is the outcome of one Lookup. Its slices, Zones included, are
// shared with the cache and with other lookups, and must not be modified:
// a lookup answered wholly from the cache returns the cached Zones as they
// are, without a copy.
type Result struct {
	IP        netip.Addr `json:"ip"`
	Score     float64    `json:"score"`     // sum of the weights of the matched zones
	Threshold float64    `json:"threshold"` // configured threshold
	// Listed is Score >= Threshold over the zones that answered. When
	// Unknown is set the policy decides: an unanswered allowlist zone
	// (negative weight) might have lowered the score.
	Listed  bool         `json:"listed"`
	Unknown bool         `json:"unknown"` // some zone could not be answered (see ZoneResult.Err)
	Zones   []ZoneResult `json:"zones"`   // one per configured zone, in configuration order
}

// Err joins the errors of the zones that could not be answered; nil when
// every zone answered.
func (r Result) Err() error {
	if !r.Unknown {
		return nil
	}
	var errs []error
	for i := range r.Zones {
		if r.Zones[i].Err != nil {
			errs = append(errs, r.Zones[i].Err)
		}
	}
	return errors.Join(errs...)
}

// MatchedZones returns the domains of the zones that matched, in
// configuration order, without duplicates.
func (r Result) MatchedZones() []string {
	var out []string
	for i := range r.Zones {
		z := &r.Zones[i]
		if z.Matched && (len(out) == 0 || out[len(out)-1] != z.Zone) {
			out = append(out, z.Zone)
		}
	}
	return out
}

// ZoneResult is the answer of one configured zone.
type ZoneResult struct {
	Zone    string        // configured domain, e.g. "zen.spamhaus.org"
	Spec    string        // the zone as configured, canonical form
	Query   string        // name queried, DQS key masked as <key>
	Answers []netip.Addr  // A records for the query name (at most 16)
	TTL     time.Duration // the clamped DNS TTL when fresh; when Cached, the time left in the cache, truncated to whole seconds
	Weight  float64       // weight applied: the zone's weight if matched, else 0
	Matched bool          // an answer is a listing code that matches the filter
	Cached  bool          // served from the cache
	Err     error         // why the zone could not be answered (*ZoneError); nil on success
}

// Listing reports whether the zone answered without error and one of its
// listing answers (127.0.0.0/8 outside 127.255.255.0/24) matches f, e.g.
// the codes of an immediate-ban rule.
func (z *ZoneResult) Listing(f *Filter) bool {
	if z.Err != nil {
		return false
	}
	for _, a := range z.Answers {
		if isListingCode(a) && f.Match(a) {
			return true
		}
	}
	return false
}

// MarshalJSON renders Err as text and TTL as whole seconds.
func (z ZoneResult) MarshalJSON() ([]byte, error) {
	type out struct {
		Zone       string       `json:"zone"`
		Spec       string       `json:"spec"`
		Query      string       `json:"query"`
		Answers    []netip.Addr `json:"answers"`
		TTLSeconds int64        `json:"ttl_seconds"`
		Weight     float64      `json:"weight"`
		Matched    bool         `json:"matched"`
		Cached     bool         `json:"cached"`
		Error      string       `json:"error,omitempty"`
	}
	o := out{Zone: z.Zone, Spec: z.Spec, Query: z.Query, Answers: z.Answers,
		TTLSeconds: int64(z.TTL / time.Second), Weight: z.Weight, Matched: z.Matched, Cached: z.Cached}
	if o.Answers == nil {
		o.Answers = []netip.Addr{}
	}
	if z.Err != nil {
		o.Error = z.Err.Error()
	}
	// Not json.Marshal: keep "<key>" readable for encoders that turn HTML
	// escaping off.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(o); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// WriteReport writes r for people, as `banner check IP` prints it: per zone
// the query name (DQS key masked), answers, TTL, weight applied and verdict,
// then the score, the threshold and the overall verdict.
func WriteReport(w io.Writer, r Result) error {
	var b strings.Builder
	fmt.Fprintf(&b, "DNSBL check for %s\n", r.IP)
	if len(r.Zones) == 0 {
		b.WriteString("  no zones configured\n")
	}
	for i := range r.Zones {
		z := &r.Zones[i]
		fmt.Fprintf(&b, "\n  zone    %s\n", z.Spec)
		fmt.Fprintf(&b, "  query   %s\n", z.Query)
		ans := "none (not listed)"
		if len(z.Answers) > 0 {
			s := make([]string, len(z.Answers))
			for j, a := range z.Answers {
				s[j] = a.String()
			}
			ans = strings.Join(s, ", ")
		} else if z.Err != nil {
			ans = "-"
		}
		fmt.Fprintf(&b, "  answer  %s\n", ans)
		if z.Err == nil {
			ttl := z.TTL.Round(time.Second).String()
			if z.Cached {
				ttl += " left (cached)"
			}
			fmt.Fprintf(&b, "  ttl     %s\n", ttl)
		}
		var verdict string
		switch {
		case z.Err != nil:
			verdict = "UNKNOWN: " + z.Err.Error()
		case z.Matched:
			verdict = "listed, weight " + signed(z.Weight)
		case len(z.Answers) > 0:
			verdict = "not listed (no answer matches the filter)"
		default:
			verdict = "not listed"
		}
		fmt.Fprintf(&b, "  result  %s\n", verdict)
	}
	verdict := "not listed"
	if r.Listed {
		verdict = "LISTED"
	}
	answered, refusedCodes := 0, 0
	for _, z := range r.Zones {
		switch {
		case z.Err == nil:
			answered++
		case errors.Is(z.Err, ErrBlocked) || errors.Is(z.Err, ErrBogus):
			refusedCodes++ // the list answered, with an error code
		}
	}
	switch {
	case r.Unknown && answered == 0 && refusedCodes == len(r.Zones):
		verdict = "UNKNOWN: the lists answered with error codes, not listings (see each zone's result above)"
	case r.Unknown && answered == 0 && refusedCodes > 0:
		verdict = "UNKNOWN: no zone gave a usable answer: some answered with error codes, the others not at all (see each zone's result above)"
	case r.Unknown && answered == 0:
		verdict = "UNKNOWN: no zone answered (is the resolver banner asks, [dnsbl] resolvers or else those of resolv_conf, running and reachable? see each zone's result above)"
	case r.Unknown:
		verdict += " (incomplete: some zones could not be checked)"
	}
	fmt.Fprintf(&b, "\nscore %s, threshold %s: %s\n", num(r.Score), num(r.Threshold), verdict)
	_, err := io.WriteString(w, b.String())
	return err
}

func num(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func signed(f float64) string {
	if f >= 0 {
		return "+" + num(f)
	}
	return num(f)
}
