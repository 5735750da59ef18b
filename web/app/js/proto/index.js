// index.js: the public API of the QRTalk protocol v1 module (docs/PROTOCOL.md),
// re-exported from one module per concept; README.md lists every name.
export { ProtocolError, ErrorCodes } from "./errors.js";
export { VERSION, toHex, fromHex, toBase64, fromBase64, toBase64URL, fromBase64URL, constantTimeEqual } from "./wire.js";
export { randomBytes } from "./primitives.js";
export * from "./ids.js";
export * from "./keys.js";
export * from "./fingerprint.js";
