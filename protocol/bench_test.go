package protocol

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// Benchmarks of the hot paths, and beside them the raw RSA operations they
// are measured against: the protocol's crypto cost is RSA's, and the rest
// must stay in the noise. TestPerformanceRatios turns the comparison into
// numbers:
//
//	go test -run '^$' -bench . ./protocol/
//	QRTALK_PERF=1 go test -run TestPerformanceRatios -v ./protocol/

// sealDeviceCounts are the recipient device counts of BenchmarkSeal.
var sealDeviceCounts = []int{1, 10, 100, 1000}

// opsPerSecond reports the rate of b's operations as a metric named unit.
func opsPerSecond(b *testing.B, unit string) {
	if s := b.Elapsed().Seconds(); s > 0 {
		b.ReportMetric(float64(b.N)/s, unit)
	}
}

// ---- the raw primitives ----

// The raw operations use the same key size, hash, label and salt as the
// protocol does, and nothing else.
var benchLabel = []byte(labelKeyWrap)

func benchRSAPublic(b *testing.B) {
	pub := testKey(b, 1).Public().k
	key := make([]byte, 32)
	for b.Loop() {
		if _, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, pub, key, benchLabel); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSecond(b, "ops/s")
}

func benchRSAPrivate(b *testing.B) {
	priv := testKey(b, 1).k
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, &priv.PublicKey, make([]byte, 32), benchLabel)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := rsa.DecryptOAEP(sha256.New(), nil, priv, ct, benchLabel); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSecond(b, "ops/s")
}

func benchRSASign(b *testing.B) {
	priv := testKey(b, 0).k
	digest := sha256.Sum256([]byte("message"))
	for b.Loop() {
		if _, err := rsa.SignPSS(rand.Reader, priv, crypto.SHA256, digest[:], pssOptions); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSecond(b, "ops/s")
}

func benchRSAVerify(b *testing.B) {
	priv := testKey(b, 0).k
	digest := sha256.Sum256([]byte("message"))
	sig, err := rsa.SignPSS(rand.Reader, priv, crypto.SHA256, digest[:], pssOptions)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := rsa.VerifyPSS(&priv.PublicKey, crypto.SHA256, digest[:], sig, pssOptions); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSecond(b, "ops/s")
}

// BenchmarkRSA: one RSA-3072 operation of each kind, straight from
// crypto/rsa: the baseline of everything below.
func BenchmarkRSA(b *testing.B) {
	b.Run("public", benchRSAPublic)   // RSA-OAEP-SHA256 encryption of a 32-byte key
	b.Run("private", benchRSAPrivate) // RSA-OAEP-SHA256 decryption
	b.Run("sign", benchRSASign)       // RSA-PSS-SHA256, 32-byte salt
	b.Run("verify", benchRSAVerify)
}

// ---- envelopes ----

// benchRecipients returns n recipient devices: ten per user, with the six
// device keys of the test users reused across them (the cost of a wrap
// does not depend on which key it is).
func benchRecipients(tb testing.TB, n int) []DeviceRecipient {
	out := make([]DeviceRecipient, n)
	for i := range out {
		u := i / 10
		out[i] = DeviceRecipient{
			User:   UserID{0x42, byte(u >> 8), byte(u)},
			Device: DeviceID{0x17, byte(i >> 8), byte(i)},
			Key:    testKey(tb, 1+i%6).Public(),
		}
	}
	return out
}

var benchMessage = &Message{ContentType: "text/plain; charset=utf-8", Body: []byte("The server is down, call me.")}

func benchSender(tb testing.TB) Sender {
	return Sender{User: UserID{1}, Device: DeviceID{1}, Identity: testKey(tb, 0)}
}

// benchSeal seals a signed message for n devices. With oneCore, it runs
// with GOMAXPROCS=1: the one-core target of the ratios.
func benchSeal(n int, oneCore bool) func(*testing.B) {
	return func(b *testing.B) {
		if oneCore {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
		}
		from, to := benchSender(b), benchRecipients(b, n)
		opts := SealOptions{Sent: time.Now(), TTL: time.Hour}
		var size int
		for b.Loop() {
			sealed, err := Seal(benchMessage, from, to, opts)
			if err != nil {
				b.Fatal(err)
			}
			size = len(sealed)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/device")
		b.ReportMetric(float64(size), "envelope-bytes")
	}
}

// BenchmarkSeal: sealing for n recipient devices, n RSA public operations
// and one signature, with GOMAXPROCS as given (Seal wraps on all cores
// from parallelWrapMin devices on).
func BenchmarkSeal(b *testing.B) {
	for _, n := range sealDeviceCounts {
		b.Run(fmt.Sprintf("devices=%d", n), benchSeal(n, false))
	}
}

// BenchmarkSealOneCore: the same with GOMAXPROCS=1, to compare with the
// one-core target.
func BenchmarkSealOneCore(b *testing.B) {
	for _, n := range sealDeviceCounts {
		b.Run(fmt.Sprintf("devices=%d", n), benchSeal(n, true))
	}
}

// benchOpen parses and opens a signed envelope for its one recipient: one
// RSA private operation (the unwrap) and one public (the signature check).
func benchOpen(b *testing.B) {
	from := benchSender(b)
	to := benchRecipients(b, 1)
	me := Recipient{User: to[0].User, Device: to[0].Device, Key: testKey(b, 1)}
	now := time.Now()
	sealed, err := Seal(benchMessage, from, to, SealOptions{Sent: now, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		env, err := ParseEnvelope(sealed)
		if err != nil {
			b.Fatal(err)
		}
		if _, status, err := env.Open(me, from.Identity.Public(), now); err != nil || status != Verified {
			b.Fatalf("open: %v %v", status, err)
		}
	}
	opsPerSecond(b, "msgs/s")
}

// BenchmarkOpen: a signed envelope for one device, parsed and opened.
func BenchmarkOpen(b *testing.B) { benchOpen(b) }

// ---- device certificates ----

// BenchmarkSign: the identity key certifies a device.
func BenchmarkSign(b *testing.B) {
	identity, enc, auth := testKey(b, 0), testKey(b, 1).Public(), testKey(b, 2).Public()
	for b.Loop() {
		if _, err := CertifyDevice(identity, UserID{1}, DeviceID{1}, enc, auth, time.Now()); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSecond(b, "certs/s")
}

// BenchmarkVerify: a device certificate is checked against the pinned
// identity key (as each entry of a device list is).
func BenchmarkVerify(b *testing.B) {
	identity := testKey(b, 0)
	c, err := CertifyDevice(identity, UserID{1}, DeviceID{1}, testKey(b, 1).Public(), testKey(b, 2).Public(), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if err := c.Verify(identity.Public()); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSecond(b, "certs/s")
}

// ---- the secure channel ----

// BenchmarkChannel: one request frame of 1 KiB sealed by the client, and
// opened by the server.
func BenchmarkChannel(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	b.Run("seal-1KiB", func(b *testing.B) {
		cs, _ := newTestChannel(b)
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, _, err := cs.SealRequest("POST", "/v1/send", body); err != nil {
				b.Fatal(err)
			}
		}
		opsPerSecond(b, "frames/s")
	})
	b.Run("open-1KiB", func(b *testing.B) {
		cs, ss := newTestChannel(b)
		frame, _, err := cs.SealRequest("POST", "/v1/send", body)
		if err != nil {
			b.Fatal(err)
		}
		at := testNow.Add(time.Minute)
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			// The same frame each time: forget it was seen (a 136-byte
			// reset, noise next to the AEAD).
			ss.k.window = replayWindow{}
			if _, _, err := ss.OpenRequest("POST", "/v1/send", frame, at); err != nil {
				b.Fatal(err)
			}
		}
		opsPerSecond(b, "frames/s")
	})
}

// BenchmarkChannelSetup: a whole session setup, both ends: the client
// wraps a secret to the server and signs (one public, one private RSA
// operation), the server verifies and unwraps (the same again), and the
// client checks the confirmation.
func BenchmarkChannelSetup(b *testing.B) {
	server := testKey(b, 7)
	dev := ChannelDevice{User: UserID{1}, Device: DeviceID{1}, AuthKey: testKey(b, 2)}
	cache := &MemoryReplayCache{}
	for b.Loop() {
		now := time.Now()
		cs, setup, err := NewClientSession(dev, server.Public(), now)
		if err != nil {
			b.Fatal(err)
		}
		s, err := ParseChannelSetup(setup)
		if err != nil {
			b.Fatal(err)
		}
		_, confirm, err := AcceptSession(s, server, dev.AuthKey.Public(), cache, time.Hour, now)
		if err != nil {
			b.Fatal(err)
		}
		if err := cs.Confirm(confirm, now); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSecond(b, "setups/s")
}

// ---- blobs ----

// BenchmarkBlob: a 4 MiB attachment encrypted and decrypted through the
// streaming API.
func BenchmarkBlob(b *testing.B) {
	const size = 4 << 20
	key := NewBlobKey()
	plain := make([]byte, size)
	rand.Read(plain)
	overhead := func(b *testing.B) {
		b.ReportMetric(100*float64(EncryptedBlobSize(size)-size)/size, "%overhead")
	}
	b.Run("encrypt", func(b *testing.B) {
		b.SetBytes(size)
		for b.Loop() {
			w, err := EncryptBlob(io.Discard, key)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := w.Write(plain); err != nil {
				b.Fatal(err)
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		}
		overhead(b)
	})
	b.Run("decrypt", func(b *testing.B) {
		ct := encryptBlobBytes(b, key, plain)
		b.SetBytes(size)
		for b.Loop() {
			r, err := DecryptBlob(bytes.NewReader(ct), key)
			if err != nil {
				b.Fatal(err)
			}
			if n, err := io.Copy(io.Discard, r); err != nil || n != size {
				b.Fatalf("decrypted %d bytes: %v", n, err)
			}
		}
		overhead(b)
	})
}

// ---- the targets ----

func devices(n int) string {
	if n == 1 {
		return "1 device"
	}
	return fmt.Sprintf("%d devices", n)
}

// TestPerformanceRatios measures, in one process, the raw RSA operations
// and Seal and Open, and checks the targets of the performance issue:
//
//   - open ≤ 1.10 × (one private op + one public op): the OAEP unwrap and
//     the PSS verification;
//   - seal for N devices ≤ 1.10 × (N public ops + one private op) on one
//     core: N OAEP wraps and one PSS signature;
//   - seal for large N on all cores faster than that one-core baseline.
//
// It is a measurement, not a unit test, so it runs only when asked for.
// Every figure is the lowest of perfRounds interleaved measurements: on a
// shared machine the least disturbed run is the one closest to the cost
// of the code, and interleaving exposes baselines and protocol operations
// to the same load. It fails only when a ratio misses its target by more
// than 1.5×, and logs the table either way.
func TestPerformanceRatios(t *testing.T) {
	if os.Getenv("QRTALK_PERF") != "1" {
		t.Skip("a measurement, not a unit test: run it with QRTALK_PERF=1 go test -run TestPerformanceRatios -v ./protocol/")
	}
	const perfRounds = 3
	oneCore := func(f func(*testing.B)) func(*testing.B) {
		return func(b *testing.B) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
			f(b)
		}
	}
	procs := runtime.GOMAXPROCS(0)
	type measure struct {
		name string
		f    func(*testing.B)
		ns   float64 // lowest ns/op seen
	}
	ms := []*measure{
		{name: "public", f: oneCore(benchRSAPublic)},
		{name: "private", f: oneCore(benchRSAPrivate)},
		{name: "sign", f: oneCore(benchRSASign)},
		{name: "verify", f: oneCore(benchRSAVerify)},
		{name: "open", f: oneCore(benchOpen)},
	}
	for _, n := range sealDeviceCounts {
		ms = append(ms, &measure{name: fmt.Sprintf("seal-1/%d", n), f: benchSeal(n, true)})
	}
	allCores := []int{100, 1000}
	if procs > 1 {
		for _, n := range allCores {
			ms = append(ms, &measure{name: fmt.Sprintf("seal-all/%d", n), f: benchSeal(n, false)})
		}
	}
	byName := map[string]*measure{}
	for round := 0; round < perfRounds; round++ {
		for _, m := range ms {
			r := testing.Benchmark(m.f)
			if r.N == 0 {
				t.Fatalf("benchmark %s failed", m.name)
			}
			if v := float64(r.T.Nanoseconds()) / float64(r.N); m.ns == 0 || v < m.ns {
				m.ns = v
			}
			byName[m.name] = m
		}
	}
	get := func(name string) float64 { return byName[name].ns }
	pub, priv, sgn, vfy := get("public"), get("private"), get("sign"), get("verify")

	type row struct {
		op, baseline string
		got, base    float64
		target       float64
		faster       bool // the target is a strict upper bound on the ratio
		note         string
	}
	rows := []row{{op: "open (1 device, signed)", baseline: "1 private + 1 public", got: get("open"), base: priv + vfy, target: 1.10}}
	for _, n := range sealDeviceCounts {
		rows = append(rows, row{op: fmt.Sprintf("seal %s, 1 core", devices(n)), baseline: fmt.Sprintf("%d public + 1 private", n),
			got: get(fmt.Sprintf("seal-1/%d", n)), base: float64(n)*pub + sgn, target: 1.10})
	}
	for _, n := range allCores {
		r := row{op: fmt.Sprintf("seal %s, %d cores", devices(n), procs), baseline: fmt.Sprintf("%d public + 1 private, 1 core", n),
			base: float64(n)*pub + sgn, target: 1.0, faster: true}
		if procs > 1 {
			r.got = get(fmt.Sprintf("seal-all/%d", n))
		} else {
			r.note = "skipped: GOMAXPROCS=1"
		}
		rows = append(rows, r)
	}

	var sb strings.Builder
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "op\tns/op\tbaseline\tbaseline ns/op\tratio\ttarget\tresult\t\n")
	for _, r := range rows {
		cmp := "≤"
		if r.faster {
			cmp = "<"
		}
		if r.note != "" {
			fmt.Fprintf(tw, "%s\t-\t%s\t%.0f\t-\t%s %.2f\t%s\t\n", r.op, r.baseline, r.base, cmp, r.target, r.note)
			continue
		}
		ratio := r.got / r.base
		met := ratio <= r.target
		if r.faster {
			met = ratio < r.target
		}
		result := "met"
		if !met {
			result = "missed"
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%.0f\t%.3f\t%s %.2f\t%s\t\n", r.op, r.got, r.baseline, r.base, ratio, cmp, r.target, result)
		if ratio > 1.5*r.target {
			t.Errorf("%s: %.0f ns/op is %.2f × the baseline (%.0f ns/op), more than 1.5 × the target %.2f", r.op, r.got, ratio, r.base, r.target)
		}
	}
	tw.Flush()
	t.Logf("GOMAXPROCS=%d, %s/%s, lowest of %d rounds; RSA-3072 on 1 core: public (OAEP encrypt) %.0f, private (OAEP decrypt) %.0f, sign (PSS) %.0f, verify (PSS) %.0f ns/op\n%s",
		procs, runtime.GOOS, runtime.GOARCH, perfRounds, pub, priv, sgn, vfy, sb.String())
}
