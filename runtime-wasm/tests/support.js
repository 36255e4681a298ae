// JS helpers shared by the Node and browser tests.

/** The simplest store an app could write: an array, synchronous delivery. */
export function plainStore() {
  const events = [];
  const subscribers = new Set();
  return {
    events,
    commit(batch) {
      const first = events.length + 1;
      events.push(...batch);
      for (const subscriber of subscribers) subscriber.deliver();
      return first;
    },
    subscribe(fromSeq, onEvents) {
      const subscriber = {
        next: fromSeq,
        deliver() {
          if (this.next > events.length) return;
          const first = this.next;
          this.next = events.length + 1;
          onEvents(events.slice(first - 1), first);
        },
      };
      subscribers.add(subscriber);
      subscriber.deliver();
      return () => subscribers.delete(subscriber);
    },
  };
}

/** Commits a request to run `source`. */
export function request(store, queueId, source) {
  const cellId = "cell-" + queueId;
  store.commit([
    { type: "v1.CellCreated", cellId, cellType: "code", source },
    { type: "v1.ExecutionRequested", queueId, cellId, cellType: "code", source, requestedBy: "test" },
  ]);
}
