// Package api holds the HTTP interface between qrtalkd and its clients:
// paths, request and response bodies, and the catalogue of errors. The
// server and the client SDK both use it, so the two cannot drift apart.
//
// Every route but Info, Register and Session is authenticated by the secure
// channel of package protocol: the request body is a channel frame sealed
// for the route's method and path, and a successful response is a frame
// sealed in answer to it. Errors are plain JSON (type Error), never sealed,
// with a stable numeric code. docs/OPERATIONS.md lists them.
package api

import (
	"fmt"

	"github.com/qrtalk/qrtalk/protocol"
)

// Routes, as Go 1.22 http.ServeMux patterns.
const (
	RouteInfo      = "GET /v1/info"
	RouteRegister  = "POST /v1/register"
	RouteSession   = "POST /v1/session"
	RouteSend      = "POST /v1/send"
	RouteDirectory = "POST /v1/directory/{user}"
	RouteAddDevice = "POST /v1/devices/add"
	RouteRevoke    = "POST /v1/devices/revoke"
	RouteDelete    = "POST /v1/account/delete"
	RouteInbox     = "POST /v1/inbox"
	RouteAck       = "POST /v1/ack"
	RouteLive      = "GET /v1/live"
	RouteUpload    = "POST /v1/blobs"
	RouteDownload  = "GET /v1/blobs/{id}"
	// Provisioning mailboxes (linking a device by QR code): not
	// authenticated, the bodies are sealed provisioning messages of package
	// protocol, and the mailbox is 32 lowercase hexadecimal characters.
	RouteProvisionPut  = "PUT /v1/provision/{mailbox}"
	RouteProvisionTake = "POST /v1/provision/{mailbox}/take"
)

// Content types.
const (
	ContentFrame = "application/x-qrtalk-frame"
	// ContentResume is the answer to a resume message (RouteSession).
	ContentResume = "application/x-qrtalk-resume"
	ContentJSON   = "application/json"
	ContentBlob   = "application/octet-stream"
)

// FrameHeader carries the channel frame of a blob upload or download,
// in unpadded base64url, because their bodies are the blob itself.
const FrameHeader = "QRTalk-Frame"

// TicketHeader carries, in unpadded base64url, the resumption ticket of the
// session that a RouteSession answer sets up or resumes (docs/PROTOCOL.md,
// section 18). RouteSession takes either a channel setup or a resume
// message as its body; the answer to a resume is a resume answer
// (ContentResume). A client that does not resume ignores the header.
const TicketHeader = "QRTalk-Ticket"

// LivePath is the path the first frame of a live channel is sealed for
// (method "GET"); acknowledgements on it are sealed for method "ACK".
const (
	LivePath  = "/v1/live"
	AckMethod = "ACK"
)

// Push types: the first byte of the body of each frame the server pushes on
// a live channel.
const (
	// PushEnvelope: the rest is one envelope, as delivered to this device.
	PushEnvelope = 1
	// PushDrained: the device's queue was delivered; what follows is live.
	PushDrained = 2
	// PushPing: nothing; keeps the connection and the client's timers alive.
	PushPing = 3
	// PushClosing: the server ends the live channel (lifetime reached,
	// shutdown, revocation); the client reconnects or stops.
	PushClosing = 4
)

// Info is the public description of a server.
type Info struct {
	Software         string               `json:"software"`
	ProtocolVersion  int                  `json:"protocol_version"`
	ServerKey        []byte               `json:"server_key"` // DER SubjectPublicKeyInfo
	Fingerprint      protocol.Fingerprint `json:"fingerprint"`
	Registration     string               `json:"registration"` // "open", "invite" or "closed"
	MaxBlobSize      int64                `json:"max_blob_size"`
	MaxEnvelopeSize  int                  `json:"max_envelope_size"`
	MaxTTLSeconds    int64                `json:"max_ttl_s"`
	SessionLifetimeS int64                `json:"session_lifetime_s"`
	LiveLifetimeS    int64                `json:"live_lifetime_s"`
	AckTimeoutMillis int64                `json:"ack_timeout_ms"`
	ServerTimeMillis int64                `json:"server_time_ms"`
}

// RegisterRequest creates an account: the client chose the user and device
// IDs at random and certified its device with its identity key.
type RegisterRequest struct {
	Invite      string `json:"invite,omitempty"` // the token of a qrtalk:invite
	IdentityKey []byte `json:"identity_key"`
	DeviceCert  []byte `json:"device_cert"`
}

// RegisterResponse confirms an account.
type RegisterResponse struct {
	User   protocol.UserID   `json:"user"`
	Device protocol.DeviceID `json:"device"`
}

// Delivery statuses, per device, in a SendResponse.
const (
	StatusDelivered = "delivered" // forwarded live and acknowledged; never stored
	StatusQueued    = "queued"    // stored until the device fetches it or it expires
	StatusRejected  = "rejected"  // not accepted for this device; see Code
	StatusSelf      = "self"      // the sending device's own copy: not routed
)

// A DeviceResult is what became of one device's copy of a message.
type DeviceResult struct {
	User   protocol.UserID   `json:"user"`
	Device protocol.DeviceID `json:"device"`
	Status string            `json:"status"`
	Code   int               `json:"code,omitempty"`
	Reason string            `json:"reason,omitempty"`
}

// SendResponse answers a send.
type SendResponse struct {
	ID      protocol.MessageID `json:"id"`
	Expires int64              `json:"expires_ms"` // after the 7-day clamp
	Results []DeviceResult     `json:"results"`
}

// Directory is a user's keys as the server holds them. Clients verify
// every certificate against the identity key they pinned, never trusting
// the server for it.
type Directory struct {
	User        protocol.UserID `json:"user"`
	IdentityKey []byte          `json:"identity_key"`
	Devices     [][]byte        `json:"devices"`     // device certificates
	Revocations [][]byte        `json:"revocations"` // revocation statements
}

// AddDeviceRequest links a new device: its certificate, signed by the
// user's identity key.
type AddDeviceRequest struct {
	DeviceCert []byte `json:"device_cert"`
}

// RevokeRequest revokes a device of the caller's user.
type RevokeRequest struct {
	Revocation []byte `json:"revocation"`
}

// InboxRequest fetches queued messages; with WaitMillis > 0 the server
// holds the request until a message arrives or the wait ends (long poll).
type InboxRequest struct {
	Limit      int   `json:"limit,omitempty"`
	WaitMillis int64 `json:"wait_ms,omitempty"`
}

// InboxResponse holds queued envelopes, oldest first, each as delivered to
// the calling device.
type InboxResponse struct {
	Envelopes [][]byte `json:"envelopes"`
	More      bool     `json:"more"`
}

// AckRequest acknowledges messages: the server deletes them at once.
type AckRequest struct {
	IDs []protocol.MessageID `json:"ids"`
}

// Address names one device.
type Address struct {
	User   protocol.UserID   `json:"user"`
	Device protocol.DeviceID `json:"device"`
}

// UploadRequest is the sealed header of a blob upload.
type UploadRequest struct {
	Size       int64     `json:"size"`
	SHA256     []byte    `json:"sha256"`
	TTLSeconds int64     `json:"ttl_s"`
	Recipients []Address `json:"recipients"`
}

// UploadResponse names the stored blob.
type UploadResponse struct {
	ID      string `json:"id"`
	Expires int64  `json:"expires_ms"`
}

// OK is the body of a successful request that returns nothing else.
type OK struct {
	OK bool `json:"ok"`
}

// Error is the body of every error response.
type Error struct {
	Code    int    `json:"code"`
	HTTP    int    `json:"http"`
	Message string `json:"error"`
	Hint    string `json:"hint,omitempty"`
	Link    string `json:"link,omitempty"`
}

func (e *Error) Error() string {
	if e.Hint != "" {
		return fmt.Sprintf("%s (code %d; %s)", e.Message, e.Code, e.Hint)
	}
	return fmt.Sprintf("%s (code %d)", e.Message, e.Code)
}

// Is makes errors.Is match two Errors with the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}
