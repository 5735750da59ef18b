package protocol_test

import (
	"fmt"
	"time"

	"github.com/qrtalk/qrtalk/internal/testkeys"
	"github.com/qrtalk/qrtalk/protocol"
)

// A device resumes its session with the ticket the server gave with the
// last one: no RSA on either side, new keys for the new session.
func ExampleResume() {
	serverKey, authKey := testkeys.Key(7), testkeys.Key(2) // in real use: the server's key, the device's key
	dev := protocol.ChannelDevice{User: protocol.NewUserID(), Device: protocol.NewDeviceID(), AuthKey: authKey}
	tickets := protocol.NewTicketKeys(serverKey) // the server's, derived from its key
	replay := &protocol.MemoryReplayCache{}      // the server's, shared by its nodes
	now := time.Now()

	// A full setup, once: the server issues a ticket with it.
	cs, setup, _ := protocol.NewClientSession(dev, serverKey.Public(), now)
	parsed, _ := protocol.ParseChannelSetup(setup)
	ss, confirm, _ := protocol.AcceptSession(parsed, serverKey, authKey.Public(), replay, time.Hour, now)
	sealed, _ := tickets.IssueTicket(ss, now)
	cs.Confirm(confirm, now)
	ticket, _ := cs.Ticket(sealed, now)

	// Later (a reconnect, a server restart): the device resumes.
	later := now.Add(50 * time.Minute)
	res, msg, _ := protocol.Resume(ticket, later)

	// The server checks the ticket and the binder, looks the device up
	// (not revoked), and accepts.
	q, err := protocol.ParseResume(msg)
	if err == nil {
		err = tickets.Check(q, later)
	}
	if err != nil {
		fmt.Println("refused:", err)
		return
	}
	ss2, answer, err := protocol.AcceptResume(q, replay, time.Hour, later)
	if err != nil {
		fmt.Println("refused:", err)
		return
	}

	cs2, err := res.Finish(answer, later)
	fmt.Println(err == nil, cs2.ID() == ss2.ID(), cs2.ID() != cs.ID())

	// The same resume again is a replay.
	q2, _ := protocol.ParseResume(msg)
	tickets.Check(q2, later)
	_, _, err = protocol.AcceptResume(q2, replay, time.Hour, later)
	fmt.Println(err)
	// Output:
	// true true true
	// replayed or out-of-window message: ticket already used
}
