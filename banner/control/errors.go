package control

import (
	"errors"

	"github.com/banner-mta/banner/banner"
)

// Code classifies a failed request.
type Code string

// Error codes. Each of the first six stands for an error of package
// banner, so that errors.Is works on the CLI's side as on the daemon's.
const (
	CodeNotBanned     Code = "not_banned"     // banner.ErrNotBanned
	CodeCovered       Code = "covered"        // banner.ErrCovered
	CodeAlreadyBanned Code = "already_banned" // banner.ErrAlreadyBanned
	CodeAllowlisted   Code = "allowlisted"    // banner.ErrAllowlisted
	CodeInvalidPrefix Code = "invalid_prefix" // banner.ErrInvalidPrefix
	CodeNotDurable    Code = "not_durable"    // banner.ErrNotDurable
	CodePermission    Code = "permission"     // not root
	CodeBadRequest    Code = "bad_request"    // malformed or unknown request
	CodeInternal      Code = "internal"       // any other failure
)

// codeErrors maps codes to the errors they stand for, most specific first
// (ErrCovered wraps ErrNotBanned).
var codeErrors = []struct {
	code Code
	err  error
}{
	{CodeCovered, banner.ErrCovered},
	{CodeNotBanned, banner.ErrNotBanned},
	{CodeAlreadyBanned, banner.ErrAlreadyBanned},
	{CodeAllowlisted, banner.ErrAllowlisted},
	{CodeInvalidPrefix, banner.ErrInvalidPrefix},
	{CodeNotDurable, banner.ErrNotDurable},
	{CodePermission, ErrPermission},
}

// ErrPermission is what an Error with CodePermission stands for.
var ErrPermission = errors.New("permission denied")

// Error is a failure the daemon reported: its code and its text.
type Error struct {
	Code Code
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap returns the error the code stands for, so that
// errors.Is(err, banner.ErrNotBanned) holds for a daemon's "not_banned".
func (e *Error) Unwrap() error {
	for _, c := range codeErrors {
		if c.code == e.Code {
			return c.err
		}
	}
	return nil
}

// codeOf classifies err by the errors it wraps.
func codeOf(err error) Code {
	for _, c := range codeErrors {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return CodeInternal
}

// errorResponse is the response that reports err.
func errorResponse(err error) Response {
	return Response{Error: err.Error(), Code: codeOf(err)}
}
