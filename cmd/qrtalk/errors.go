package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"syscall"

	"github.com/qrtalk/qrtalk/client"
	"github.com/qrtalk/qrtalk/internal/api"
	"github.com/qrtalk/qrtalk/internal/qr"
	"github.com/qrtalk/qrtalk/protocol"
)

// explain turns an error into the message, the hint and the exit status
// that the user sees. Hints set where the error happened win; the rest
// come from what the error is.
func explain(err error) (msg, hint string, code int) {
	msg, code = err.Error(), exitError
	var ce *cliError
	if errors.As(err, &ce) {
		hint = ce.hint
		if ce.code != 0 {
			code = ce.code
		}
	}
	// An API error carries its own hint; keep the message short.
	var ae *api.Error
	if errors.As(err, &ae) {
		msg = strings.Replace(msg, ae.Error(), fmt.Sprintf("%s (code %d)", ae.Message, ae.Code), 1)
		if hint == "" {
			hint = ae.Hint
		}
		if errors.Is(err, api.ErrDeviceUnknown) && (hint == "" || hint == api.ErrDeviceUnknown.Hint) {
			hint = "this device was revoked, or the account deleted: link it again ('qrtalk device join') or join anew in another --home"
		}
	}
	switch {
	case errors.Is(err, client.ErrNoAccount):
		code = exitNoAccount
		if hint == "" {
			hint = "run 'qrtalk join <invite>' to create an account, or choose one with --home or QRTALK_HOME"
		}
	case errors.Is(err, client.ErrKeyChanged):
		code = exitKey
		if hint == "" {
			hint = "run 'qrtalk contacts' to see who shows CHANGED, check the new fingerprint with them in person, then 'qrtalk contact accept NAME'"
		}
	case errors.Is(err, client.ErrServerKey):
		code = exitKey
		if hint == "" {
			hint = "the server is not the one your invite named: do not go on, and ask its operator"
		}
	case errors.Is(err, protocol.ErrMismatch):
		code = exitKey
	case errors.Is(err, client.ErrExists):
		if hint == "" {
			hint = "keep one identity per directory: use another --home (or QRTALK_HOME) for a second one"
		}
	case errors.Is(err, client.ErrNoContact):
		if hint == "" {
			hint = "run 'qrtalk contacts' and 'qrtalk groups' for the names you can use"
		}
	case errors.Is(err, client.ErrNoGroup):
		if hint == "" {
			hint = "run 'qrtalk groups' for the groups you are in"
		}
	case errors.Is(err, client.ErrOtherServer):
		if hint == "" {
			hint = "this client talks to the server it joined; the contact must join it too"
		}
	case errors.Is(err, qr.ErrNotFound), errors.Is(err, qr.ErrNotImage):
		if hint == "" {
			hint = "use a sharp PNG or JPEG of the whole code, or paste the qrtalk: text instead"
		}
	case isNetError(err):
		if hint == "" {
			hint = "is the server running and reachable from here? check the network and try again"
		}
	case errors.Is(err, context.Canceled):
		msg, hint = "interrupted", ""
	}
	return msg, hint, code
}

// isNetError reports whether err means the server could not be reached.
func isNetError(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &oe) || (errors.As(err, &ne) && ne.Timeout()) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}
