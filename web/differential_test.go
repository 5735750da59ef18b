package web_test

// TestInteropDifferential feeds the same inputs, the test vectors' and
// fresh objects' bytes and strings with random mutations (bit flips,
// truncations, insertions, version bytes, odd characters), to the Go
// package protocol and to the JavaScript module, and checks that both
// accept the same inputs with the same result and refuse the others with the
// same error (docs/PROTOCOL.md section 13). The mutations are seeded, so a
// failure reproduces.

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/protocol"
)

var errorNames = []struct {
	name string
	err  error
}{
	{"version", protocol.ErrVersion}, {"too_large", protocol.ErrTooLarge}, {"key_size", protocol.ErrKeySize},
	{"key_exponent", protocol.ErrKeyExponent}, {"bad_signature", protocol.ErrBadSignature}, {"not_recipient", protocol.ErrNotRecipient},
	{"expired", protocol.ErrExpired}, {"decrypt", protocol.ErrDecrypt}, {"replay", protocol.ErrReplay},
	{"clock_skew", protocol.ErrClockSkew}, {"mismatch", protocol.ErrMismatch}, {"malformed", protocol.ErrMalformed},
}

func errorName(err error) string {
	if err == nil {
		return ""
	}
	for _, e := range errorNames {
		if errors.Is(err, e.err) {
			return e.name
		}
	}
	return "other: " + err.Error()
}

var b64 = base64.StdEncoding.EncodeToString

// mutateBytes returns a random variation of b: one to three changes.
func mutateBytes(r *rand.Rand, b []byte) []byte {
	for i := r.IntN(3); i >= 0; i-- {
		b = mutateOnce(r, b)
	}
	return b
}

func mutateOnce(r *rand.Rand, b []byte) []byte {
	out := bytes.Clone(b)
	pos := func(n int) int {
		if n == 0 {
			return 0
		}
		if r.IntN(2) == 0 { // headers and length prefixes are near the start
			return r.IntN(min(n, 64))
		}
		return r.IntN(n)
	}
	switch r.IntN(7) {
	case 0:
		if len(out) > 0 {
			out[pos(len(out))] ^= 1 << r.IntN(8)
		}
	case 1:
		out = out[:r.IntN(len(out)+1)]
	case 2:
		for i := r.IntN(3) + 1; i > 0; i-- {
			out = append(out, byte(r.IntN(256)))
		}
	case 3:
		if len(out) > 0 {
			out[pos(len(out))] = byte(r.IntN(256))
		}
	case 4:
		if len(out) > 0 {
			i := pos(len(out))
			out = append(out[:i], out[i+1:]...)
		}
	case 5:
		i := pos(len(out))
		out = append(out[:i], append([]byte{byte(r.IntN(256))}, out[i:]...)...)
	case 6:
		if len(out) > 0 {
			out[0] = 2
		}
	}
	return out
}

var oddChars = []string{"a", "Z", "0", "9", ":", "/", "?", "#", "@", "%", "%2", "%41", "%zz", "+", "-", "_", ".", "~", "[", "]", " ", "\t", "\n",
	";", "=", "&", "é", "\u212a", "\u3000", "\u00a0", "\\", "!", "'", "*", "1", "::", "v=1", "&v=1", "=1"}

// mutateString returns a random variation of s.
func mutateString(r *rand.Rand, s string) string {
	i := 0
	if len(s) > 0 {
		i = r.IntN(len(s))
	}
	switch r.IntN(4) {
	case 0:
		return s[:i] + oddChars[r.IntN(len(oddChars))] + s[i:]
	case 1:
		if len(s) > 0 {
			return s[:i] + s[i+1:]
		}
	case 2:
		if len(s) > 0 {
			return s[:i] + oddChars[r.IntN(len(oddChars))] + s[i+1:]
		}
	case 3:
		return strings.ToUpper(s[:i]) + s[i:]
	}
	return s
}

// mutatePEM returns a random variation of a PEM block: white space, text
// and other blocks around it, headers, changes inside.
func mutatePEM(r *rand.Rand, pem string) string {
	lines := strings.SplitAfter(pem, "\n")
	switch r.IntN(8) {
	case 0:
		return []string{" ", "\n", "\t", "x", "\r\n", "\u00a0"}[r.IntN(6)] + pem
	case 1:
		return pem + []string{" ", "\n", "\t", "x", "\r\n", "\u00a0", "-----END X-----\n"}[r.IntN(7)]
	case 2:
		return pem + pem
	case 3:
		return strings.Replace(pem, "-----\n", "-----\nProc-Type: 4,ENCRYPTED\n\n", 1)
	case 4:
		return strings.ReplaceAll(pem, "\n", "\r\n")
	case 5:
		i := r.IntN(len(lines))
		lines[i] = strings.TrimSuffix(lines[i], "\n") + []string{" ", "\t", "=", "A", ""}[r.IntN(5)] + "\n"
		return strings.Join(lines, "")
	case 6:
		i := r.IntN(len(lines))
		return strings.Join(append(lines[:i:i], lines[i+1:]...), "")
	}
	return mutateString(r, pem)
}

type checkCase struct {
	kind string
	args map[string]any
	goFn func() (string, error)
	what string
}

func TestInteropDifferential(t *testing.T) {
	js := startNode(t)
	p := newParties()
	now := time.Now()
	ms := now.UnixMilli()
	r := rand.New(rand.NewPCG(differentialSeed, 1))

	serverFP := protocol.ServerFingerprint(p.server.Public())
	cert, _ := protocol.CertifyDevice(p.aliceID, p.alice, p.alicePhone, p.aliceEnc.Public(), p.aliceAuth.Public(), now)
	rev, _ := protocol.RevokeDevice(p.aliceID, p.alice, p.aliceLaptop, now)
	env, _ := protocol.Seal(&protocol.Message{ContentType: "text/plain", Body: []byte("hi")}, protocol.Sender{User: p.alice, Device: p.alicePhone, Identity: p.aliceID},
		[]protocol.DeviceRecipient{{User: p.bob, Device: p.bobPhone, Key: p.bobEnc.Public()}, {User: p.alice, Device: p.aliceLaptop, Key: p.laptopEnc.Public()}},
		protocol.SealOptions{Sent: now, TTL: time.Minute})
	cs, setup, _ := protocol.NewClientSession(protocol.ChannelDevice{User: p.alice, Device: p.alicePhone, AuthKey: p.aliceAuth}, p.server.Public(), now)
	parsedSetup, _ := protocol.ParseChannelSetup(setup)
	_, confirm, _ := protocol.AcceptSession(parsedSetup, p.server, p.aliceAuth.Public(), &protocol.MemoryReplayCache{}, 0, now)
	if err := cs.Confirm(confirm, now); err != nil {
		t.Fatal(err)
	}
	cs.SealRequest("POST", "/v1/send", []byte("first"))
	request, _, _ := cs.SealRequest("POST", "/v1/send", []byte("second request"))
	ticketKeys := protocol.NewTicketKeys(p.server)
	resumeSession, _, _ := protocol.AcceptSession(parsedSetup, p.server, p.aliceAuth.Public(), &protocol.MemoryReplayCache{}, 0, now)
	sealedTicket, err := ticketKeys.IssueTicket(resumeSession, now)
	if err != nil {
		t.Fatal(err)
	}
	ticket, err := cs.Ticket(sealedTicket, now)
	if err != nil {
		t.Fatal(err)
	}
	_, resumeMsg, err := protocol.Resume(ticket, now)
	if err != nil {
		t.Fatal(err)
	}
	blobKey := protocol.NewBlobKey()
	var blob bytes.Buffer
	w, _ := protocol.EncryptBlob(&blob, blobKey)
	w.Write(bytes.Repeat([]byte("attachment "), 7000))
	w.Close()
	code, _ := protocol.NewLinkCode(p.serverURL, serverFP, p.alice)
	linkDevice := protocol.LinkRequest{Device: p.aliceLaptop, EncryptionKey: p.laptopEnc.Public(), AuthKey: p.aliceAuth.Public()}
	linkReq, _ := protocol.SealLinkRequest(code, linkDevice)
	// The plaintexts of section 17.5, written out here (their encoders are unexported).
	var16 := func(b []byte) []byte { return append([]byte{byte(len(b) >> 8), byte(len(b))}, b...) }
	linkReqPlain := append(append(bytes.Clone(p.aliceLaptop[:]), var16(pub(p.laptopEnc))...), var16(pub(p.aliceAuth))...)
	linkCert, _ := protocol.CertifyDevice(p.aliceID, p.alice, p.aliceLaptop, p.laptopEnc.Public(), p.aliceAuth.Public(), now)
	linkRespPlain := append(append(bytes.Clone(p.alice[:]), var16(p.aliceID.Bytes())...), var16(linkCert.Bytes())...)
	var encoded struct{ Plaintext []byte }
	js.must("encode_message", map[string]any{"message": messageArgs(&protocol.Message{ContentType: "text/plain; charset=utf-8", GroupID: bytes.Repeat([]byte{7}, 16), Body: []byte("body"),
		Attachments: []protocol.Attachment{{BlobID: [16]byte{1}, Key: [32]byte{2}, SHA256: [32]byte{3}, Size: 1 << 50, Name: "naïve.txt", MediaType: "text/plain"},
			{Name: "", MediaType: ""}}})}, &encoded)
	plaintext := encoded.Plaintext
	card := protocol.ContactCard{Server: p.serverURL, ServerFP: serverFP, User: p.alice, Identity: protocol.IdentityFingerprint(p.aliceID.Public())}
	invite := protocol.Invite{Server: p.serverURL, ServerFP: serverFP, Token: "Zq3vK9xR2mT8wLp4Yh6NcE"}

	bytesCase := func(kind string, data []byte, extra map[string]any, goFn func([]byte) (string, error)) checkCase {
		args := map[string]any{"data": data}
		for k, v := range extra {
			args[k] = v
		}
		return checkCase{kind: kind, args: args, goFn: func() (string, error) { return goFn(data) }, what: fmt.Sprintf("%d bytes %x", len(data), data[:min(len(data), 256)])}
	}
	textCase := func(kind, text string, goFn func(string) (string, error)) checkCase {
		return checkCase{kind: kind, args: map[string]any{"text": text}, goFn: func() (string, error) { return goFn(text) }, what: fmt.Sprintf("%q", text)}
	}

	type seed struct {
		n    int
		make func(r *rand.Rand, js *jsNode) checkCase
	}
	seeds := map[string]seed{
		"public_key": {150, func(r *rand.Rand, _ *jsNode) checkCase {
			return bytesCase("public_key", mutateBytes(r, pub(p.bobID)), nil, func(d []byte) (string, error) {
				k, err := protocol.ParsePublicKey(d)
				if err != nil {
					return "", err
				}
				return b64(k.Bytes()), nil
			})
		}},
		"private_key": {60, func(r *rand.Rand, _ *jsNode) checkCase {
			return bytesCase("private_key", mutateBytes(r, p.bobID.Bytes()), nil, func(d []byte) (string, error) {
				k, err := protocol.ParsePrivateKey(d)
				if err != nil {
					return "", err
				}
				return b64(k.Public().Bytes()), nil
			})
		}},
		"cert": {100, func(r *rand.Rand, _ *jsNode) checkCase {
			return bytesCase("cert", mutateBytes(r, cert.Bytes()), map[string]any{"identity": pub(p.aliceID)}, func(d []byte) (string, error) {
				c, err := protocol.ParseDeviceCert(d)
				if err == nil {
					err = c.Verify(p.aliceID.Public())
				}
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%s/%s/%d", c.User, c.Device, c.Created.UnixMilli()), nil
			})
		}},
		"revocation": {60, func(r *rand.Rand, _ *jsNode) checkCase {
			return bytesCase("revocation", mutateBytes(r, rev.Bytes()), map[string]any{"identity": pub(p.aliceID)}, func(d []byte) (string, error) {
				v, err := protocol.ParseRevocation(d)
				if err == nil {
					err = v.Verify(p.aliceID.Public())
				}
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%s/%s/%d", v.User, v.Device, v.Revoked.UnixMilli()), nil
			})
		}},
		"envelope": {120, func(r *rand.Rand, _ *jsNode) checkCase {
			extra := map[string]any{"user": p.bob.String(), "device": p.bobPhone.String(), "key": p.bobEnc.Bytes(), "identity": pub(p.aliceID), "now_ms": ms}
			return bytesCase("envelope", mutateBytes(r, env), extra, func(d []byte) (string, error) {
				e, err := protocol.ParseEnvelope(d)
				if err != nil {
					return "", err
				}
				m, status, err := e.Open(protocol.Recipient{User: p.bob, Device: p.bobPhone, Key: p.bobEnc}, p.aliceID.Public(), time.UnixMilli(ms))
				if err != nil {
					return "", err
				}
				return describe(status, m), nil
			})
		}},
		"plaintext": {150, func(r *rand.Rand, js *jsNode) checkCase {
			var sealed struct{ Envelope []byte }
			js.must("seal_plaintext", map[string]any{"plaintext": mutateBytes(r, plaintext), "user": p.alice.String(), "device": p.alicePhone.String(),
				"to_user": p.bob.String(), "to_device": p.bobPhone.String(), "to_key": pub(p.bobEnc), "sent_ms": ms}, &sealed)
			extra := map[string]any{"user": p.bob.String(), "device": p.bobPhone.String(), "key": p.bobEnc.Bytes(), "now_ms": ms}
			return bytesCase("envelope", sealed.Envelope, extra, func(d []byte) (string, error) {
				e, err := protocol.ParseEnvelope(d)
				if err != nil {
					return "", err
				}
				m, status, err := e.Open(protocol.Recipient{User: p.bob, Device: p.bobPhone, Key: p.bobEnc}, nil, time.UnixMilli(ms))
				if err != nil {
					return "", err
				}
				return describe(status, m), nil
			})
		}},
		"setup": {80, func(r *rand.Rand, _ *jsNode) checkCase {
			extra := map[string]any{"key": p.server.Bytes(), "identity": pub(p.aliceAuth), "now_ms": ms}
			return bytesCase("setup", mutateBytes(r, setup), extra, func(d []byte) (string, error) {
				s, err := protocol.ParseChannelSetup(d)
				if err != nil {
					return "", err
				}
				ss, _, err := protocol.AcceptSession(s, p.server, p.aliceAuth.Public(), &protocol.MemoryReplayCache{}, 0, time.UnixMilli(ms))
				if err != nil {
					return "", err
				}
				return ss.ID().String(), nil
			})
		}},
		"blob": {100, func(r *rand.Rand, _ *jsNode) checkCase {
			return bytesCase("blob", mutateBytes(r, blob.Bytes()), map[string]any{"key": blobKey[:]}, func(d []byte) (string, error) {
				rd, err := protocol.DecryptBlob(bytes.NewReader(d), blobKey)
				if err != nil {
					return "", err
				}
				plain, err := io.ReadAll(rd)
				if err != nil {
					return "", err
				}
				return b64(plain), nil
			})
		}},
		"link_request": {60, func(r *rand.Rand, _ *jsNode) checkCase {
			c := bytesCase("link_request", mutateBytes(r, linkReq), map[string]any{"text": code.URI()}, func(d []byte) (string, error) {
				req, err := protocol.OpenLinkRequest(code, d)
				if err != nil {
					return "", err
				}
				return req.Device.String(), nil
			})
			return c
		}},
		"public_key_pem": {150, func(r *rand.Rand, _ *jsNode) checkCase {
			return textCase("public_key_pem", mutatePEM(r, string(p.bobID.Public().PEM())), func(s string) (string, error) {
				k, err := protocol.ParsePublicKeyPEM([]byte(s))
				if err != nil {
					return "", err
				}
				return b64(k.Bytes()), nil
			})
		}},
		"private_key_pem": {60, func(r *rand.Rand, _ *jsNode) checkCase {
			return textCase("private_key_pem", mutatePEM(r, string(p.bobID.PEM())), func(s string) (string, error) {
				k, err := protocol.ParsePrivateKeyPEM([]byte(s))
				if err != nil {
					return "", err
				}
				return b64(k.Public().Bytes()), nil
			})
		}},
		"frame": {100, func(r *rand.Rand, _ *jsNode) checkCase {
			extra := map[string]any{"setup": setup, "key": p.server.Bytes(), "identity": pub(p.aliceAuth), "now_ms": ms, "method": "POST", "path": "/v1/send"}
			return bytesCase("frame", mutateBytes(r, request), extra, func(d []byte) (string, error) {
				s, _ := protocol.ParseChannelSetup(setup)
				ss, _, err := protocol.AcceptSession(s, p.server, p.aliceAuth.Public(), &protocol.MemoryReplayCache{}, 0, time.UnixMilli(ms))
				if err != nil {
					return "", err
				}
				body, ctr, err := ss.OpenRequest("POST", "/v1/send", d, time.UnixMilli(ms))
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%d/%s", ctr, b64(body)), nil
			})
		}},
		"resume": {120, func(r *rand.Rand, _ *jsNode) checkCase {
			extra := map[string]any{"key": p.server.Bytes(), "now_ms": ms}
			return bytesCase("resume", mutateBytes(r, resumeMsg), extra, func(d []byte) (string, error) {
				q, err := protocol.ParseResume(d)
				if err == nil {
					err = ticketKeys.Check(q, time.UnixMilli(ms))
				}
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%s/%s", q.User, q.Device), nil
			})
		}},
		"link_request_plain": {100, func(r *rand.Rand, js *jsNode) checkCase {
			var sealed struct{ Message []byte }
			js.must("seal_link_plain", map[string]any{"uri": code.URI(), "type": 7, "plaintext": mutateBytes(r, linkReqPlain)}, &sealed)
			return bytesCase("link_request", sealed.Message, map[string]any{"text": code.URI()}, func(d []byte) (string, error) {
				req, err := protocol.OpenLinkRequest(code, d)
				if err != nil {
					return "", err
				}
				return req.Device.String(), nil
			})
		}},
		"link_response_plain": {100, func(r *rand.Rand, js *jsNode) checkCase {
			var sealed struct{ Message []byte }
			js.must("seal_link_plain", map[string]any{"uri": code.URI(), "type": 8, "plaintext": mutateBytes(r, linkRespPlain)}, &sealed)
			extra := map[string]any{"text": code.URI(), "device": linkDevice.Device.String(), "enc": pub(p.laptopEnc), "auth": pub(p.aliceAuth)}
			return bytesCase("link_response", sealed.Message, extra, func(d []byte) (string, error) {
				resp, err := protocol.OpenLinkResponse(code, &linkDevice, d)
				if err != nil {
					return "", err
				}
				return fmt.Sprintf("%s/%s/%s", resp.User, b64(resp.Identity.Public().Bytes()), b64(resp.Cert.Bytes())), nil
			})
		}},
		"contact": {250, func(r *rand.Rand, _ *jsNode) checkCase {
			return textCase("contact", mutateString(r, card.URI()), func(s string) (string, error) {
				c, err := protocol.ParseContactCard(s)
				return c.URI(), err
			})
		}},
		"invite": {150, func(r *rand.Rand, _ *jsNode) checkCase {
			return textCase("invite", mutateString(r, invite.URI()), func(s string) (string, error) {
				i, err := protocol.ParseInvite(s)
				return i.URI(), err
			})
		}},
		"link": {150, func(r *rand.Rand, _ *jsNode) checkCase {
			return textCase("link", mutateString(r, code.URI()), func(s string) (string, error) {
				c, err := protocol.ParseLinkCode(s)
				return c.URI(), err
			})
		}},
		"server_url": {400, func(r *rand.Rand, _ *jsNode) checkCase {
			bases := []string{p.serverURL, "https://[2001:db8::1]:443/a/b/", "https://10.0.0.1", "HTTPS://Host.Example/x%2Fy", "https://[::ffff:1.2.3.4]"}
			s := mutateString(r, bases[r.IntN(len(bases))])
			if r.IntN(3) == 0 {
				s = mutateString(r, s)
			}
			return textCase("server_url", s, protocol.CheckServerURL)
		}},
		"user_id": {150, func(r *rand.Rand, _ *jsNode) checkCase {
			return textCase("user_id", mutateString(r, p.alice.String()), func(s string) (string, error) {
				u, err := protocol.ParseUserID(s)
				return u.String(), err
			})
		}},
		"device_id": {80, func(r *rand.Rand, _ *jsNode) checkCase {
			return textCase("device_id", mutateString(r, p.bobPhone.String()), func(s string) (string, error) {
				d, err := protocol.ParseDeviceID(s)
				return d.String(), err
			})
		}},
		"message_id": {80, func(r *rand.Rand, _ *jsNode) checkCase {
			return textCase("message_id", mutateString(r, protocol.NewMessageID().String()), func(s string) (string, error) {
				m, err := protocol.ParseMessageID(s)
				return m.String(), err
			})
		}},
		"link_mailbox": {80, func(r *rand.Rand, _ *jsNode) checkCase {
			return textCase("link_mailbox", mutateString(r, code.RequestMailbox().String()), func(s string) (string, error) {
				m, err := protocol.ParseLinkMailbox(s)
				return m.String(), err
			})
		}},
		"token": {80, func(r *rand.Rand, _ *jsNode) checkCase {
			return textCase("token", mutateString(r, invite.Token), func(s string) (string, error) {
				return s, protocol.CheckToken(s)
			})
		}},
		"fingerprint": {100, func(r *rand.Rand, _ *jsNode) checkCase {
			return textCase("fingerprint", mutateString(r, serverFP.String()), func(s string) (string, error) {
				f, err := protocol.ParseFingerprint(s)
				return f.String(), err
			})
		}},
	}
	for _, kind := range []string{"public_key", "public_key_pem", "private_key", "private_key_pem", "frame", "resume", "plaintext", "cert", "revocation", "envelope", "setup", "blob", "link_request", "link_request_plain", "link_response_plain", "contact", "invite", "link", "server_url", "user_id", "device_id", "message_id", "link_mailbox", "token", "fingerprint"} {
		t.Run(kind, func(t *testing.T) {
			js := js.with(t)
			s := seeds[kind]
			accepted, failures := 0, 0
			codes := map[string]int{}
			n := s.n * int(differentialScale)
			for i := 0; i < n && failures < 10; i++ {
				c := s.make(r, js)
				goResult, goErr := c.goFn()
				var got struct{ Code, Result string }
				js.must("check", mergeArgs(map[string]any{"kind": c.kind}, c.args), &got)
				want := errorName(goErr)
				if strings.HasPrefix(want, "other") {
					t.Fatalf("%s: Go failed with an error outside section 13: %v", c.what, goErr)
				}
				codes[want]++
				if got.Code != want || (want == "" && got.Result != goResult) {
					failures++
					t.Errorf("%.400s: Go %q %.80q, JavaScript %q %.80q", c.what, want, goResult, got.Code, got.Result)
				}
				if want == "" {
					accepted++
				}
			}
			t.Logf("%d inputs, outcomes %v", n, codes)
		})
	}
}

// describe is the text an opened message is compared by (as interop.mjs writes it).
func describe(status protocol.SignatureStatus, m *protocol.Message) string {
	parts := []string{status.String(), m.ContentType, b64(m.Body), hex.EncodeToString(m.GroupID)}
	for _, a := range m.Attachments {
		parts = append(parts, strings.Join([]string{hex.EncodeToString(a.BlobID[:]), hex.EncodeToString(a.Key[:]), hex.EncodeToString(a.SHA256[:]),
			strconv.FormatUint(a.Size, 10), b64([]byte(a.Name)), a.MediaType}, ":"))
	}
	return strings.Join(parts, "/")
}

func mergeArgs(a, b map[string]any) map[string]any {
	for k, v := range b {
		a[k] = v
	}
	return a
}

// differentialSeed and differentialScale: change them to search further
// (QRTALK_DIFF_SEED, QRTALK_DIFF_SCALE), keep the defaults in CI.
var differentialSeed, differentialScale = envUint("QRTALK_DIFF_SEED", 20261126), envUint("QRTALK_DIFF_SCALE", 1)

func envUint(name string, def uint64) uint64 {
	if v, err := strconv.ParseUint(os.Getenv(name), 10, 64); err == nil {
		return v
	}
	return def
}
