import type { RuntimeEvent, RuntimeStore } from "./runtime_wasm.js";

/**
 * One notebook's event log shared by every tab of this origin, with the `RuntimeStore`
 * interface: one total order for all tabs. A single writer, elected with Web Locks (the
 * tab holding the lock; when it closes, another takes over), keeps the log in
 * localStorage; the other tabs send it their commits and hear every append over a
 * BroadcastChannel. Commits carry batch ids, so one resent to a new writer lands once.
 *
 * ```js
 * import { TabStore } from "runtime-agents-wasm/tab-store.js";
 * const store = new TabStore("my-notebook");
 * ```
 */
export declare class TabStore implements RuntimeStore {
    /** The log named `name`: every tab that opens the same name shares it. */
    constructor(name?: string);
    /** `true` while this tab is the log's writer. */
    readonly isWriter: boolean;
    /** How many events the log holds, as this tab knows it. */
    readonly length: number;
    /**
     * Appends `events` in order; resolves to the first's sequence number (at once in the
     * writer's tab). A `batchId` committed before returns that commit's number. Fails,
     * retriable, when no tab answers as the writer within ten seconds.
     */
    commit(events: RuntimeEvent[], batchId?: string): number | Promise<number>;
    /**
     * Calls `onEvents(events, firstSeq)` with every event from `fromSeq` on, in order and
     * without gaps, then with each append; returns a function that stops the calls.
     */
    subscribe(fromSeq: number, onEvents: (events: RuntimeEvent[], firstSeq: number) => void): () => void;
    /** Leaves the log: gives up writing (another tab takes over) and stops every call. */
    close(): void;
}
