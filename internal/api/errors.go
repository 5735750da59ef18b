package api

import (
	"fmt"
	"net/http"
)

// The catalogue of API errors. Codes are stable: a client may switch on
// them. The first three digits are the HTTP status.
var (
	ErrMalformed      = newError(40000, http.StatusBadRequest, "malformed request", "")
	ErrBadJSON        = newError(40001, http.StatusBadRequest, "request body is not valid JSON for this route", "")
	ErrBadEnvelope    = newError(40002, http.StatusBadRequest, "envelope is malformed", "")
	ErrBadTTL         = newError(40003, http.StatusBadRequest, "TTL out of range", "TTL must be from 1 second to 7 days")
	ErrBadSignature   = newError(40004, http.StatusBadRequest, "signature does not verify", "")
	ErrVersion        = newError(40005, http.StatusBadRequest, "unsupported protocol version", "this server speaks protocol v1")
	ErrBadKey         = newError(40006, http.StatusBadRequest, "key is not a valid protocol v1 key", "keys are RSA-3072 with e = 65537")
	ErrClockSkew      = newError(40007, http.StatusBadRequest, "timestamp too far from the server's clock", "check the device's clock")
	ErrWrongSender    = newError(40008, http.StatusBadRequest, "envelope sender is not the authenticated device", "")
	ErrUnauthorized   = newError(40100, http.StatusUnauthorized, "authentication required", "set up a channel session first")
	ErrSessionUnknown = newError(40101, http.StatusUnauthorized, "channel session unknown or expired", "set up a new session")
	ErrReplay         = newError(40102, http.StatusUnauthorized, "replayed request", "")
	ErrFrame          = newError(40103, http.StatusUnauthorized, "request frame does not authenticate", "")
	ErrDeviceUnknown  = newError(40104, http.StatusUnauthorized, "unknown or revoked device", "")
	ErrInvite         = newError(40300, http.StatusForbidden, "invite is unknown, used up or expired", "ask the server's operator for a new invite")
	ErrRegistration   = newError(40301, http.StatusForbidden, "registration is closed on this server", "")
	ErrForbidden      = newError(40302, http.StatusForbidden, "not allowed", "")
	ErrNotFound       = newError(40400, http.StatusNotFound, "not found", "")
	ErrUserUnknown    = newError(40401, http.StatusNotFound, "unknown user", "")
	ErrExists         = newError(40900, http.StatusConflict, "already exists", "")
	ErrTooLarge       = newError(41300, http.StatusRequestEntityTooLarge, "request too large", "")
	ErrRateLimited    = newError(42900, http.StatusTooManyRequests, "too many requests", "slow down and retry later")
	ErrInternal       = newError(50000, http.StatusInternalServerError, "internal server error", "")
	ErrUnavailable    = newError(50300, http.StatusServiceUnavailable, "service unavailable", "retry later")
	ErrShuttingDown   = newError(50301, http.StatusServiceUnavailable, "server is shutting down", "retry in a moment")
	ErrNoRoute        = newError(40402, http.StatusNotFound, "no such route", "")
)

// Catalogue lists every error, for documentation and tests.
var Catalogue []*Error

func newError(code, status int, msg, hint string) *Error {
	e := &Error{Code: code, HTTP: status, Message: msg, Hint: hint, Link: fmt.Sprintf("docs/OPERATIONS.md#error-%d", code)}
	Catalogue = append(Catalogue, e)
	return e
}

// With returns a copy of e whose message carries detail.
func (e *Error) With(format string, args ...any) *Error {
	c := *e
	c.Message = e.Message + ": " + fmt.Sprintf(format, args...)
	return &c
}
