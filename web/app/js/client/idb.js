// The browser's store (the interface of store.js) on IndexedDB. CryptoKey
// objects are stored as they are (structured clone): a non-extractable device
// key never leaves WebCrypto, not even into this database. Messages are kept
// as received (encrypted envelopes) and attachments as downloaded (encrypted
// blobs); deleteExpired removes both when their TTL ends.

const VERSION = 1;

function req(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}

function done(tx) {
  return new Promise((resolve, reject) => {
    tx.oncomplete = () => resolve();
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error ?? new Error('IndexedDB transaction aborted'));
  });
}

/** openIDBStore opens (creating if needed) the store named name. */
export async function openIDBStore(name = 'qrtalk') {
  if (typeof indexedDB === 'undefined') throw new Error('this browser has no IndexedDB: the web client needs it to keep its keys');
  const open = indexedDB.open(name, VERSION);
  open.onupgradeneeded = () => {
    const db = open.result;
    db.createObjectStore('meta');
    db.createObjectStore('contacts', { keyPath: 'user' });
    db.createObjectStore('groups', { keyPath: 'id' });
    const msgs = db.createObjectStore('messages', { keyPath: 'id' });
    msgs.createIndex('conversation', ['conversation', 'sent']);
    msgs.createIndex('expires', 'expires');
    const seen = db.createObjectStore('seen', { keyPath: 'id' });
    seen.createIndex('expires', 'expires');
    const blobs = db.createObjectStore('blobs', { keyPath: ['message', 'blob'] });
    blobs.createIndex('expires', 'expires');
  };
  const db = await req(open);
  // Another tab upgrading the schema: let it, this one reloads.
  db.onversionchange = () => db.close();
  return new IDBStore(db);
}

export class IDBStore {
  constructor(db) { this.db = db; }

  async #get(store, key) {
    const tx = this.db.transaction(store);
    return (await req(tx.objectStore(store).get(key))) ?? null;
  }
  async #put(store, value, key) {
    const tx = this.db.transaction(store, 'readwrite');
    tx.objectStore(store).put(value, key);
    await done(tx);
  }
  async #delete(store, key) {
    const tx = this.db.transaction(store, 'readwrite');
    tx.objectStore(store).delete(key);
    await done(tx);
  }
  async #all(store) {
    const tx = this.db.transaction(store);
    return req(tx.objectStore(store).getAll());
  }

  getAccount() { return this.#get('meta', 'account'); }
  putAccount(rec) { return this.#put('meta', rec, 'account'); }
  async clear() {
    const names = ['meta', 'contacts', 'groups', 'messages', 'seen', 'blobs'];
    const tx = this.db.transaction(names, 'readwrite');
    for (const n of names) tx.objectStore(n).clear();
    await done(tx);
  }

  getContact(user) { return this.#get('contacts', user); }
  putContact(c) { return this.#put('contacts', c); }
  deleteContact(user) { return this.#delete('contacts', user); }
  listContacts() { return this.#all('contacts'); }

  getGroup(id) { return this.#get('groups', id); }
  putGroup(g) { return this.#put('groups', g); }
  deleteGroup(id) { return this.#delete('groups', id); }
  listGroups() { return this.#all('groups'); }

  async addMessage(m) {
    const tx = this.db.transaction('messages', 'readwrite');
    const s = tx.objectStore('messages');
    const had = await req(s.getKey(m.id));
    if (had === undefined) s.add(m);
    await done(tx);
    return had === undefined;
  }
  getMessage(id) { return this.#get('messages', id); }
  async listMessages(conversation) {
    const tx = this.db.transaction('messages');
    const range = IDBKeyRange.bound([conversation, -Infinity], [conversation, Infinity]);
    return req(tx.objectStore('messages').index('conversation').getAll(range));
  }
  async listConversations() {
    const tx = this.db.transaction('messages');
    const out = new Set();
    await new Promise((resolve, reject) => {
      const c = tx.objectStore('messages').index('conversation').openKeyCursor(null, 'nextunique');
      c.onsuccess = () => {
        const cur = c.result;
        if (!cur) return resolve();
        out.add(cur.key[0]);
        // Skip to the next conversation: past every send time of this one.
        cur.continue([cur.key[0], Infinity]);
      };
      c.onerror = () => reject(c.error);
    });
    return [...out];
  }
  async setMessageState(id, state) {
    const tx = this.db.transaction('messages', 'readwrite');
    const s = tx.objectStore('messages');
    const m = await req(s.get(id));
    if (m) { m.state = state; s.put(m); }
    await done(tx);
  }

  async hasSeen(id) { return (await this.#get('seen', id)) !== null; }
  addSeen(id, expires) { return this.#put('seen', { id, expires }); }

  putBlob(message, blob, data, expires) { return this.#put('blobs', { message, blob, data, expires }); }
  async getBlob(message, blob) { return (await this.#get('blobs', [message, blob]))?.data ?? null; }

  async deleteExpired(now) {
    const names = ['messages', 'seen', 'blobs'];
    const tx = this.db.transaction(names, 'readwrite');
    const upTo = IDBKeyRange.upperBound(now);
    const ids = await req(tx.objectStore('messages').index('expires').getAllKeys(upTo));
    for (const id of ids) tx.objectStore('messages').delete(id);
    for (const n of ['seen', 'blobs']) {
      const keys = await req(tx.objectStore(n).index('expires').getAllKeys(upTo));
      for (const k of keys) tx.objectStore(n).delete(k);
    }
    await done(tx);
    return ids;
  }

  async nextExpiry() {
    const tx = this.db.transaction(['messages', 'blobs']);
    let next = null;
    for (const n of ['messages', 'blobs']) {
      const c = await req(tx.objectStore(n).index('expires').openKeyCursor());
      if (c && (next === null || c.key < next)) next = c.key;
    }
    return next;
  }

  close() { this.db.close(); }
}
