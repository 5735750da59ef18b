package config

import "errors"

// A HintError is an error that comes with advice: what the operator can do
// about it. The command prints the error, then the hint on its own line.
type HintError struct {
	Err  error
	Hint string
}

func (e *HintError) Error() string { return e.Err.Error() }

func (e *HintError) Unwrap() error { return e.Err }

// WithHint attaches a hint to err. It returns nil if err is nil.
func WithHint(err error, hint string) error {
	if err == nil {
		return nil
	}
	return &HintError{Err: err, Hint: hint}
}

// Hint returns the hint attached to err or to an error it wraps, or "".
func Hint(err error) string {
	var h *HintError
	if errors.As(err, &h) {
		return h.Hint
	}
	return ""
}

// A UsageError is an error in what the operator asked for (a flag, a
// variable, the config file), as opposed to one met while running. The
// command exits with status 2 for it.
type UsageError struct {
	Err error
}

func (e *UsageError) Error() string { return e.Err.Error() }

func (e *UsageError) Unwrap() error { return e.Err }

// IsUsage reports whether err is or wraps a UsageError.
func IsUsage(err error) bool {
	var u *UsageError
	return errors.As(err, &u)
}
