package firewall

import (
	"bytes"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"
)

// An nftables interval set holds a range as two elements: its first
// address (the start, carrying the timeout) and the address after its last
// (flagged NFT_SET_ELEM_INTERVAL_END, without a timeout). A range reaching
// the top of the address space has no end element. nft itself may add a
// lone end element at address 0 (nft 1.0.x does before the first range);
// it closes nothing.

// intervalElems returns the elements of p in an interval set, with the
// timeout on the start.
func intervalElems(p netip.Prefix, timeout time.Duration) []nftables.SetElement {
	start := p.Masked().Addr()
	els := []nftables.SetElement{{Key: start.AsSlice(), Timeout: timeout}}
	if end, ok := afterLast(p); ok {
		els = append(els, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
	}
	return els
}

// afterLast returns the address after the last one of p, and false when p
// reaches the top of its address space.
func afterLast(p netip.Prefix) (netip.Addr, bool) {
	b := p.Masked().Addr().AsSlice()
	host := len(b)*8 - p.Bits()
	// Set the host bits, then add one.
	for i := len(b) - 1; i >= 0 && host > 0; i-- {
		n := min(host, 8)
		b[i] |= byte(1<<n - 1)
		host -= n
	}
	for i := len(b) - 1; i >= 0; i-- {
		b[i]++
		if b[i] != 0 {
			a, _ := netip.AddrFromSlice(b)
			return a, true
		}
	}
	return netip.Addr{}, false
}

// kernelRange is a range of an interval set as listed: [start, end), end
// invalid when the range reaches the top; expires is the start element's
// remaining time.
type kernelRange struct {
	start, end netip.Addr
	timeout    time.Duration
}

// rangesOf pairs the listed elements of an interval set of addresses of
// size bytes into ranges. Elements come in any order.
func rangesOf(els []nftables.SetElement, size int) []kernelRange {
	els = slices.Clone(els)
	slices.SortStableFunc(els, func(a, b nftables.SetElement) int {
		if c := bytes.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		// At one address an end closes the range before it before a start
		// opens the next (adjacent ranges).
		switch {
		case a.IntervalEnd == b.IntervalEnd:
			return 0
		case a.IntervalEnd:
			return -1
		}
		return 1
	})
	var out []kernelRange
	var open *kernelRange
	for _, e := range els {
		if len(e.Key) != size {
			continue
		}
		a, _ := netip.AddrFromSlice(e.Key)
		if e.IntervalEnd {
			if open != nil {
				open.end = a
				out = append(out, *open)
				open = nil
			}
			continue
		}
		if open != nil { // a start without an end before the next: to the top
			out = append(out, *open)
		}
		t := e.Expires
		if t == 0 {
			t = e.Timeout
		}
		open = &kernelRange{start: a, timeout: t}
	}
	if open != nil {
		out = append(out, *open)
	}
	return out
}

// hostRanges reads the elements of a hash set of addresses of size bytes
// as one-address ranges.
func hostRanges(els []nftables.SetElement, size int) []kernelRange {
	out := make([]kernelRange, 0, len(els))
	for _, e := range els {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok || len(e.Key) != size {
			continue
		}
		t := e.Expires
		if t == 0 {
			t = e.Timeout
		}
		end, _ := afterLast(netip.PrefixFrom(a, a.BitLen()))
		out = append(out, kernelRange{start: a, end: end, timeout: t})
	}
	return out
}

// prefixes returns the CIDR prefixes covering r exactly, largest first
// from its start: a range banner made is one prefix, a range merged by
// someone else's nft auto-merge may be several.
func (r kernelRange) prefixes() []netip.Prefix {
	var out []netip.Prefix
	a := r.start
	bitsLen := a.BitLen()
	for a.IsValid() && (!r.end.IsValid() || a.Less(r.end)) {
		// The largest prefix starting at a that stays below end.
		bits := bitsLen
		for bits > 0 {
			p := netip.PrefixFrom(a, bits-1)
			if p.Masked().Addr() != a {
				break
			}
			if next, ok := afterLast(p); r.end.IsValid() && (!ok || r.end.Less(next)) {
				break
			}
			bits--
		}
		if bits == 0 { // /0: refused by normalize; never banner's
			return out
		}
		p := netip.PrefixFrom(a, bits)
		out = append(out, p)
		next, ok := afterLast(p)
		if !ok {
			break
		}
		a = next
	}
	return out
}
