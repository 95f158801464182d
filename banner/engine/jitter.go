package engine

import (
	"math/rand/v2"
	"time"
)

// jitter returns the random extra time of a ban banner decides: uniform in
// [0, BanTimeJitter), whole seconds (kernel timeouts count seconds). 0 when
// BanTimeJitter is 0, and in Simulate, which predicts without it.
func (s *ledger) jitter() time.Duration {
	j := s.cfg.BanTimeJitter
	if j < time.Second || s.noJitter {
		return 0
	}
	r := rand.Float64
	if s.cfg.Rand != nil {
		r = s.cfg.Rand
	}
	return time.Duration(r()*float64(j/time.Second)) * time.Second
}
