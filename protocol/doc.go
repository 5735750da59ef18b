// Package protocol is QRTalk protocol v1: keys, fingerprints, qrtalk: URIs,
// device certificates, envelopes, attachment blobs, device linking and the
// secure channel between a device and its server.
//
// The format is specified byte for byte in docs/PROTOCOL.md, with test
// vectors in testdata/vectors.json that every implementation checks. There
// is one cipher suite and no negotiation: RSA-3072 keys (e = 65537),
// RSA-OAEP-SHA256 to wrap keys, RSA-PSS-SHA256 to sign, AES-256-GCM with a
// fresh key and nonce per message, HKDF-SHA256 for the channel's keys. Every
// encoding starts with the version byte 1; anything else is refused with
// ErrVersion, so that a v2 can exist beside v1.
//
// The main entry points:
//
//   - GenerateKey, ParsePublicKey, ParsePrivateKey: keys, checked on parse.
//   - IdentityFingerprint, ContactCard, Invite: what people compare and scan.
//   - CertifyDevice, RevokeDevice, VerifyDeviceList: a user's identity key
//     vouching for its devices.
//   - Seal, ParseEnvelope, Envelope.Open: a message encrypted once, its key
//     wrapped for every recipient device, signed by the sender.
//   - EncryptBlob, DecryptBlob: attachments, streamed in chunks.
//   - NewClientSession, AcceptSession: the secure channel.
//   - TicketKeys, Resume, AcceptResume: resuming a channel session with a
//     ticket, without RSA (docs/PROTOCOL.md, section 18).
//
// Decoders have size limits and strict, canonical parsing; errors wrap the
// sentinel errors of errors.go. Nothing here panics on any input.
package protocol
