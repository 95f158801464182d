package banner

import (
	"errors"
	"fmt"
)

// Errors of ban operations. The engine wraps them with the prefix concerned;
// the control socket carries them as codes, so that the CLI can tell them
// apart with errors.Is on either side.
var (
	// ErrNotBanned: an unban of a prefix that has no ban.
	ErrNotBanned = errors.New("not banned")
	// ErrCovered: an unban of a prefix that has no ban of its own but lies
	// inside a wider ban. It wraps ErrNotBanned.
	ErrCovered = fmt.Errorf("covered by a wider ban (%w)", ErrNotBanned)
	// ErrAlreadyBanned: a ban without a length of a prefix already banned;
	// the ban in force is left as it is.
	ErrAlreadyBanned = errors.New("already banned")
	// ErrAllowlisted: the prefix overlaps the allowlist (or this host's
	// networks) and is never banned.
	ErrAllowlisted = errors.New("allowlisted")
	// ErrInvalidPrefix: not an address or prefix that can be banned (too
	// broad, host bits set, zoned, invalid).
	ErrInvalidPrefix = errors.New("invalid prefix")
	// ErrNotDurable: the change could not be written to the store; it was
	// not confirmed and is retried.
	ErrNotDurable = errors.New("not saved to the store")
)
