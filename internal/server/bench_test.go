package server_test

import (
	"testing"
	"time"

	"github.com/qrtalk/qrtalk/protocol"
)

// BenchmarkLivePush: the server's side of live delivery without the send
// request: push an envelope on a connected device's live channel (sealed
// by the secure channel, written over WebSocket and TLS) and wait for the
// device's acknowledgement (read, opened, matched). One at a time, then
// 64 in flight, where pushes that are ready together share a write; its
// x-sequential is the ratio of the two rates.
func BenchmarkLivePush(b *testing.B) {
	c := newCluster(b, clusterConfig{single: true})
	from, to := c.user(b, 0), c.user(b, 0)
	receive(b, to)
	srv := c.nodes[0].srv
	dev := to.Device()
	const window = 64
	envs := make([]*protocol.Envelope, window)
	raws := make([][]byte, window)
	for i := range envs {
		raw, err := protocol.Seal(&protocol.Message{ContentType: "text/plain", Body: make([]byte, 1024)}, from.Device().Sender(),
			recipients(to), protocol.SealOptions{Sent: time.Now(), TTL: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		if envs[i], err = protocol.ParseEnvelope(raw); err != nil {
			b.Fatal(err)
		}
		raws[i] = envs[i].For(0)
	}
	push := func(b *testing.B, i int) <-chan struct{} {
		acked, ok := srv.DeliverLive(dev.User, dev.ID, envs[i].ID, raws[i])
		if !ok {
			b.Fatal("the device has no live channel")
		}
		return acked
	}
	wait := func(b *testing.B, acked <-chan struct{}) {
		select {
		case <-acked:
		case <-time.After(10 * time.Second):
			b.Fatal("no acknowledgement within 10 s")
		}
	}
	var sequential float64
	b.Run("sequential", func(b *testing.B) {
		for b.Loop() {
			wait(b, push(b, 0))
		}
		if s := b.Elapsed().Seconds(); s > 0 {
			sequential = float64(b.N) / s
			b.ReportMetric(sequential, "msgs/s")
		}
	})
	b.Run("64-in-flight", func(b *testing.B) {
		var inflight [window]<-chan struct{}
		n := 0
		for b.Loop() {
			i := n % window
			if inflight[i] != nil {
				wait(b, inflight[i])
			}
			inflight[i] = push(b, i)
			n++
		}
		for _, a := range inflight {
			if a != nil {
				wait(b, a)
			}
		}
		if s := b.Elapsed().Seconds(); s > 0 {
			rate := float64(b.N) / s
			b.ReportMetric(rate, "msgs/s")
			if sequential > 0 {
				b.ReportMetric(rate/sequential, "x-sequential")
			}
		}
	})
}
