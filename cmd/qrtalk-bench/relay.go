package main

// The bare relay: the baseline that qrtalkd is compared with in the same
// run. It is what a relay must do at the least, written with the libraries
// qrtalkd uses (net/http, crypto/tls with a self-signed certificate on an
// RSA-3072 key, github.com/coder/websocket), and nothing else: no secure
// channel, no accounts, no store, no queue.
//
//	GET  /sub?id=N   a subscriber's WebSocket. The relay pushes each
//	                 message as [16-byte ID][payload]; the subscriber
//	                 answers with the 16-byte IDs it acknowledges.
//	POST /send       body [16-byte ID][u16 count][count × u32 subscriber]
//	                 [payload]: forwarded to every subscriber, answered
//	                 200 once all acknowledged, 504 after 3 s.
//	POST /blob       body streamed to a file (SHA-256 checked against the
//	                 X-Sha256 header, synced, renamed, as qrtalkd does);
//	                 answers the blob's ID.
//	GET  /blob/ID    streams the blob and deletes it.
//	GET  /ping       answers "pong" (the bench opens connections with it).
//
// Messages for a subscriber that is not connected go to a minimal durable
// queue (b's baseline, relayQueue); the answer to /send is then "queued",
// once the message is synced to disk, and GET /depth says how many queued
// messages are not yet deleted on disk.
//
// It lives in the bench, not in the product.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

const (
	relayAckTimeout = 3 * time.Second // as qrtalkd's default ack-timeout
	relayMaxBody    = 4 << 20
)

type relayServer struct {
	blobDir string
	q       *relayQueue
	mu      sync.Mutex // subs; and a subscription takes its queue under it
	subs    map[uint32]*relaySub
}

type relaySub struct {
	id     uint32
	ws     *websocket.Conn
	mu     sync.Mutex
	acks   map[[16]byte]chan struct{}
	queued map[[16]byte]bool // pushed from the queue, not yet acknowledged
}

// relayQueue is the bare relay's durable queue, the least that durable
// queueing costs: one append-only log file; a message is appended and its
// sender answered once the record is synced, with group commit (the
// records that arrive while one fsync runs share the next one). The queue
// is also held in memory, and pushed from there when its subscriber
// connects; each acknowledgement appends a deletion record, synced the
// same way. Nothing is read back at start, the log is never compacted,
// there is no TTL and no secure delete: a baseline, not a store.
type relayQueue struct {
	f     *os.File
	kick  chan struct{}
	depth atomic.Int64 // queued and not yet deleted on disk

	mu    sync.Mutex
	buf   []byte
	waits []chan error
	dels  int64 // deletion records in buf
	msgs  map[uint32][]relayQueued
}

type relayQueued struct {
	id  [16]byte
	msg []byte
}

func newRelayQueue(path string) (*relayQueue, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	q := &relayQueue{f: f, kick: make(chan struct{}, 1), msgs: map[uint32][]relayQueued{}}
	go q.loop()
	return q, nil
}

// loop writes and syncs what was appended, one batch at a time.
func (q *relayQueue) loop() {
	for range q.kick {
		q.mu.Lock()
		buf, waits, dels := q.buf, q.waits, q.dels
		q.buf, q.waits, q.dels = nil, nil, 0
		q.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		_, err := q.f.Write(buf)
		if err == nil {
			err = q.f.Sync()
		}
		q.depth.Add(-dels)
		for _, w := range waits {
			w <- err
		}
	}
}

// logRecord appends a record to the next batch; the channel says when it
// is on disk.
func (q *relayQueue) logRecord(rec []byte, deletion bool) <-chan error {
	ch := make(chan error, 1)
	q.mu.Lock()
	q.buf = append(q.buf, rec...)
	q.waits = append(q.waits, ch)
	if deletion {
		q.dels++
	}
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default:
	}
	return ch
}

// enqueue queues msg for subscriber to: in memory at once (the caller
// holds relayServer.mu, so a subscription cannot miss it), on disk when
// the channel says so.
func (q *relayQueue) enqueue(to uint32, id [16]byte, msg []byte) <-chan error {
	rec := make([]byte, 1+16+4+4+len(msg))
	rec[0] = 1
	copy(rec[1:], id[:])
	binary.BigEndian.PutUint32(rec[17:], to)
	binary.BigEndian.PutUint32(rec[21:], uint32(len(msg)))
	copy(rec[25:], msg)
	q.mu.Lock()
	q.msgs[to] = append(q.msgs[to], relayQueued{id: id, msg: msg})
	q.mu.Unlock()
	q.depth.Add(1)
	return q.logRecord(rec, false)
}

// take removes and returns subscriber to's queue, to be pushed.
func (q *relayQueue) take(to uint32) []relayQueued {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := q.msgs[to]
	delete(q.msgs, to)
	return m
}

// deleted logs that a queued message was acknowledged.
func (q *relayQueue) deleted(to uint32, id [16]byte) {
	rec := make([]byte, 1+16+4)
	rec[0] = 2
	copy(rec[1:], id[:])
	binary.BigEndian.PutUint32(rec[17:], to)
	q.logRecord(rec, true)
}

func (r *relayServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ping", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "pong") })
	mux.HandleFunc("GET /depth", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, strconv.FormatInt(r.q.depth.Load(), 10))
	})
	mux.HandleFunc("GET /sub", r.handleSub)
	mux.HandleFunc("POST /send", r.handleSend)
	mux.HandleFunc("POST /blob", r.handleUpload)
	mux.HandleFunc("GET /blob/{id}", r.handleDownload)
	return mux
}

func (r *relayServer) handleSub(w http.ResponseWriter, req *http.Request) {
	id, err := strconv.ParseUint(req.URL.Query().Get("id"), 10, 32)
	if err != nil {
		http.Error(w, "bad id", http.StatusBadRequest)
		return
	}
	ws, err := websocket.Accept(w, req, nil)
	if err != nil {
		return
	}
	defer ws.CloseNow()
	ws.SetReadLimit(64 << 10)
	s := &relaySub{id: uint32(id), ws: ws, acks: map[[16]byte]chan struct{}{}, queued: map[[16]byte]bool{}}
	r.mu.Lock()
	old := r.subs[uint32(id)]
	r.subs[uint32(id)] = s
	backlog := r.q.take(uint32(id))
	r.mu.Unlock()
	if old != nil {
		old.ws.CloseNow()
	}
	if len(backlog) > 0 {
		s.mu.Lock()
		for _, m := range backlog {
			s.queued[m.id] = true
		}
		s.mu.Unlock()
		go func() {
			for _, m := range backlog {
				wctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
				err := ws.Write(wctx, websocket.MessageBinary, m.msg)
				cancel()
				if err != nil {
					return
				}
			}
		}()
	}
	defer func() {
		r.mu.Lock()
		if r.subs[uint32(id)] == s {
			delete(r.subs, uint32(id))
		}
		r.mu.Unlock()
	}()
	ctx := context.WithoutCancel(req.Context())
	for {
		_, p, err := ws.Read(ctx)
		if err != nil {
			return
		}
		for i := 0; i+16 <= len(p); i += 16 {
			var mid [16]byte
			copy(mid[:], p[i:])
			s.mu.Lock()
			ch := s.acks[mid]
			delete(s.acks, mid)
			wasQueued := s.queued[mid]
			delete(s.queued, mid)
			s.mu.Unlock()
			if ch != nil {
				close(ch)
			}
			if wasQueued {
				r.q.deleted(s.id, mid)
			}
		}
	}
}

func (r *relayServer) handleSend(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(io.LimitReader(req.Body, relayMaxBody))
	if err != nil || len(body) < 18 {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	var mid [16]byte
	copy(mid[:], body)
	n := int(binary.BigEndian.Uint16(body[16:]))
	if len(body) < 18+4*n {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	msg := make([]byte, 16+len(body)-18-4*n)
	copy(msg, body[:16])
	copy(msg[16:], body[18+4*n:])
	waits := make([]chan struct{}, 0, n)
	var stored []<-chan error
	for i := range n {
		to := binary.BigEndian.Uint32(body[18+4*i:])
		r.mu.Lock()
		s := r.subs[to]
		if s == nil {
			stored = append(stored, r.q.enqueue(to, mid, msg))
		}
		r.mu.Unlock()
		if s == nil {
			continue
		}
		ch := make(chan struct{})
		s.mu.Lock()
		s.acks[mid] = ch
		s.mu.Unlock()
		wctx, cancel := context.WithTimeout(req.Context(), 10*time.Second)
		err := s.ws.Write(wctx, websocket.MessageBinary, msg)
		cancel()
		if err == nil {
			waits = append(waits, ch)
		}
	}
	timer := time.NewTimer(relayAckTimeout)
	defer timer.Stop()
	for _, ch := range waits {
		select {
		case <-ch:
		case <-timer.C:
			http.Error(w, "not acknowledged in time", http.StatusGatewayTimeout)
			return
		}
	}
	for _, ch := range stored {
		if err := <-ch; err != nil {
			http.Error(w, "queue: "+err.Error(), http.StatusInternalServerError)
			return
		}
	}
	switch {
	case len(stored) == n:
		io.WriteString(w, "queued")
	case len(waits) == n:
		io.WriteString(w, "delivered")
	case len(waits)+len(stored) < n:
		http.Error(w, "a live subscriber did not take the message", http.StatusServiceUnavailable)
	default:
		io.WriteString(w, "delivered and queued")
	}
}

func (r *relayServer) handleUpload(w http.ResponseWriter, req *http.Request) {
	want, err := hex.DecodeString(req.Header.Get("X-Sha256"))
	if err != nil || len(want) != sha256.Size {
		http.Error(w, "bad X-Sha256", http.StatusBadRequest)
		return
	}
	var id [16]byte
	rand.Read(id[:])
	name := hex.EncodeToString(id[:])
	tmp, err := os.CreateTemp(r.blobDir, "upload-*")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), req.Body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if string(h.Sum(nil)) != string(want) {
		http.Error(w, "SHA-256 mismatch", http.StatusBadRequest)
		return
	}
	if err := tmp.Sync(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err := os.Rename(tmp.Name(), filepath.Join(r.blobDir, name)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	io.WriteString(w, name)
}

func (r *relayServer) handleDownload(w http.ResponseWriter, req *http.Request) {
	raw, err := hex.DecodeString(req.PathValue("id"))
	if err != nil || len(raw) != 16 {
		http.Error(w, "bad id", http.StatusBadRequest)
		return
	}
	path := filepath.Join(r.blobDir, hex.EncodeToString(raw))
	f, err := os.Open(path)
	if err != nil {
		http.Error(w, "no such blob", http.StatusNotFound)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(fi.Size(), 10))
	w.Header().Set("Content-Type", "application/octet-stream")
	if _, err := io.Copy(w, f); err == nil {
		os.Remove(path)
	}
}

// relayCert makes a self-signed certificate for 127.0.0.1 on an RSA-3072
// key, like qrtalkd's default certificate.
func relayCert(key *protocol.PrivateKey) (tls.Certificate, error) {
	priv, err := x509.ParsePKCS8PrivateKey(key.Bytes())
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "qrtalk-bench relay"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	signer, ok := priv.(crypto.Signer)
	if !ok {
		return tls.Certificate{}, errors.New("relay key is not a signer")
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, signer.Public(), priv)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv}, nil
}

// relayChild is main for the relay child process.
func relayChild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("relay", flag.ContinueOnError)
	data := fs.String("data", "", "data directory")
	if err := fs.Parse(args); err != nil {
		return err
	}
	srv, h, err := startRelay(*data)
	if err != nil {
		return err
	}
	hello(h)
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}

// startRelay starts a bare relay on a loopback port, its blobs in dir.
func startRelay(dir string) (*http.Server, childHello, error) {
	blobs := filepath.Join(dir, "blobs")
	if err := os.MkdirAll(blobs, 0o700); err != nil {
		return nil, childHello{}, err
	}
	cert, err := relayCert(testkeys.Key(serverKeyIndex))
	if err != nil {
		return nil, childHello{}, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, childHello{}, err
	}
	q, err := newRelayQueue(filepath.Join(dir, "queue.log"))
	if err != nil {
		return nil, childHello{}, err
	}
	r := &relayServer{blobDir: blobs, q: q, subs: map[uint32]*relaySub{}}
	srv := &http.Server{
		Handler:           r.handler(),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go srv.ServeTLS(ln, "", "")
	sum := sha256.Sum256(cert.Certificate[0])
	return srv, childHello{URL: "https://" + ln.Addr().String(), CertSHA256: hex.EncodeToString(sum[:])}, nil
}

// ---- the relay's clients ----

// relayPinnedTLS accepts only the relay's certificate. Like the SDK's
// configuration (client.PinnedTLSConfig), it keeps TLS sessions, so that a
// reconnection resumes TLS instead of a full handshake.
func relayPinnedTLS(pin string) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
		InsecureSkipVerify: true, // verified below, by pin
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("relay sent no certificate")
			}
			sum := sha256.Sum256(cs.PeerCertificates[0].Raw)
			if hex.EncodeToString(sum[:]) != pin {
				return errors.New("relay certificate is not the pinned one")
			}
			return nil
		},
	}
}

// A relayDevice is one simulated device of the relay: its own HTTP client
// (its own TLS connections, as each qrtalkd device has) and, while
// subscribed, its WebSocket.
type relayDevice struct {
	idx  uint32
	url  string
	hc   *http.Client
	tr   *http.Transport
	ws   *websocket.Conn
	done chan struct{}
}

func newRelayDevice(idx int, url, pin string) *relayDevice {
	tr := &http.Transport{TLSClientConfig: relayPinnedTLS(pin), MaxIdleConnsPerHost: 16, IdleConnTimeout: 90 * time.Second}
	return &relayDevice{idx: uint32(idx), url: url, tr: tr, hc: &http.Client{Transport: tr}}
}

// subscribe opens the device's WebSocket; every message is acknowledged
// at once and then handed to onMsg.
func (d *relayDevice) subscribe(ctx context.Context, onMsg func(id protocol.MessageID)) error {
	ws, _, err := websocket.Dial(ctx, fmt.Sprintf("%s/sub?id=%d", d.url, d.idx), &websocket.DialOptions{HTTPClient: d.hc})
	if err != nil {
		return err
	}
	ws.SetReadLimit(relayMaxBody)
	d.ws = ws
	d.done = make(chan struct{})
	go func() {
		defer close(d.done)
		rctx := context.Background()
		for {
			_, p, err := ws.Read(rctx)
			if err != nil {
				return
			}
			if len(p) < 16 {
				continue
			}
			var id protocol.MessageID
			copy(id[:], p[:16])
			if err := ws.Write(rctx, websocket.MessageBinary, id[:]); err != nil {
				return
			}
			onMsg(id)
		}
	}()
	return nil
}

func (d *relayDevice) unsubscribe() {
	if d.ws != nil {
		d.ws.Close(websocket.StatusNormalClosure, "bye")
		<-d.done
		d.ws = nil
	}
	d.tr.CloseIdleConnections()
}

// ping makes a request, so that the device has a connection open.
func (d *relayDevice) ping(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+"/ping", nil)
	if err != nil {
		return err
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

// relayBody builds a /send body: id, recipients, payload.
func relayBody(id protocol.MessageID, to []uint32, payload []byte) []byte {
	b := make([]byte, 18+4*len(to)+len(payload))
	copy(b, id[:])
	binary.BigEndian.PutUint16(b[16:], uint16(len(to)))
	for i, t := range to {
		binary.BigEndian.PutUint32(b[18+4*i:], t)
	}
	copy(b[18+4*len(to):], payload)
	return b
}

// send posts a message and waits for the relay's answer (after every
// recipient's acknowledgement, or its message on disk).
func (d *relayDevice) send(ctx context.Context, body []byte) error {
	_, err := d.sendFor(ctx, body)
	return err
}

// sendFor is send, returning the relay's answer: "delivered" or "queued".
func (d *relayDevice) sendFor(ctx context.Context, body []byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url+"/send", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := d.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("relay answered %s", resp.Status)
	}
	return string(answer), nil
}

// depth asks the relay how many queued messages are not yet deleted on
// disk.
func (d *relayDevice) depth(ctx context.Context) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+"/depth", nil)
	if err != nil {
		return 0, err
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	return strconv.ParseInt(string(b), 10, 64)
}

func (d *relayDevice) upload(ctx context.Context, r io.Reader, size int64, sum [32]byte) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url+"/blob", r)
	if err != nil {
		return "", err
	}
	req.ContentLength = size
	req.Header.Set("X-Sha256", hex.EncodeToString(sum[:]))
	resp, err := d.hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("relay answered %s: %s", resp.Status, b)
	}
	return string(b), nil
}

func (d *relayDevice) download(ctx context.Context, id string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url+"/blob/"+id, nil)
	if err != nil {
		return 0, err
	}
	resp, err := d.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("relay answered %s", resp.Status)
	}
	return io.Copy(io.Discard, resp.Body)
}
