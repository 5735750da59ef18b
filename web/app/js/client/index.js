// index.js: the web client SDK's public API (README.md in this directory).
export { Account, ContentText, ContentReceipt, ContentTyping, ContentGroup, SigVerified, SigUnverifiedKey, SigUnsigned, SigInvalid, MIN_TTL, MAX_TTL, checkTTL } from './account.js';
export { Conn, Live, APIError, ClientError } from './conn.js';
export { Link, LINK_LIFETIME } from './link.js';
export { MemoryStore } from './memory.js';
export { openIDBStore, IDBStore } from './idb.js';
export { checkStore } from './store.js';
