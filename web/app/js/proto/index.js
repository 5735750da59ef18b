// index.js: the public API of the QRTalk protocol v1 module (docs/PROTOCOL.md,
// sections 3 to 18), re-exported from one module per concept, as the Go
// package protocol has one file per concept; README.md lists every name.
export { ProtocolError, ErrorCodes } from "./errors.js";
export { VERSION, toHex, fromHex, toBase64, fromBase64, toBase64URL, fromBase64URL, constantTimeEqual } from "./wire.js";
export { randomBytes } from "./primitives.js";
export * from "./ids.js";
export * from "./keys.js";
export * from "./fingerprint.js";
export { MAX_URI_SIZE, ContactCard, Invite, parseContactCard, parseInvite, checkServerURL, checkToken } from "./uri.js";
export * from "./cert.js";
export { encodeMessage, decodeMessage, MAX_BODY_SIZE, MAX_ATTACHMENTS, MAX_CONTENT_TYPE_LEN, MAX_NAME_LEN, GROUP_ID_SIZE, BLOB_ID_SIZE, BLOB_KEY_SIZE, MAX_PLAINTEXT_SIZE } from "./message.js";
export { seal, parseEnvelope, open, forDevice, Envelope, SignatureStatus, MIN_TTL, MAX_TTL, MAX_RECIPIENT_USERS, MAX_RECIPIENT_DEVICES, MAX_CLOCK_SKEW, MAX_CIPHERTEXT_SIZE, MAX_ENVELOPE_SIZE } from "./envelope.js";
export * from "./blob.js";
export { newClientSession, ClientSession, acceptSession, ServerSession, parseChannelSetup, ChannelSetup, parseFrameHeader, MemoryReplayCache, ReplayWindow, MAX_SESSION_LIFETIME, REPLAY_WINDOW, MAX_FRAME_SIZE, SESSION_ID_SIZE, MAX_METHOD_PATH, CHANNEL_SETUP_SIZE } from "./channel.js";
export { LinkCode, newLinkCode, parseLinkCode, parseLinkMailbox, checkLinkMessage, sealLinkRequest, openLinkRequest, sealLinkResponse, openLinkResponse, LINK_MAILBOX_SIZE, LINK_SECRET_SIZE, LINK_LIFETIME, MAX_LINK_MESSAGE_SIZE, MIN_LINK_MESSAGE_SIZE } from "./provision.js";
export { Ticket, parseTicket, resume, Resumption, isResume, parseResume, ResumeRequest, TicketKeys, newTicketKeys, acceptResume, TICKET_LIFETIME, TICKET_KEY_PERIOD, TICKET_SIZE, RESUME_SIZE, RESUME_ANSWER_SIZE } from "./resume.js";
