// TabStore: one notebook's event log shared by every tab of this origin, with the
// RuntimeStore interface (`commit`, `subscribe`). One total order for all tabs: a single
// writer, elected with Web Locks (the tab holding the lock; when it closes, another tab
// takes over), keeps the log and writes it to localStorage before anything is
// acknowledged; the other tabs send it their commits and receive every append over a
// BroadcastChannel. Commits carry batch ids, so a commit resent to a new writer lands once.

const REQUEST_TIMEOUT_MS = 10_000;
const REMEMBERED_BATCHES = 1024;

export class TabStore {
  /**
   * The log named `name` (its localStorage key, lock and channel are derived from it).
   * Every tab that opens the same name shares one log.
   */
  constructor(name = "runtime-agents") {
    if (typeof BroadcastChannel !== "function") throw new Error("TabStore needs BroadcastChannel");
    this.name = name;
    this.key = `${name}.log`;
    this.log = load(this.key);
    this.leader = false;
    this.closed = false;
    this.pending = new Map(); // request id -> { events, batchId, resolve, reject, timer }
    this.subscribers = new Set();
    this.channel = new BroadcastChannel(`${name}.channel`);
    this.channel.onmessage = (message) => this.#receive(message.data);
    if (navigator.locks) {
      navigator.locks.request(`${name}.writer`, () => {
        if (this.closed) return undefined;
        this.#lead();
        return new Promise((release) => { this.release = release; });
      });
    } else {
      this.#lead(); // no Web Locks: a lone tab writes for itself
    }
    this.#send({ type: "sync", from: this.log.events.length + 1 });
  }

  /** `true` while this tab is the writer. */
  get isWriter() {
    return this.leader;
  }

  /** How many events the log holds, as this tab knows it. */
  get length() {
    return this.log.events.length;
  }

  /**
   * Appends `events` in order; the first's sequence number, at once in the writer's tab,
   * as a promise elsewhere. A `batchId` committed before returns that commit's number.
   */
  commit(events, batchId) {
    if (this.closed) throw new Error("this TabStore is closed");
    if (!Array.isArray(events) || events.length === 0) throw new Error("commit takes a non-empty array of events");
    const batch = batchId || crypto.randomUUID();
    if (this.leader) return this.#append(events, batch);
    const id = crypto.randomUUID();
    return new Promise((resolve, reject) => {
      const request = { events, batchId: batch, resolve, reject, timer: 0 };
      request.timer = setTimeout(() => {
        this.pending.delete(id);
        reject(Object.assign(new Error("no tab answered as the log's writer"), { retriable: true }));
      }, REQUEST_TIMEOUT_MS);
      this.pending.set(id, request);
      this.#send({ type: "commit", id, events, batchId: batch });
    });
  }

  /**
   * Calls `onEvents(events, firstSeq)` with every event from `fromSeq` on, in order and
   * without gaps, then with each append; returns a function that stops the calls.
   */
  subscribe(fromSeq, onEvents) {
    const subscriber = { next: Math.max(1, fromSeq), onEvents };
    this.subscribers.add(subscriber);
    this.#deliver(subscriber);
    return () => this.subscribers.delete(subscriber);
  }

  /** Leaves the log: gives up writing (another tab takes over) and stops every call. */
  close() {
    this.closed = true;
    this.leader = false;
    this.release?.();
    this.channel.close();
    for (const request of this.pending.values()) clearTimeout(request.timer);
    this.pending.clear();
    this.subscribers.clear();
  }

  #lead() {
    // The stored log, or what this tab has heard if the last writer's final write has not
    // reached this tab's view of localStorage yet.
    const stored = load(this.key);
    if (stored.events.length > this.log.events.length) this.log = stored;
    this.leader = true;
    this.#persist();
    this.#send({ type: "writer" });
    for (const [id, request] of this.pending) {
      this.pending.delete(id);
      clearTimeout(request.timer);
      request.resolve(this.#append(request.events, request.batchId));
    }
    this.#notify();
  }

  #append(events, batchId) {
    const known = this.log.batches[batchId];
    if (known !== undefined) return known;
    const first = this.log.events.length + 1;
    this.log.events.push(...events);
    this.log.batches[batchId] = first;
    this.log.order.push(batchId);
    while (this.log.order.length > REMEMBERED_BATCHES) delete this.log.batches[this.log.order.shift()];
    this.#persist();
    this.#send({ type: "appended", first, events });
    this.#notify();
    return first;
  }

  #persist() {
    localStorage.setItem(this.key, JSON.stringify(this.log)); // synchronous: survives unload
  }

  #receive(message) {
    if (this.closed || typeof message !== "object" || message === null) return;
    switch (message.type) {
      case "commit":
        if (this.leader) {
          try {
            const first = this.#append(message.events, message.batchId);
            this.#send({ type: "committed", id: message.id, first });
          } catch (error) {
            this.#send({ type: "failed", id: message.id, message: String(error?.message ?? error) });
          }
        }
        break;
      case "committed":
      case "failed": {
        const request = this.pending.get(message.id);
        if (request) {
          this.pending.delete(message.id);
          clearTimeout(request.timer);
          if (message.type === "committed") request.resolve(message.first);
          else request.reject(new Error(`the log's writer could not append: ${message.message}`));
        }
        break;
      }
      case "writer": // a new writer: what it may not have seen goes again
        for (const [id, request] of this.pending) {
          this.#send({ type: "commit", id, events: request.events, batchId: request.batchId });
        }
        break;
      case "sync":
        if (this.leader && message.from <= this.log.events.length) {
          this.#send({ type: "appended", first: message.from, events: this.log.events.slice(message.from - 1) });
        }
        break;
      case "appended":
        if (this.leader) break; // only the writer's own appends count
        this.#heard(message.first, message.events);
        break;
    }
  }

  #heard(first, events) {
    const next = this.log.events.length + 1;
    if (first > next) {
      this.#send({ type: "sync", from: next }); // a gap: ask for what is missing
      return;
    }
    const fresh = events.slice(next - first);
    if (fresh.length === 0) return;
    this.log.events.push(...fresh);
    this.#notify();
  }

  #notify() {
    for (const subscriber of this.subscribers) this.#deliver(subscriber);
  }

  #deliver(subscriber) {
    const events = this.log.events;
    if (subscriber.next > events.length) return;
    const first = subscriber.next;
    subscriber.next = events.length + 1;
    subscriber.onEvents(events.slice(first - 1), first);
  }

  #send(message) {
    if (!this.closed) this.channel.postMessage(message);
  }
}

function load(key) {
  try {
    const stored = JSON.parse(localStorage.getItem(key) ?? "null");
    if (stored && Array.isArray(stored.events) && Array.isArray(stored.order)) {
      return { events: stored.events, batches: stored.batches ?? {}, order: stored.order };
    }
    if (Array.isArray(stored)) return { events: stored, batches: {}, order: [] }; // an older demo's log
  } catch {
    // Not ours or not JSON: start a new log (the old value is overwritten at the first write).
  }
  return { events: [], batches: {}, order: [] };
}
