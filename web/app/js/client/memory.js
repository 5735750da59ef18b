// An in-memory store (the interface of store.js), for Node tests and for a
// session that must leave nothing behind. Records are copied in and out, as
// IndexedDB would clone them.

const copy = (v) => (v === null || v === undefined ? null : { ...v });

export class MemoryStore {
  #account = null;
  #contacts = new Map();
  #groups = new Map();
  #messages = new Map();
  #seen = new Map();
  #blobs = new Map(); // "message/blob" -> {data, expires, message}

  async getAccount() { return copy(this.#account); }
  async putAccount(rec) { this.#account = copy(rec); }
  async clear() {
    this.#account = null;
    for (const m of [this.#contacts, this.#groups, this.#messages, this.#seen, this.#blobs]) m.clear();
  }

  async getContact(user) { return copy(this.#contacts.get(user)); }
  async putContact(c) { this.#contacts.set(c.user, copy(c)); }
  async deleteContact(user) { this.#contacts.delete(user); }
  async listContacts() { return [...this.#contacts.values()].map(copy); }

  async getGroup(id) { return copy(this.#groups.get(id)); }
  async putGroup(g) { this.#groups.set(g.id, { ...g, members: [...g.members] }); }
  async deleteGroup(id) { this.#groups.delete(id); }
  async listGroups() { return [...this.#groups.values()].map(copy); }

  async addMessage(m) {
    if (this.#messages.has(m.id)) return false;
    this.#messages.set(m.id, copy(m));
    return true;
  }
  async getMessage(id) { return copy(this.#messages.get(id)); }
  async listMessages(conversation) {
    return [...this.#messages.values()]
      .filter((m) => m.conversation === conversation)
      .sort((a, b) => a.sent - b.sent || (a.id < b.id ? -1 : 1))
      .map(copy);
  }
  async listConversations() { return [...new Set([...this.#messages.values()].map((m) => m.conversation))]; }
  async setMessageState(id, state) {
    const m = this.#messages.get(id);
    if (m) m.state = state;
  }

  async hasSeen(id) { return this.#seen.has(id); }
  async addSeen(id, expires) { this.#seen.set(id, expires); }

  async putBlob(message, blob, data, expires) {
    this.#blobs.set(`${message}/${blob}`, { data, expires, message });
  }
  async getBlob(message, blob) { return this.#blobs.get(`${message}/${blob}`)?.data ?? null; }

  async deleteExpired(now) {
    const ids = [];
    for (const [id, m] of this.#messages) {
      if (m.expires <= now) { this.#messages.delete(id); ids.push(id); }
    }
    for (const [k, b] of this.#blobs) if (b.expires <= now) this.#blobs.delete(k);
    for (const [id, exp] of this.#seen) if (exp <= now) this.#seen.delete(id);
    return ids;
  }
  async nextExpiry() {
    let next = null;
    for (const m of this.#messages.values()) if (next === null || m.expires < next) next = m.expires;
    for (const b of this.#blobs.values()) if (next === null || b.expires < next) next = b.expires;
    return next;
  }

  /** Counts, for tests: what is held right now. */
  stats() {
    return { messages: this.#messages.size, blobs: this.#blobs.size, seen: this.#seen.size, contacts: this.#contacts.size };
  }
}
