/**
 * The event-store port, shaped after EventStoreDB. Every adapter (KurrentDB, JetStream, in-memory) implements it
 * and passes the shared contract suite in `contract.ts`; no adapter error type leaks past its adapter.
 */

/** `no_stream`: the stream must not exist; `stream_exists`: it must; `any`: no check; a number: the revision of the stream's last event. */
export type ExpectedVersion = 'no_stream' | 'stream_exists' | 'any' | number;

/** JSON-safe values only: events are immutable and must read back exactly as written. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export interface EventToAppend {
  /** A UUID. Derive it from the command so that a retried append is recognised as the same one. */
  eventId: string;
  type: string;
  data: unknown;
  metadata: unknown;
}

export interface RecordedEvent {
  eventId: string;
  type: string;
  data: unknown;
  metadata: unknown;
  streamId: string;
  /** 0-based, contiguous within the stream. */
  revision: number;
  /** Global order across all streams: strictly increasing, not contiguous. */
  position: number;
  /** ISO time at which the store recorded the event. */
  recordedAt: string;
}

export interface AppendResult {
  /** Revision of the last event now in the stream: the expected version for the next append. */
  nextExpectedVersion: number;
  /** Global position of the last event appended. */
  position: number;
}

export interface ReadStreamOptions {
  /** First revision to read (inclusive). Default 0. */
  fromRevision?: number;
  /** Most events to return. Default: all. */
  maxCount?: number;
  /**
   * Where the reader knows an event of this stream to be: the event with revision `revision` (at most
   * `fromRevision`) is at global position `position`, as an earlier read or append reported it. An adapter may
   * start looking there instead of at the stream's beginning; a hint that turns out wrong changes what the read
   * costs, never what it returns.
   */
  hint?: StreamPlace;
}

/** An event's place: its revision in its stream and its global position. */
export interface StreamPlace {
  revision: number;
  position: number;
}

export interface SubscribeOptions {
  /** Deliver events strictly after this global position; `start` for everything. */
  from: 'start' | { position: number };
  /** Only streams whose id starts with this prefix (a category such as `session-`). */
  streamPrefix?: string;
}

/**
 * A catch-up subscription: every stored event after the start position, then live ones, in global order, with no
 * gap and no duplicate across the switch. Iterate it; `close()` ends the iteration.
 */
export interface AllSubscription extends AsyncIterable<RecordedEvent> {
  close(): Promise<void>;
}

export interface EventStore {
  /** Appends all events atomically (all land or none do), checking the expected version first. */
  append(
    streamId: string,
    events: readonly EventToAppend[],
    options: { expectedVersion: ExpectedVersion },
  ): Promise<AppendResult>;
  /** Reads a stream forwards; an absent stream reads as empty. */
  readStream(streamId: string, options?: ReadStreamOptions): Promise<RecordedEvent[]>;
  subscribeToAll(options: SubscribeOptions): AllSubscription;
  /** Answers whether the store is reachable (readiness probes). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** The largest number of events a single append may carry. */
export const MAX_EVENTS_PER_APPEND = 1_000;
