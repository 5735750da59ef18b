package web_test

// TestInterop checks the JavaScript protocol module (web/app/js/proto)
// against the Go package protocol, both ways: a Node process
// (testdata/interop.mjs) seals envelopes, certificates, revocations, blobs,
// provisioning messages and channel frames for the fixed keys of
// internal/testkeys, and Go opens and verifies them; Go seals the same kinds
// of data and the JavaScript side opens them. The two sides talk in
// line-delimited JSON over the child's stdin and stdout, which lets a
// channel or a device link run as a conversation.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

// jsNode is a running testdata/interop.mjs, as seen from test t.
type jsNode struct {
	t *testing.T
	*nodeProc
}

type nodeProc struct {
	in     io.WriteCloser
	out    *bufio.Reader
	stderr *lockedBuffer
	next   int
}

// with returns n for a subtest: its failures are t's.
func (n *jsNode) with(t *testing.T) *jsNode { return &jsNode{t: t, nodeProc: n.nodeProc} }

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// jsError is a failure the JavaScript side reported: code is a protocol
// error name (docs/PROTOCOL.md section 13) or "exception".
type jsError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func startNode(t *testing.T) *jsNode {
	t.Helper()
	path, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("node is required in CI for the JavaScript interop test: %v", err)
		}
		t.Skipf("node not found (%v): skipping the JavaScript interop test (install Node.js 20 or later to run it)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	cmd := exec.CommandContext(ctx, path, "testdata/interop.mjs")
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting node: %v", err)
	}
	t.Cleanup(func() {
		in.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil && !t.Failed() {
				t.Errorf("node exited: %v\n%s", err, stderr)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("node did not exit after its input closed")
		}
		cancel()
	})
	return &jsNode{t: t, nodeProc: &nodeProc{in: in, out: bufio.NewReaderSize(out, 1<<20), stderr: stderr}}
}

// call sends one request and decodes the answer into resp; it returns the
// error the JavaScript side reported, if any.
func (n *jsNode) call(op string, args map[string]any, resp any) *jsError {
	n.t.Helper()
	n.next++
	req := map[string]any{"id": n.next, "op": op}
	for k, v := range args {
		req[k] = v
	}
	line, err := json.Marshal(req)
	if err != nil {
		n.t.Fatal(err)
	}
	if _, err := n.in.Write(append(line, '\n')); err != nil {
		n.t.Fatalf("%s: writing to node: %v\n%s", op, err, n.stderr)
	}
	answer, err := n.out.ReadBytes('\n')
	if err != nil {
		n.t.Fatalf("%s: reading from node: %v\n%s", op, err, n.stderr)
	}
	var head struct {
		ID    int      `json:"id"`
		Error *jsError `json:"error"`
	}
	if err := json.Unmarshal(answer, &head); err != nil || head.ID != n.next {
		n.t.Fatalf("%s: bad answer from node (%v): %.300s", op, err, answer)
	}
	if head.Error != nil {
		if head.Error.Code == "exception" {
			n.t.Fatalf("%s: JavaScript exception: %s", op, head.Error.Message)
		}
		return head.Error
	}
	if resp != nil {
		if err := json.Unmarshal(answer, resp); err != nil {
			n.t.Fatalf("%s: decoding the answer: %v", op, err)
		}
	}
	return nil
}

// must is call for a request that must succeed.
func (n *jsNode) must(op string, args map[string]any, resp any) {
	n.t.Helper()
	if e := n.call(op, args, resp); e != nil {
		n.t.Fatalf("%s: JavaScript refused: %s", op, e.Message)
	}
}

// wantCode is call for a request that must fail with the protocol error code.
func (n *jsNode) wantCode(code, op string, args map[string]any) {
	n.t.Helper()
	e := n.call(op, args, nil)
	if e == nil {
		n.t.Fatalf("%s: JavaScript succeeded, want error %s", op, code)
	}
	if e.Code != code {
		n.t.Fatalf("%s: JavaScript error %s (%s), want %s", op, e.Code, e.Message, code)
	}
}

type jsMessage struct {
	ContentType string `json:"content_type"`
	GroupID     []byte `json:"group_id"`
	Body        []byte `json:"body"`
	Attachments []struct {
		BlobID    []byte `json:"blob_id"`
		Key       []byte `json:"key"`
		SHA256    []byte `json:"sha256"`
		Size      uint64 `json:"size"`
		Name      string `json:"name"`
		MediaType string `json:"media_type"`
	} `json:"attachments"`
}

func messageArgs(m *protocol.Message) map[string]any {
	atts := []map[string]any{}
	for _, a := range m.Attachments {
		atts = append(atts, map[string]any{"blob_id": a.BlobID[:], "key": a.Key[:], "sha256": a.SHA256[:], "size": a.Size, "name": a.Name, "media_type": a.MediaType})
	}
	return map[string]any{"content_type": m.ContentType, "group_id": m.GroupID, "body": m.Body, "attachments": atts}
}

func sameMessage(t *testing.T, got jsMessage, want *protocol.Message) {
	t.Helper()
	if got.ContentType != want.ContentType || !bytes.Equal(got.GroupID, want.GroupID) || !bytes.Equal(got.Body, want.Body) || len(got.Attachments) != len(want.Attachments) {
		t.Fatalf("JavaScript opened %+v, want %+v", got, want)
	}
	for i, a := range want.Attachments {
		g := got.Attachments[i]
		if !bytes.Equal(g.BlobID, a.BlobID[:]) || !bytes.Equal(g.Key, a.Key[:]) || !bytes.Equal(g.SHA256, a.SHA256[:]) || g.Size != a.Size || g.Name != a.Name || g.MediaType != a.MediaType {
			t.Fatalf("attachment %d: JavaScript opened %+v, want %+v", i, g, a)
		}
	}
}

func sameGoMessage(t *testing.T, got, want *protocol.Message) {
	t.Helper()
	if got.ContentType != want.ContentType || !bytes.Equal(got.GroupID, want.GroupID) || !bytes.Equal(got.Body, want.Body) || len(got.Attachments) != len(want.Attachments) {
		t.Fatalf("Go opened %+v, want %+v", got, want)
	}
	for i := range want.Attachments {
		if got.Attachments[i] != want.Attachments[i] {
			t.Fatalf("attachment %d: Go opened %+v, want %+v", i, got.Attachments[i], want.Attachments[i])
		}
	}
}

// parties: fixed test keys for two users, their devices and a server.
type parties struct {
	alice, bob                              protocol.UserID
	alicePhone, aliceLaptop, bobPhone       protocol.DeviceID
	aliceID, aliceEnc, aliceAuth, laptopEnc *protocol.PrivateKey
	bobID, bobEnc, bobAuth, server          *protocol.PrivateKey
	serverURL                               string
}

func newParties() *parties {
	return &parties{
		alice: protocol.NewUserID(), bob: protocol.NewUserID(),
		alicePhone: protocol.NewDeviceID(), aliceLaptop: protocol.NewDeviceID(), bobPhone: protocol.NewDeviceID(),
		aliceID: testkeys.Key(0), aliceEnc: testkeys.Key(1), aliceAuth: testkeys.Key(2), laptopEnc: testkeys.Key(7),
		bobID: testkeys.Key(3), bobEnc: testkeys.Key(4), bobAuth: testkeys.Key(5), server: testkeys.Key(6),
		serverURL: "https://chat.example.org:8443/qrtalk",
	}
}

func pub(k *protocol.PrivateKey) []byte { return k.Public().Bytes() }

func TestInterop(t *testing.T) {
	js := startNode(t)
	p := newParties()
	now := time.Now()
	ms := now.UnixMilli()

	t.Run("envelopes", func(t *testing.T) {
		js := js.with(t)
		msg := &protocol.Message{
			ContentType: "text/plain; charset=utf-8", GroupID: bytes.Repeat([]byte{9}, 16), Body: []byte("Meet at the north gate. ✓"),
			Attachments: []protocol.Attachment{{BlobID: [16]byte{1, 2}, Key: [32]byte{3, 4}, SHA256: [32]byte{5, 6}, Size: 1 << 40, Name: "gate ü.jpg", MediaType: "image/jpeg"}},
		}
		to := []map[string]any{
			{"user": p.bob.String(), "device": p.bobPhone.String(), "key": pub(p.bobEnc)},
			{"user": p.alice.String(), "device": p.aliceLaptop.String(), "key": pub(p.laptopEnc)},
		}
		for _, unsigned := range []bool{false, true} {
			// Sealed in JavaScript, opened in Go.
			var sealed struct{ Envelope []byte }
			js.must("seal", map[string]any{"user": p.alice.String(), "device": p.alicePhone.String(), "identity": p.aliceID.Bytes(),
				"to": to, "message": messageArgs(msg), "ttl_ms": 3600 * 1000, "sent_ms": ms, "unsigned": unsigned}, &sealed)
			env, err := protocol.ParseEnvelope(sealed.Envelope)
			if err != nil {
				t.Fatalf("Go parses the JavaScript envelope: %v", err)
			}
			if env.Sender != p.alice || env.SenderDevice != p.alicePhone || env.Sent.UnixMilli() != ms || env.TTL != time.Hour || env.Signed() == unsigned || len(env.Devices) != 2 {
				t.Fatalf("JavaScript envelope routing fields: %+v", env)
			}
			wantStatus := protocol.Verified
			if unsigned {
				wantStatus = protocol.Unsigned
			}
			for _, r := range []protocol.Recipient{{User: p.bob, Device: p.bobPhone, Key: p.bobEnc}, {User: p.alice, Device: p.aliceLaptop, Key: p.laptopEnc}} {
				got, status, err := env.Open(r, p.aliceID.Public(), now)
				if err != nil || status != wantStatus {
					t.Fatalf("Go opens the JavaScript envelope for %s: %v %v", r.Device, status, err)
				}
				sameGoMessage(t, got, msg)
			}
			if !unsigned {
				if _, _, err := env.Open(protocol.Recipient{User: p.bob, Device: p.bobPhone, Key: p.bobEnc}, p.bobID.Public(), now); err == nil {
					t.Fatal("Go verified a JavaScript signature under the wrong identity key")
				}
			}

			// Sealed in Go, opened in JavaScript.
			goSealed, err := protocol.Seal(msg, protocol.Sender{User: p.alice, Device: p.alicePhone, Identity: p.aliceID},
				[]protocol.DeviceRecipient{{User: p.bob, Device: p.bobPhone, Key: p.bobEnc.Public()}, {User: p.alice, Device: p.aliceLaptop, Key: p.laptopEnc.Public()}},
				protocol.SealOptions{Sent: now, TTL: 5 * time.Minute, Unsigned: unsigned})
			if err != nil {
				t.Fatal(err)
			}
			goEnv, _ := protocol.ParseEnvelope(goSealed)
			var opened struct {
				Status    string
				Message   jsMessage
				ID        string `json:"message_id"`
				Delivered [][]byte
			}
			js.must("open", map[string]any{"envelope": goSealed, "user": p.bob.String(), "device": p.bobPhone.String(), "key": p.bobEnc.Bytes(),
				"sender_identity": pub(p.aliceID), "now_ms": ms}, &opened)
			if opened.Status != wantStatus.String() || opened.ID != goEnv.ID.String() {
				t.Fatalf("JavaScript opened the Go envelope with status %s, ID %s", opened.Status, opened.ID)
			}
			sameMessage(t, opened.Message, msg)
			// The delivered forms (section 10.6) are byte for byte Go's.
			for i := range goEnv.Devices {
				if !bytes.Equal(opened.Delivered[i], goEnv.For(i)) {
					t.Fatalf("JavaScript's delivered form %d differs from Go's", i)
				}
			}
			laptop := goEnv.For(1)
			if goEnv.Devices[0].Device == p.aliceLaptop {
				laptop = goEnv.For(0)
			}
			js.must("open", map[string]any{"envelope": laptop, "user": p.alice.String(), "device": p.aliceLaptop.String(), "key": p.laptopEnc.Bytes(), "now_ms": ms}, &opened)
			if want := map[bool]string{false: "unchecked", true: "unsigned"}[unsigned]; opened.Status != want {
				t.Fatalf("JavaScript opened the delivered Go envelope with status %s, want %s", opened.Status, want)
			}
			if !unsigned {
				js.wantCode("bad_signature", "open", map[string]any{"envelope": goSealed, "user": p.bob.String(), "device": p.bobPhone.String(), "key": p.bobEnc.Bytes(),
					"sender_identity": pub(p.bobID), "now_ms": ms})
			}
			js.wantCode("expired", "open", map[string]any{"envelope": goSealed, "user": p.bob.String(), "device": p.bobPhone.String(), "key": p.bobEnc.Bytes(), "now_ms": ms + 5*60*1000})
		}
	})

	t.Run("certificates and revocations", func(t *testing.T) {
		js := js.with(t)
		created := now.Truncate(time.Second)
		var jsCert struct{ Cert []byte }
		js.must("certify", map[string]any{"identity": p.aliceID.Bytes(), "user": p.alice.String(), "device": p.alicePhone.String(),
			"enc": pub(p.aliceEnc), "auth": pub(p.aliceAuth), "created_ms": ms}, &jsCert)
		c, err := protocol.ParseDeviceCert(jsCert.Cert)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Verify(p.aliceID.Public()); err != nil {
			t.Fatalf("Go verifies the JavaScript certificate: %v", err)
		}
		if c.User != p.alice || c.Device != p.alicePhone || !c.Created.Equal(created) || !c.EncryptionKey.Equal(p.aliceEnc.Public()) || !c.AuthKey.Equal(p.aliceAuth.Public()) {
			t.Fatalf("JavaScript certificate fields: %+v", c)
		}
		goCert, err := protocol.CertifyDevice(p.aliceID, p.alice, p.aliceLaptop, p.laptopEnc.Public(), p.aliceAuth.Public(), now)
		if err != nil {
			t.Fatal(err)
		}
		goRev, err := protocol.RevokeDevice(p.aliceID, p.alice, p.aliceLaptop, now)
		if err != nil {
			t.Fatal(err)
		}
		var list struct {
			Devices []struct {
				Device    string
				CreatedMS int64 `json:"created_ms"`
				Enc       []byte
			}
		}
		js.must("device_list", map[string]any{"identity": pub(p.aliceID), "user": p.alice.String(), "certs": [][]byte{jsCert.Cert, goCert.Bytes()}, "revocations": [][]byte{}}, &list)
		if len(list.Devices) != 2 || list.Devices[1].Device != p.aliceLaptop.String() || list.Devices[1].CreatedMS != created.UnixMilli() || !bytes.Equal(list.Devices[1].Enc, pub(p.laptopEnc)) {
			t.Fatalf("JavaScript device list: %+v", list)
		}
		js.must("device_list", map[string]any{"identity": pub(p.aliceID), "user": p.alice.String(), "certs": [][]byte{jsCert.Cert, goCert.Bytes()}, "revocations": [][]byte{goRev.Bytes()}}, &list)
		if len(list.Devices) != 1 || list.Devices[0].Device != p.alicePhone.String() {
			t.Fatalf("JavaScript kept a device Go revoked: %+v", list)
		}
		js.wantCode("bad_signature", "device_list", map[string]any{"identity": pub(p.bobID), "user": p.alice.String(), "certs": [][]byte{goCert.Bytes()}, "revocations": [][]byte{}})

		var jsRev struct{ Revocation []byte }
		js.must("revoke", map[string]any{"identity": p.aliceID.Bytes(), "user": p.alice.String(), "device": p.alicePhone.String(), "at_ms": ms}, &jsRev)
		kept, err := protocol.VerifyDeviceList(p.aliceID.Public(), p.alice, [][]byte{jsCert.Cert, goCert.Bytes()}, [][]byte{jsRev.Revocation})
		if err != nil || len(kept) != 1 || kept[0].Device != p.aliceLaptop {
			t.Fatalf("Go device list with the JavaScript revocation: %v %v", kept, err)
		}
	})

	t.Run("fingerprints and contact cards", func(t *testing.T) {
		js := js.with(t)
		var fps struct{ Identity, Numeric, Server string }
		js.must("fingerprints", map[string]any{"key": pub(p.aliceID)}, &fps)
		id := protocol.IdentityFingerprint(p.aliceID.Public())
		if fps.Identity != id.String() || fps.Numeric != id.Numeric() || fps.Server != protocol.ServerFingerprint(p.aliceID.Public()).String() {
			t.Fatalf("JavaScript fingerprints %+v differ from Go's", fps)
		}
		card := protocol.ContactCard{Server: p.serverURL, ServerFP: protocol.ServerFingerprint(p.server.Public()), User: p.alice, Identity: id}
		var got struct {
			Server, User, Identity, URI string
			ServerFP                    string `json:"server_fp"`
		}
		js.must("contact_card", map[string]any{"uri": card.URI(), "identity": pub(p.aliceID)}, &got)
		if got.Server != card.Server || got.ServerFP != card.ServerFP.String() || got.User != p.alice.String() || got.Identity != id.String() || got.URI != card.URI() {
			t.Fatalf("JavaScript read the Go contact card as %+v", got)
		}
		if _, err := protocol.ParseContactCard(got.URI); err != nil {
			t.Fatal(err)
		}
		js.wantCode("mismatch", "contact_card", map[string]any{"uri": card.URI(), "identity": pub(p.bobID)})
	})

	t.Run("blobs", func(t *testing.T) {
		js := js.with(t)
		for _, size := range []int{0, 1000, 2 * protocol.BlobChunkSize, 3*protocol.BlobChunkSize + 7} {
			plain := make([]byte, size)
			rand.Read(plain)
			key := protocol.NewBlobKey()
			var goBlob bytes.Buffer
			w, _ := protocol.EncryptBlob(&goBlob, key)
			w.Write(plain)
			w.Close()
			var jsBlob struct {
				Blob, SHA256 []byte
				Size         int
			}
			js.must("encrypt_blob", map[string]any{"plaintext": plain, "key": key[:]}, &jsBlob)
			// AES-GCM under a given key is deterministic: the same bytes.
			if !bytes.Equal(jsBlob.Blob, goBlob.Bytes()) {
				t.Fatalf("%d bytes: the JavaScript blob differs from Go's", size)
			}
			if sum := sha256.Sum256(jsBlob.Blob); !bytes.Equal(jsBlob.SHA256, sum[:]) || jsBlob.Size != size {
				t.Fatalf("%d bytes: JavaScript reports size %d and another SHA-256", size, jsBlob.Size)
			}
			r, err := protocol.DecryptBlob(bytes.NewReader(jsBlob.Blob), key)
			if err != nil {
				t.Fatal(err)
			}
			if back, err := io.ReadAll(r); err != nil || !bytes.Equal(back, plain) {
				t.Fatalf("%d bytes: Go decrypts the JavaScript blob: %v", size, err)
			}
			sum := sha256.Sum256(goBlob.Bytes())
			var dec struct{ Plaintext []byte }
			js.must("decrypt_blob", map[string]any{"blob": goBlob.Bytes(), "key": key[:], "sha256": sum[:]}, &dec)
			if !bytes.Equal(dec.Plaintext, plain) {
				t.Fatalf("%d bytes: JavaScript decrypts the Go blob to other bytes", size)
			}
			js.wantCode("decrypt", "decrypt_blob", map[string]any{"blob": goBlob.Bytes()[:goBlob.Len()-1], "key": key[:], "sha256": nil})
		}
	})

	t.Run("channel: JavaScript device, Go server", func(t *testing.T) {
		js := js.with(t)
		var setup struct {
			Setup     []byte
			SessionID string `json:"session_id"`
		}
		js.must("client_setup", map[string]any{"name": "js-client", "user": p.alice.String(), "device": p.alicePhone.String(), "auth": p.aliceAuth.Bytes(), "server": pub(p.server), "now_ms": ms}, &setup)
		parsed, err := protocol.ParseChannelSetup(setup.Setup)
		if err != nil {
			t.Fatal(err)
		}
		ss, confirm, err := protocol.AcceptSession(parsed, p.server, p.aliceAuth.Public(), &protocol.MemoryReplayCache{}, 30*time.Minute, now)
		if err != nil {
			t.Fatalf("Go accepts the JavaScript setup: %v", err)
		}
		if ss.ID().String() != setup.SessionID || ss.User != p.alice || ss.Device != p.alicePhone {
			t.Fatalf("session %s of %s/%s, JavaScript says %s", ss.ID(), ss.User, ss.Device, setup.SessionID)
		}
		var confirmed struct {
			ExpiresMS int64 `json:"expires_ms"`
		}
		js.must("client_confirm", map[string]any{"name": "js-client", "frame": confirm, "now_ms": ms}, &confirmed)
		if confirmed.ExpiresMS != ss.Expires().UnixMilli() {
			t.Fatalf("JavaScript session ends at %d, Go's at %d", confirmed.ExpiresMS, ss.Expires().UnixMilli())
		}
		type req struct {
			Frame   []byte
			Counter uint64
		}
		var r1, r2 req
		js.must("client_request", map[string]any{"name": "js-client", "method": "POST", "path": "/v1/send", "body": []byte("first")}, &r1)
		js.must("client_request", map[string]any{"name": "js-client", "method": "GET", "path": "/v1/devices", "body": []byte{}}, &r2)
		// Answered out of order, as concurrent requests may be.
		for _, c := range []struct {
			r            req
			method, path string
			body         string
		}{{r2, "GET", "/v1/devices", ""}, {r1, "POST", "/v1/send", "first"}} {
			body, ctr, err := ss.OpenRequest(c.method, c.path, c.r.Frame, now)
			if err != nil || string(body) != c.body || ctr != c.r.Counter {
				t.Fatalf("Go opens the JavaScript request %s %s: %q %d %v", c.method, c.path, body, ctr, err)
			}
			resp := ss.SealResponse(ctr, c.method, c.path, []byte("answer to "+c.path))
			var got struct{ Body []byte }
			js.must("client_response", map[string]any{"name": "js-client", "counter": ctr, "method": c.method, "path": c.path, "frame": resp, "now_ms": ms}, &got)
			if string(got.Body) != "answer to "+c.path {
				t.Fatalf("JavaScript opened the Go response as %q", got.Body)
			}
		}
		push := ss.SealPush([]byte("pushed"))
		js.wantCode("decrypt", "client_response", map[string]any{"name": "js-client", "counter": 0, "method": "PUSH", "path": "/", "frame": push, "now_ms": ms})
		var pushed struct{ Body []byte }
		js.must("client_push", map[string]any{"name": "js-client", "frame": push, "now_ms": ms}, &pushed)
		if string(pushed.Body) != "pushed" {
			t.Fatalf("JavaScript opened the Go push as %q", pushed.Body)
		}
		js.wantCode("replay", "client_push", map[string]any{"name": "js-client", "frame": push, "now_ms": ms})
		if _, _, err := ss.OpenRequest("POST", "/v1/send", r1.Frame, now); err == nil {
			t.Fatal("Go opened a JavaScript request twice")
		}
	})

	t.Run("channel: Go device, JavaScript server", func(t *testing.T) {
		js := js.with(t)
		cs, setup, err := protocol.NewClientSession(protocol.ChannelDevice{User: p.bob, Device: p.bobPhone, AuthKey: p.bobAuth}, p.server.Public(), now)
		if err != nil {
			t.Fatal(err)
		}
		var acc struct {
			Confirm   []byte
			SessionID string `json:"session_id"`
			ExpiresMS int64  `json:"expires_ms"`
		}
		js.must("server_accept", map[string]any{"name": "js-server", "setup": setup, "server": p.server.Bytes(), "auth": pub(p.bobAuth), "lifetime_ms": 0, "now_ms": ms}, &acc)
		if acc.SessionID != cs.ID().String() || acc.ExpiresMS != ms+time.Hour.Milliseconds() {
			t.Fatalf("JavaScript session %s ends at %d; Go's is %s", acc.SessionID, acc.ExpiresMS, cs.ID())
		}
		if err := cs.Confirm(acc.Confirm, now); err != nil {
			t.Fatalf("Go checks the JavaScript confirmation: %v", err)
		}
		frame, ctr, err := cs.SealRequest("POST", "/v1/keys", []byte("request body"))
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Body    []byte
			Counter uint64
		}
		js.must("server_request", map[string]any{"name": "js-server", "method": "POST", "path": "/v1/keys", "frame": frame, "now_ms": ms}, &got)
		if string(got.Body) != "request body" || got.Counter != ctr {
			t.Fatalf("JavaScript opened the Go request as %q, counter %d", got.Body, got.Counter)
		}
		js.wantCode("replay", "server_request", map[string]any{"name": "js-server", "method": "POST", "path": "/v1/keys", "frame": frame, "now_ms": ms})
		var resp struct{ Frame []byte }
		js.must("server_response", map[string]any{"name": "js-server", "counter": ctr, "method": "POST", "path": "/v1/keys", "body": []byte("response body")}, &resp)
		body, err := cs.OpenResponse(ctr, "POST", "/v1/keys", resp.Frame, now)
		if err != nil || string(body) != "response body" {
			t.Fatalf("Go opens the JavaScript response: %q %v", body, err)
		}
	})

	t.Run("resumption: JavaScript device, Go server", func(t *testing.T) {
		js := js.with(t)
		tk := protocol.NewTicketKeys(p.server)
		cache := &protocol.MemoryReplayCache{}
		var setup struct{ Setup []byte }
		js.must("client_setup", map[string]any{"name": "js-resumer", "user": p.bob.String(), "device": p.bobPhone.String(), "auth": p.bobAuth.Bytes(), "server": pub(p.server), "now_ms": ms}, &setup)
		parsed, err := protocol.ParseChannelSetup(setup.Setup)
		if err != nil {
			t.Fatal(err)
		}
		ss, confirm, err := protocol.AcceptSession(parsed, p.server, p.bobAuth.Public(), cache, 0, now)
		if err != nil {
			t.Fatal(err)
		}
		js.must("client_confirm", map[string]any{"name": "js-resumer", "frame": confirm, "now_ms": ms}, nil)
		at := now
		for round := 0; round < 2; round++ {
			ticket, err := tk.IssueTicket(ss, at)
			if err != nil {
				t.Fatal(err)
			}
			var paired struct {
				ExpiresMS int64 `json:"expires_ms"`
			}
			js.must("client_ticket", map[string]any{"name": "js-resumer", "ticket": ticket, "now_ms": at.UnixMilli()}, &paired)
			if paired.ExpiresMS != now.Add(protocol.TicketLifetime).UnixMilli() {
				t.Fatalf("JavaScript reads the ticket's expiry as %d", paired.ExpiresMS)
			}
			at = at.Add(time.Minute)
			var res struct{ Message []byte }
			js.must("client_resume", map[string]any{"name": "js-resumer", "now_ms": at.UnixMilli()}, &res)
			q, err := protocol.ParseResume(res.Message)
			if err != nil {
				t.Fatal(err)
			}
			if err := tk.Check(q, at); err != nil {
				t.Fatalf("round %d: Go checks the JavaScript resume: %v", round, err)
			}
			var answer []byte
			ss, answer, err = protocol.AcceptResume(q, cache, 10*time.Minute, at)
			if err != nil {
				t.Fatal(err)
			}
			var fin struct {
				SessionID string `json:"session_id"`
				ExpiresMS int64  `json:"expires_ms"`
			}
			js.must("client_resume_finish", map[string]any{"name": "js-resumer", "answer": answer, "now_ms": at.UnixMilli()}, &fin)
			if fin.SessionID != ss.ID().String() || fin.ExpiresMS != ss.Expires().UnixMilli() {
				t.Fatalf("round %d: JavaScript resumed session %s until %d, Go's %s until %d", round, fin.SessionID, fin.ExpiresMS, ss.ID(), ss.Expires().UnixMilli())
			}
			var r struct {
				Frame   []byte
				Counter uint64
			}
			js.must("client_request", map[string]any{"name": "js-resumer", "method": "POST", "path": "/v1/ack", "body": []byte("resumed")}, &r)
			if body, _, err := ss.OpenRequest("POST", "/v1/ack", r.Frame, at); err != nil || string(body) != "resumed" {
				t.Fatalf("round %d: Go opens a request of the resumed session: %q %v", round, body, err)
			}
			// The same resume again: its ticket is spent.
			q2, _ := protocol.ParseResume(res.Message)
			if err := tk.Check(q2, at); err != nil {
				t.Fatal(err)
			}
			if _, _, err := protocol.AcceptResume(q2, cache, 0, at); errorName(err) != "replay" {
				t.Fatalf("a replayed JavaScript resume: %v", err)
			}
		}
	})

	t.Run("resumption: Go device, JavaScript server", func(t *testing.T) {
		js := js.with(t)
		cs, setup, err := protocol.NewClientSession(protocol.ChannelDevice{User: p.alice, Device: p.aliceLaptop, AuthKey: p.aliceAuth}, p.server.Public(), now)
		if err != nil {
			t.Fatal(err)
		}
		var acc struct{ Confirm []byte }
		js.must("server_accept", map[string]any{"name": "js-resume-server", "setup": setup, "server": p.server.Bytes(), "auth": pub(p.aliceAuth), "lifetime_ms": 0, "now_ms": ms}, &acc)
		if err := cs.Confirm(acc.Confirm, now); err != nil {
			t.Fatal(err)
		}
		at := now
		for round := 0; round < 2; round++ {
			var issued struct{ Ticket []byte }
			js.must("server_issue", map[string]any{"name": "js-resume-server", "server": p.server.Bytes(), "now_ms": at.UnixMilli()}, &issued)
			ticket, err := cs.Ticket(issued.Ticket, at)
			if err != nil {
				t.Fatalf("round %d: Go pairs the JavaScript ticket: %v", round, err)
			}
			if !ticket.Expires.Equal(now.Add(protocol.TicketLifetime).Truncate(time.Millisecond)) {
				t.Fatalf("JavaScript ticket expires %v", ticket.Expires)
			}
			at = at.Add(time.Minute)
			r, msg, err := protocol.Resume(ticket, at)
			if err != nil {
				t.Fatal(err)
			}
			var ans struct {
				Answer    []byte
				SessionID string `json:"session_id"`
			}
			js.must("server_resume", map[string]any{"name": "js-resume-server", "resume": msg, "server": p.server.Bytes(), "lifetime_ms": 0, "now_ms": at.UnixMilli()}, &ans)
			if cs, err = r.Finish(ans.Answer, at); err != nil {
				t.Fatalf("round %d: Go finishes the resume with the JavaScript answer: %v", round, err)
			}
			if cs.ID().String() != ans.SessionID {
				t.Fatalf("round %d: Go resumed session %s, JavaScript's %s", round, cs.ID(), ans.SessionID)
			}
			frame, _, err := cs.SealRequest("GET", "/v1/inbox", nil)
			if err != nil {
				t.Fatal(err)
			}
			js.must("server_request", map[string]any{"name": "js-resume-server", "method": "GET", "path": "/v1/inbox", "frame": frame, "now_ms": at.UnixMilli()}, nil)
			js.wantCode("replay", "server_resume", map[string]any{"name": "js-resume-server-again", "resume": msg, "server": p.server.Bytes(), "lifetime_ms": 0, "now_ms": at.UnixMilli()})
		}
	})

	t.Run("provisioning: JavaScript new device, Go existing device", func(t *testing.T) {
		js := js.with(t)
		code, err := protocol.NewLinkCode(p.serverURL, protocol.ServerFingerprint(p.server.Public()), p.alice)
		if err != nil {
			t.Fatal(err)
		}
		newDevice := protocol.NewDeviceID()
		var b struct {
			Request         []byte
			RequestMailbox  string `json:"request_mailbox"`
			ResponseMailbox string `json:"response_mailbox"`
		}
		js.must("link_b_request", map[string]any{"name": "js-b", "uri": code.URI(), "device": newDevice.String(), "enc": pub(p.laptopEnc), "auth": pub(p.aliceAuth)}, &b)
		if b.RequestMailbox != code.RequestMailbox().String() || b.ResponseMailbox != code.ResponseMailbox().String() {
			t.Fatalf("JavaScript mailboxes %s %s, Go's %s %s", b.RequestMailbox, b.ResponseMailbox, code.RequestMailbox(), code.ResponseMailbox())
		}
		if err := protocol.CheckLinkMessage(b.Request); err != nil {
			t.Fatal(err)
		}
		req, err := protocol.OpenLinkRequest(code, b.Request)
		if err != nil {
			t.Fatalf("Go opens the JavaScript link request: %v", err)
		}
		if req.Device != newDevice || !req.EncryptionKey.Equal(p.laptopEnc.Public()) || !req.AuthKey.Equal(p.aliceAuth.Public()) {
			t.Fatalf("JavaScript link request: %+v", req)
		}
		cert, err := protocol.CertifyDevice(p.aliceID, p.alice, req.Device, req.EncryptionKey, req.AuthKey, now)
		if err != nil {
			t.Fatal(err)
		}
		sealed, err := protocol.SealLinkResponse(code, req, protocol.LinkResponse{User: p.alice, Identity: p.aliceID, Cert: cert})
		if err != nil {
			t.Fatal(err)
		}
		var resp struct {
			User     string
			Identity []byte
			Cert     []byte
		}
		js.must("link_b_response", map[string]any{"name": "js-b", "response": sealed}, &resp)
		if resp.User != p.alice.String() || !bytes.Equal(resp.Identity, p.aliceID.Bytes()) || !bytes.Equal(resp.Cert, cert.Bytes()) {
			t.Fatal("JavaScript opened the Go link response to other values")
		}
	})

	t.Run("provisioning: Go new device, JavaScript existing device", func(t *testing.T) {
		js := js.with(t)
		var a struct {
			URI             string
			RequestMailbox  string `json:"request_mailbox"`
			ResponseMailbox string `json:"response_mailbox"`
		}
		js.must("link_a_code", map[string]any{"name": "js-a", "server": "HTTPS://Chat.Example.ORG:8443/qrtalk/", "server_fp": protocol.ServerFingerprint(p.server.Public()).String(), "user": p.bob.String()}, &a)
		code, err := protocol.ParseLinkCode(a.URI)
		if err != nil {
			t.Fatalf("Go parses the JavaScript link code: %v", err)
		}
		if code.User != p.bob || code.Server != p.serverURL || code.RequestMailbox().String() != a.RequestMailbox || code.ResponseMailbox().String() != a.ResponseMailbox {
			t.Fatalf("JavaScript link code read by Go: %v", code)
		}
		req := protocol.LinkRequest{Device: protocol.NewDeviceID(), EncryptionKey: p.bobEnc.Public(), AuthKey: p.bobAuth.Public()}
		sealed, err := protocol.SealLinkRequest(code, req)
		if err != nil {
			t.Fatal(err)
		}
		var ans struct {
			Device   string
			Response []byte
		}
		js.must("link_a_answer", map[string]any{"name": "js-a", "request": sealed, "identity": p.bobID.Bytes(), "created_ms": ms}, &ans)
		if ans.Device != req.Device.String() {
			t.Fatalf("JavaScript certified device %s, want %s", ans.Device, req.Device)
		}
		resp, err := protocol.OpenLinkResponse(code, &req, ans.Response)
		if err != nil {
			t.Fatalf("Go opens the JavaScript link response: %v", err)
		}
		if resp.User != p.bob || !resp.Identity.Public().Equal(p.bobID.Public()) || !bytes.Equal(resp.Identity.Bytes(), p.bobID.Bytes()) || resp.Cert.Device != req.Device {
			t.Fatal("JavaScript link response opens in Go to other values")
		}
		other, _ := protocol.NewLinkCode(p.serverURL, code.ServerFP, p.bob)
		otherReq, _ := protocol.SealLinkRequest(other, req)
		js.wantCode("decrypt", "link_a_answer", map[string]any{"name": "js-a", "request": otherReq, "identity": p.bobID.Bytes(), "created_ms": ms})
	})
	if t.Failed() {
		fmt.Fprintln(os.Stderr, "node stderr:", js.stderr)
	}
}
