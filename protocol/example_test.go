package protocol_test

import (
	"fmt"
	"time"

	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

// Alice seals a message for Bob's device; Bob opens it and checks her
// signature against the identity key he pinned.
func ExampleSeal() {
	aliceIdentity := testkeys.Key(0) // in real use: protocol.GenerateKey()
	bobDeviceKey := testkeys.Key(1)
	alice := protocol.Sender{User: protocol.NewUserID(), Device: protocol.NewDeviceID(), Identity: aliceIdentity}
	bob := protocol.Recipient{User: protocol.NewUserID(), Device: protocol.NewDeviceID(), Key: bobDeviceKey}

	now := time.Now()
	sealed, err := protocol.Seal(
		&protocol.Message{ContentType: "text/plain; charset=utf-8", Body: []byte("meet at noon")},
		alice,
		[]protocol.DeviceRecipient{{User: bob.User, Device: bob.Device, Key: bobDeviceKey.Public()}},
		protocol.SealOptions{Sent: now, TTL: time.Hour},
	)
	if err != nil {
		panic(err)
	}

	env, err := protocol.ParseEnvelope(sealed)
	if err != nil {
		panic(err)
	}
	msg, status, err := env.Open(bob, aliceIdentity.Public(), now.Add(time.Minute))
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s (%s)\n", msg.Body, status)
	// Output: meet at noon (verified)
}

// A fingerprint's numeric form is what two people read to each other.
func ExampleFingerprint_Numeric() {
	fp := protocol.IdentityFingerprint(testkeys.Key(0).Public())
	fmt.Println(len(fp.Numeric()), fp.MatchesNumeric(fp.Numeric()))
	// Output: 47 true
}
