// errors.js: the errors of QRTalk protocol v1 (docs/PROTOCOL.md §13).
//
// Every failure of this module is a ProtocolError whose `code` is one of the
// short names of §13 (the names the test vectors use), so callers test
// `err.code === "decrypt"` the way Go callers use errors.Is(err, ErrDecrypt).
// Misuse of the API (a string where bytes are expected, a key used for what
// it cannot do) is a TypeError instead: it is a bug, not bad input.

/** The error codes of §13, each with the message of its Go error. */
export const ErrorCodes = Object.freeze({
  malformed: "malformed input",
  version: "unsupported protocol version",
  too_large: "input too large",
  key_size: "RSA key must be 3072 bits",
  key_exponent: "RSA public exponent must be 65537",
  bad_signature: "bad signature",
  not_recipient: "not a recipient",
  expired: "expired",
  decrypt: "decryption failed",
  replay: "replayed or out-of-window message",
  clock_skew: "timestamp outside the allowed clock skew",
  mismatch: "mismatch",
});

/**
 * A failure of the protocol: bad input, a check that failed. `code` is one
 * of the keys of ErrorCodes. Messages never contain plaintext or keys.
 */
export class ProtocolError extends Error {
  constructor(code, detail) {
    if (!Object.hasOwn(ErrorCodes, code)) throw new TypeError(`unknown protocol error code ${code}`);
    super(detail ? `${ErrorCodes[code]}: ${detail}` : ErrorCodes[code]);
    this.name = "ProtocolError";
    this.code = code;
  }

  /** Returns the same error with context in front of its message (Go's fmt.Errorf("ctx: %w")). */
  withContext(context) {
    const e = new ProtocolError(this.code);
    e.message = `${context}: ${this.message}`;
    return e;
  }
}

/** Throws a ProtocolError. */
export function fail(code, detail) {
  throw new ProtocolError(code, detail);
}

/** Runs fn and prefixes the message of a ProtocolError it throws with context. */
export async function withContext(context, fn) {
  try {
    return await fn();
  } catch (e) {
    throw e instanceof ProtocolError ? e.withContext(context) : e;
  }
}

/** The synchronous form of withContext. */
export function withContextSync(context, fn) {
  try {
    return fn();
  } catch (e) {
    throw e instanceof ProtocolError ? e.withContext(context) : e;
  }
}
