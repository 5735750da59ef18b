package protocol

import (
	"bytes"
	"errors"
	"testing"
	"time"
)

type testUser struct {
	id       UserID
	identity *PrivateKey
	devices  []testDevice
}

type testDevice struct {
	id  DeviceID
	enc *PrivateKey
}

func (u testUser) recipients() []DeviceRecipient {
	var out []DeviceRecipient
	for _, d := range u.devices {
		out = append(out, DeviceRecipient{User: u.id, Device: d.id, Key: d.enc.Public()})
	}
	return out
}

func (u testUser) sender() Sender {
	return Sender{User: u.id, Device: u.devices[0].id, Identity: u.identity}
}

func (u testUser) recipient(i int) Recipient {
	return Recipient{User: u.id, Device: u.devices[i].id, Key: u.devices[i].enc}
}

// newTestUsers: alice (identity key 0, devices with keys 1 and 2),
// bob (identity 3, device 4), carol (identity 5, device 6).
func newTestUsers(t testing.TB) (alice, bob, carol testUser) {
	alice = testUser{id: NewUserID(), identity: testKey(t, 0), devices: []testDevice{{NewDeviceID(), testKey(t, 1)}, {NewDeviceID(), testKey(t, 2)}}}
	bob = testUser{id: NewUserID(), identity: testKey(t, 3), devices: []testDevice{{NewDeviceID(), testKey(t, 4)}}}
	carol = testUser{id: NewUserID(), identity: testKey(t, 5), devices: []testDevice{{NewDeviceID(), testKey(t, 6)}}}
	return
}

var testNow = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func TestSealOpenRoundTrip(t *testing.T) {
	alice, bob, carol := newTestUsers(t)
	msg := &Message{ContentType: "text/plain; charset=utf-8", Body: []byte("meet at noon"),
		GroupID:     bytes.Repeat([]byte{7}, 16),
		Attachments: []Attachment{{Name: "map.png", MediaType: "image/png", Size: 1234}}}
	to := append(append(alice.recipients()[1:], bob.recipients()...), carol.recipients()...)
	sealed, err := Seal(msg, alice.sender(), to, SealOptions{Sent: testNow, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	env, err := ParseEnvelope(sealed)
	if err != nil {
		t.Fatal(err)
	}
	if len(env.Recipients) != 3 || len(env.Devices) != 3 || !env.Signed() {
		t.Fatalf("envelope: %d users, %d devices, signed %v", len(env.Recipients), len(env.Devices), env.Signed())
	}
	for i, d := range env.Devices {
		delivered, err := ParseEnvelope(env.For(i))
		if err != nil {
			t.Fatal(err)
		}
		var me Recipient
		for _, u := range []testUser{alice, bob, carol} {
			for j := range u.devices {
				if u.id == d.User && u.devices[j].id == d.Device {
					me = u.recipient(j)
				}
			}
		}
		got, status, err := delivered.Open(me, alice.identity.Public(), testNow.Add(time.Minute))
		if err != nil {
			t.Fatalf("device %d: %v", i, err)
		}
		if status != Verified || !bytes.Equal(got.Body, msg.Body) || got.Attachments[0].Name != "map.png" || !bytes.Equal(got.GroupID, msg.GroupID) {
			t.Fatalf("device %d: status %v, message %+v", i, status, got)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	alice, bob, carol := newTestUsers(t)
	msg := &Message{ContentType: "text/plain", Body: []byte("hi")}
	seal := func(opts SealOptions) *Envelope {
		t.Helper()
		if opts.TTL == 0 {
			opts.TTL = time.Hour
		}
		if opts.Sent.IsZero() {
			opts.Sent = testNow
		}
		sealed, err := Seal(msg, alice.sender(), bob.recipients(), opts)
		if err != nil {
			t.Fatal(err)
		}
		env, err := ParseEnvelope(sealed)
		if err != nil {
			t.Fatal(err)
		}
		return env
	}
	at := testNow.Add(time.Second)
	t.Run("expired", func(t *testing.T) {
		_, _, err := seal(SealOptions{TTL: 10 * time.Second}).Open(bob.recipient(0), alice.identity.Public(), testNow.Add(10*time.Second))
		if !errors.Is(err, ErrExpired) {
			t.Fatalf("got %v, want ErrExpired", err)
		}
	})
	t.Run("future", func(t *testing.T) {
		_, _, err := seal(SealOptions{Sent: testNow.Add(time.Hour)}).Open(bob.recipient(0), alice.identity.Public(), testNow)
		if !errors.Is(err, ErrClockSkew) {
			t.Fatalf("got %v, want ErrClockSkew", err)
		}
	})
	t.Run("not a recipient", func(t *testing.T) {
		_, _, err := seal(SealOptions{}).Open(carol.recipient(0), alice.identity.Public(), at)
		if !errors.Is(err, ErrNotRecipient) {
			t.Fatalf("got %v, want ErrNotRecipient", err)
		}
	})
	t.Run("wrong sender key", func(t *testing.T) {
		_, _, err := seal(SealOptions{}).Open(bob.recipient(0), carol.identity.Public(), at)
		if !errors.Is(err, ErrBadSignature) {
			t.Fatalf("got %v, want ErrBadSignature", err)
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		_, status, err := seal(SealOptions{Unsigned: true}).Open(bob.recipient(0), alice.identity.Public(), at)
		if err != nil || status != Unsigned {
			t.Fatalf("got %v %v, want Unsigned", status, err)
		}
	})
	t.Run("unchecked", func(t *testing.T) {
		_, status, err := seal(SealOptions{}).Open(bob.recipient(0), nil, at)
		if err != nil || status != Unchecked {
			t.Fatalf("got %v %v, want Unchecked", status, err)
		}
	})
	t.Run("tampered", func(t *testing.T) {
		raw := seal(SealOptions{}).Bytes()
		for _, off := range []int{2, 20, 40, 60, 80, len(raw) - 500, len(raw) - 390, len(raw) - 1} {
			p := bytes.Clone(raw)
			p[off] ^= 1
			env, err := ParseEnvelope(p)
			if err != nil {
				continue // refused by form: fine
			}
			if _, _, err := env.Open(bob.recipient(0), alice.identity.Public(), at); err == nil {
				t.Fatalf("flipping byte %d was not detected", off)
			}
		}
	})
}

func TestParseEnvelopeRefusesTrailingData(t *testing.T) {
	alice, bob, _ := newTestUsers(t)
	sealed, err := Seal(&Message{ContentType: "text/plain"}, alice.sender(), bob.recipients(), SealOptions{Sent: testNow, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseEnvelope(append(sealed, 0)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want ErrMalformed", err)
	}
	for n := 0; n < len(sealed); n += 37 {
		if _, err := ParseEnvelope(sealed[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		}
	}
}
