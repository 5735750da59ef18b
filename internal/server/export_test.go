package server

import "github.com/qrtalk/qrtalk/protocol"

// DeliverLive pushes an envelope on a device's live channel on this node,
// as a send does, and returns a channel closed at its acknowledgement; false
// if the device holds no channel here or it is too far behind. For the
// live-push benchmark.
func (s *Server) DeliverLive(u protocol.UserID, d protocol.DeviceID, id protocol.MessageID, envelope []byte) (<-chan struct{}, bool) {
	c := s.hub.conn(deviceKey{u, d})
	if c == nil {
		return nil, false
	}
	return c.deliver(id, envelope)
}
