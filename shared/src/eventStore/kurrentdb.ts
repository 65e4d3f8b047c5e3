import {
  FORWARDS,
  KurrentDBClient,
  START,
  streamNameFilter,
  type AllStreamSubscription,
  type AppendResult as ClientAppendResult,
  type AppendToStreamOptions,
  type EventData,
  type ReadStreamOptions as ClientReadStreamOptions,
  type ResolvedEvent,
  type SubscribeToAllOptions,
} from '@kurrent/kurrentdb-client';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import type { Logger } from '../logging/logger.js';
import { EventStoreUnavailableError, WrongExpectedVersionError } from './errors.js';
import {
  isStreamNotFound,
  mapClientError,
  numberToPosition,
  revisionToNumber,
  StreamNames,
  toActualVersion,
  toEventData,
  toRecordedEvent,
  toStreamState,
  tryPositionToNumber,
} from './kurrentdbMapping.js';
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

/** The part of the KurrentDB client this adapter uses: the real client, or a fake in unit tests. */
export interface KurrentClientLike {
  appendToStream(
    streamName: string,
    events: EventData[],
    options: AppendToStreamOptions,
  ): Promise<ClientAppendResult>;
  readStream(streamName: string, options: ClientReadStreamOptions): AsyncIterable<ResolvedEvent>;
  subscribeToAll(
    options: SubscribeToAllOptions,
  ): Pick<AllStreamSubscription, 'unsubscribe' | 'destroy'> & AsyncIterable<ResolvedEvent>;
  dispose(): Promise<void>;
}

export interface KurrentDbEventStoreOptions {
  logger?: Logger;
  /** Stream names become `<namespace>:<streamId>`, so that several deployments or test runs share one database. */
  namespace?: string;
  /** Deadline of one call (append, read, ping). */
  deadlineMs?: number;
}

/** A KurrentDB connection string as the client accepts it (the esdb schemes are deprecated aliases). */
export const KurrentDbUrl = z
  .string()
  .regex(
    /^(kurrentdb|kurrent|kdb|esdb)(\+discover)?:\/\/\S+$/,
    'must be a KurrentDB connection string such as kurrentdb://host:2113?tls=false',
  );

const PING_STREAM = 'rpa-ping';
const DEFAULT_PING_TIMEOUT_MS = 5_000;

/**
 * The event store on KurrentDB (or EventStoreDB 22+), through its gRPC client. Optimistic concurrency, atomic
 * multi-event appends and idempotent retries (by event id and expected version) are the server's own; this adapter
 * only translates (see kurrentdbMapping.ts for the position mapping). Streams are indexed by revision on the
 * server, so the port's read hints are not needed and are ignored.
 */
export class KurrentDbEventStore implements EventStore {
  private readonly names: StreamNames;
  private readonly deadline: { deadline?: number };
  private readonly open = new Set<() => Promise<void>>();
  private closed = false;

  constructor(
    private readonly client: KurrentClientLike,
    private readonly options: KurrentDbEventStoreOptions = {},
  ) {
    this.names = new StreamNames(options.namespace);
    this.deadline = options.deadlineMs === undefined ? {} : { deadline: options.deadlineMs };
  }

  /** Connects lazily (the client dials on first use); a malformed URL is refused here. The URL is never logged. */
  static connect(url: string, options: KurrentDbEventStoreOptions = {}): KurrentDbEventStore {
    const parsed = KurrentDbUrl.safeParse(url);
    if (!parsed.success)
      throw new ConfigError(`KURRENTDB_URL ${parsed.error.issues[0]?.message ?? 'is invalid'}`);
    let client: KurrentDBClient;
    try {
      client = KurrentDBClient.connectionString(parsed.data);
    } catch {
      // The client's message may quote the connection string, credentials included: say only which variable.
      throw new ConfigError(
        'KURRENTDB_URL is not a valid KurrentDB connection string (kurrentdb://[user:password@]host:port?tls=...)',
      );
    }
    return new KurrentDbEventStore(client as unknown as KurrentClientLike, options);
  }

  async append(
    streamId: string,
    events: readonly EventToAppend[],
    options: { expectedVersion: ExpectedVersion },
  ): Promise<AppendResult> {
    validateAppend(streamId, events);
    const { expectedVersion } = options;
    const streamState = toStreamState(expectedVersion);
    let result: ClientAppendResult;
    try {
      result = await this.client.appendToStream(this.names.toKurrent(streamId), events.map(toEventData), {
        streamState,
        ...this.deadline,
      });
    } catch (error) {
      throw mapClientError(error, { operation: 'append', streamId, expected: expectedVersion });
    }
    // With throwOnAppendFailure=false in the connection string the client reports a conflict instead of throwing.
    if (result.success === false) {
      throw new WrongExpectedVersionError(
        streamId,
        expectedVersion,
        toActualVersion(result.nextExpectedRevision),
      );
    }
    const nextExpectedVersion = revisionToNumber(result.nextExpectedRevision);
    // A single event's position is the append's. A multi-event append reports one position for the whole write,
    // and a retry answered from the server's idempotency check reports none: read the last event to be exact.
    const direct = events.length === 1 ? tryPositionToNumber(result.position) : undefined;
    const position = direct ?? (await this.positionOf(streamId, nextExpectedVersion, events.at(-1)!.eventId));
    return { nextExpectedVersion, position };
  }

  private async positionOf(streamId: string, revision: number, eventId: string): Promise<number> {
    const [last] = await this.readStream(streamId, { fromRevision: revision, maxCount: 1 });
    if (!last || last.eventId !== eventId) {
      throw new EventStoreUnavailableError(
        `KurrentDB reported revision ${revision} of stream ${streamId} for event ${eventId}, but holds ${last?.eventId ?? 'nothing'} there`,
      );
    }
    return last.position;
  }

  async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
    const fromRevision = options.fromRevision ?? 0;
    if (options.maxCount === 0) return [];
    const read: ClientReadStreamOptions = {
      direction: FORWARDS,
      fromRevision: BigInt(fromRevision),
      resolveLinkTos: false,
      ...(options.maxCount === undefined ? {} : { maxCount: BigInt(options.maxCount) }),
      ...this.deadline,
    };
    const out: RecordedEvent[] = [];
    try {
      for await (const resolved of this.client.readStream(this.names.toKurrent(streamId), read)) {
        const recorded = toRecordedEvent(resolved, this.names);
        if (recorded) out.push(recorded);
      }
    } catch (error) {
      if (isStreamNotFound(error)) return [];
      throw mapClientError(error, { operation: 'read', streamId });
    }
    return out;
  }

  subscribeToAll(options: SubscribeOptions): AllSubscription {
    const after = options.from === 'start' ? undefined : options.from.position;
    const prefix = this.names.filterPrefix(options.streamPrefix);
    const subscription = this.client.subscribeToAll({
      fromPosition: after === undefined ? START : numberToPosition(after),
      resolveLinkTos: false,
      // Without a prefix: every stream but the system ones (`$...`), which the port never names.
      filter:
        prefix === undefined
          ? streamNameFilter({ regex: '^[^$]' })
          : streamNameFilter({ prefixes: [prefix] }),
    });
    const names = this.names;
    const streamPrefix = options.streamPrefix;
    const logger = this.options.logger;
    let stopped = false;
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      this.open.delete(stop);
      await subscription.unsubscribe().catch(() => undefined);
      // Ends a pending iteration even if the cancelled call never signals its end.
      subscription.destroy();
    };
    this.open.add(stop);
    return {
      close: stop,
      async *[Symbol.asyncIterator]() {
        try {
          for await (const resolved of subscription) {
            if (stopped) return;
            const recorded = toRecordedEvent(resolved, names);
            // The server filters already; checking again costs nothing and keeps a fake or a bug from leaking in.
            if (!recorded || (streamPrefix && !recorded.streamId.startsWith(streamPrefix))) continue;
            // The server starts strictly after `after`; this guard keeps a restart exact whatever it does.
            if (after !== undefined && recorded.position <= after) continue;
            yield recorded;
          }
        } catch (error) {
          if (stopped) return;
          const mapped = mapClientError(error, { operation: 'subscription to $all' });
          logger?.warn({ err: mapped.message, after: after ?? 'start' }, 'KurrentDB subscription ended');
          throw mapped;
        } finally {
          await stop();
        }
      },
    };
  }

  /**
   * Reads a stream that never exists: answers (as not found) only when the server is reachable. Bounded by its own
   * timer, since the client keeps retrying a connection that cannot be made.
   */
  async ping(): Promise<void> {
    const timeoutMs = this.options.deadlineMs ?? DEFAULT_PING_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(new EventStoreUnavailableError(`KurrentDB did not answer a ping within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    const probe = (async () => {
      const read = this.client.readStream(this.names.toKurrent(PING_STREAM), { maxCount: 1n });
      const iterator = read[Symbol.asyncIterator]();
      await iterator.next();
      await iterator.return?.();
    })();
    try {
      await Promise.race([probe, timeout]);
    } catch (error) {
      if (isStreamNotFound(error)) return;
      throw mapClientError(error, { operation: 'ping' });
    } finally {
      clearTimeout(timer);
      // A probe still running after the timeout must not surface as an unhandled rejection.
      probe.catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.open].map((stop) => stop()));
    await this.client.dispose();
  }
}
