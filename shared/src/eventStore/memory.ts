import { WrongExpectedVersionError } from './errors.js';
import type {
  AllSubscription,
  AppendResult,
  EventStore,
  EventToAppend,
  ExpectedVersion,
  ReadStreamOptions,
  RecordedEvent,
  SubscribeOptions,
} from './port.js';
import { validateAppend } from './validation.js';

/** An in-memory event store for unit tests of pure logic. Not durable, one process only. */
export class InMemoryEventStore implements EventStore {
  private readonly all: RecordedEvent[] = [];
  private readonly streams = new Map<string, RecordedEvent[]>();
  private readonly byEventId = new Map<string, RecordedEvent>();
  private readonly waiters = new Set<() => void>();
  private closed = false;

  constructor(private readonly now: () => Date = () => new Date()) {}

  async append(
    streamId: string,
    events: readonly EventToAppend[],
    options: { expectedVersion: ExpectedVersion },
  ): Promise<AppendResult> {
    validateAppend(streamId, events);
    const stream = this.streams.get(streamId) ?? [];
    // A retry of an append that already landed (same event ids) answers as the original did.
    const first = this.byEventId.get(events[0]!.eventId);
    if (first && first.streamId === streamId) {
      const last = this.byEventId.get(events[events.length - 1]!.eventId) ?? first;
      return { nextExpectedVersion: last.revision, position: last.position };
    }
    const current = stream.length - 1;
    const { expectedVersion } = options;
    const ok =
      expectedVersion === 'any' ||
      (expectedVersion === 'no_stream' && stream.length === 0) ||
      (expectedVersion === 'stream_exists' && stream.length > 0) ||
      (typeof expectedVersion === 'number' && expectedVersion === current);
    if (!ok)
      throw new WrongExpectedVersionError(
        streamId,
        expectedVersion,
        stream.length === 0 ? 'no_stream' : current,
      );
    const recordedAt = this.now().toISOString();
    for (const e of events) {
      const recorded: RecordedEvent = {
        eventId: e.eventId,
        type: e.type,
        data: structuredClone(e.data),
        metadata: structuredClone(e.metadata),
        streamId,
        revision: stream.length,
        position: this.all.length + 1,
        recordedAt,
      };
      stream.push(recorded);
      this.all.push(recorded);
      this.byEventId.set(e.eventId, recorded);
    }
    this.streams.set(streamId, stream);
    for (const wake of this.waiters) wake();
    const last = stream[stream.length - 1]!;
    return { nextExpectedVersion: last.revision, position: last.position };
  }

  async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    // Streams are indexed by revision here: a hint (options.hint) saves nothing.
    const from = options.fromRevision ?? 0;
    const stream = this.streams.get(streamId) ?? [];
    const slice = stream.slice(from, options.maxCount === undefined ? undefined : from + options.maxCount);
    return slice.map((e) => structuredClone(e));
  }

  subscribeToAll(options: SubscribeOptions): AllSubscription {
    let index =
      options.from === 'start'
        ? 0
        : this.all.findIndex((e) => e.position > (options.from as { position: number }).position);
    if (index < 0) index = this.all.length;
    let stopped = false;
    let wake: (() => void) | null = null;
    const all = this.all;
    const waiters = this.waiters;
    const isClosed = () => this.closed;
    return {
      async close() {
        stopped = true;
        wake?.();
      },
      async *[Symbol.asyncIterator]() {
        while (!stopped && !isClosed()) {
          if (index < all.length) {
            const e = all[index++]!;
            if (options.streamPrefix && !e.streamId.startsWith(options.streamPrefix)) continue;
            yield structuredClone(e);
            continue;
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
            waiters.add(resolve);
          });
          if (wake) waiters.delete(wake);
          wake = null;
        }
      },
    };
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {
    this.closed = true;
    for (const wake of this.waiters) wake();
  }
}
