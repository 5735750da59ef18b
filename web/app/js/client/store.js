// The local store's interface: what the SDK keeps on the device. Two
// implementations: idb.js (IndexedDB, the browser) and memory.js (tests).
//
// Every method is async. Records are plain objects; binary fields are
// Uint8Array and keys are CryptoKey objects (IndexedDB keeps them as they
// are, non-extractable ones included, so a device key never exists as bytes).
//
//   account   getAccount() -> rec | null; putAccount(rec); clear()
//             rec: { version: 1, server, serverFingerprint, user, device,
//                    identityKey (CryptoKey, RSA-PSS private, extractable only
//                    for device linking), identityPublic (DER), encKey, authKey
//                    (CryptoKey, non-extractable), cert (bytes), created }
//   contacts  getContact(user); putContact(c); deleteContact(user); listContacts()
//             c: { user, name, identity (DER), verified, pending (DER|null), added }
//   groups    getGroup(idHex); putGroup(g); deleteGroup(idHex); listGroups()
//             g: { id (hex), name, members: [user], version }
//   messages  addMessage(m) -> false if the ID is there already; getMessage(id);
//             listMessages(conversation) (oldest first); setMessageState(id, state);
//             listConversations() -> the conversation keys that hold messages
//             m: { id, conversation, outgoing, envelope (as received), sent, expires, state }
//   seen      hasSeen(id); addSeen(id, expires): IDs opened, kept until they expire,
//             so that a message delivered twice or replayed is handled once
//   blobs     putBlob(messageID, blobID, data, expires); getBlob(messageID, blobID)
//             -> Blob|Uint8Array|null: attachments, still encrypted
//   expiry    deleteExpired(now) -> [message IDs]: every message, blob and seen
//             entry whose expiry is <= now, gone; nextExpiry() -> ms | null

/** The methods a store must have; checkStore throws if one is missing. */
export const storeMethods = [
  'getAccount', 'putAccount', 'clear',
  'getContact', 'putContact', 'deleteContact', 'listContacts',
  'getGroup', 'putGroup', 'deleteGroup', 'listGroups',
  'addMessage', 'getMessage', 'listMessages', 'setMessageState', 'listConversations',
  'hasSeen', 'addSeen', 'putBlob', 'getBlob',
  'deleteExpired', 'nextExpiry',
];

/** checkStore fails early on an object that is not a store. */
export function checkStore(store) {
  for (const m of storeMethods) {
    if (typeof store?.[m] !== 'function') throw new TypeError(`not a QRTalk store: no ${m}()`);
  }
  return store;
}
