import {
  WrongExpectedVersionError,
  type AllSubscription,
  type AppendResult,
  type EventStore,
  type EventToAppend,
  type ExpectedVersion,
  type ReadStreamOptions,
  type RecordedEvent,
  type SubscribeOptions,
} from '@rpa/shared';

/**
 * An event store as the command API's tests see it: it delegates to a real one and counts the events that actually
 * land (so a test can assert "nothing appended") and the version conflicts reported, and it can run a hook before
 * each append (another writer getting in first) or fail appends.
 */
export class ObservedStore implements EventStore {
  appended = 0;
  conflicts = 0;
  beforeAppend: ((events: readonly EventToAppend[]) => Promise<void>) | null = null;
  failAppend: Error | null = null;

  constructor(readonly inner: EventStore) {}

  async append(
    streamId: string,
    events: readonly EventToAppend[],
    options: { expectedVersion: ExpectedVersion },
  ): Promise<AppendResult> {
    const hook = this.beforeAppend;
    if (hook) await hook(events);
    if (this.failAppend) throw this.failAppend;
    try {
      const result = await this.inner.append(streamId, events, options);
      this.appended += events.length;
      return result;
    } catch (error) {
      if (error instanceof WrongExpectedVersionError) this.conflicts++;
      throw error;
    }
  }
  readStream(streamId: string, options?: ReadStreamOptions): Promise<RecordedEvent[]> {
    return this.inner.readStream(streamId, options);
  }
  subscribeToAll(options: SubscribeOptions): AllSubscription {
    return this.inner.subscribeToAll(options);
  }
  ping(): Promise<void> {
    return this.inner.ping();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}
