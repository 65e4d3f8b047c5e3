import { v5 as uuidv5 } from 'uuid';
import type { SessionCommand } from '../commands/sessionCommands.js';
import {
  decodeSessionEvent,
  encodeSessionEvent,
  sessionStreamId,
  type RecordedSessionEvent,
} from '../events/codec.js';
import { RpaError } from '../errors.js';
import { WrongExpectedVersionError } from '../eventStore/errors.js';
import type { EventStore, RecordedEvent } from '../eventStore/port.js';
import type { Logger } from '../logging/logger.js';
import { decide, type Rejection } from './decide.js';
import { evolve, FoldScope } from './evolve.js';
import { SNAPSHOT_FORMAT, type SessionSnapshot, type SnapshotStore } from './snapshot.js';
import { initialState, type SessionState } from './state.js';

/** A command the decider refused; nothing was appended. */
export class CommandRejectedError extends RpaError {
  constructor(readonly rejection: Rejection) {
    super(rejection.code, rejection.message);
  }
}

/** Version conflicts persisted past the retry budget (a hot session). Safe to retry the whole command. */
export class ConcurrencyExhaustedError extends RpaError {
  constructor(streamId: string, attempts: number) {
    super('CONCURRENCY_EXHAUSTED', `stream ${streamId} kept changing during ${attempts} attempts`);
  }
}

export interface LoadedSession {
  state: SessionState;
  /** Revision of the last event folded; -1 for a session with no events. */
  version: number;
  /** Global position of the last event folded; 0 when none. */
  position: number;
}

export interface CommandResult extends LoadedSession {
  /** The events this command appended; empty for a duplicate. */
  events: RecordedSessionEvent[];
}

/** Events between two snapshots of a session by default: a load folds at most about this many events. */
export const DEFAULT_SNAPSHOT_EVERY = 200;

const EVENT_ID_NAMESPACE = '6f1c7a52-5b0e-4d3c-9c55-2d2f7f0b8a11';

/** The id of the n-th event a command produces: the same command always yields the same ids. */
export function eventIdFor(commandId: string, index: number): string {
  return uuidv5(`${commandId}#${index}`, EVENT_ID_NAMESPACE);
}

/** Folds recorded session events onto a loaded state, telling `evolve` where each event is. */
export function foldRecorded(base: LoadedSession, recorded: Iterable<RecordedSessionEvent>): LoadedSession {
  let { state, version, position } = base;
  const scope = new FoldScope();
  for (const r of recorded) {
    state = evolve(state, r.event, r.metadata, { revision: r.revision, position: r.position }, scope);
    version = r.revision;
    position = r.position;
  }
  return { state, version, position };
}

export interface SessionCommandHandlerOptions {
  store: EventStore;
  logger?: Logger;
  /** Sessions whose folded state is kept in memory. */
  cacheSize?: number;
  /** Decide-and-append attempts before giving up on a conflicting stream. */
  maxAttempts?: number;
  /** Where folded state is kept across processes: a load that has nothing cached starts from the snapshot. */
  snapshots?: SnapshotStore;
  /** Events folded past the last snapshot before a new one is written. */
  snapshotEvery?: number;
}

/** A cached fold, and the version of the newest snapshot this process knows of for it. */
interface CacheEntry extends LoadedSession {
  snapshotVersion: number;
}

const EMPTY: LoadedSession = { state: initialState(), version: -1, position: 0 };

/**
 * Loads a session, decides, and appends with the version it read. Folded state is cached by version: a command
 * decides on the cache and appends with its version, reading the stream only on a conflict (another writer's events)
 * or to confirm a refusal; a conflict refreshes and decides again. With a snapshot
 * store, a session not in the cache starts from its snapshot, and every `snapshotEvery` events a new snapshot is
 * written in the background: loading a session then costs the events since its snapshot, not its whole stream.
 */
export class SessionCommandHandler {
  private readonly cache = new Map<string, CacheEntry>();
  /** Streams with a snapshot being written, and the one to write after it. */
  private readonly snapshotting = new Map<string, SessionSnapshot | null>();
  private readonly store: EventStore;
  private readonly cacheSize: number;
  private readonly maxAttempts: number;
  private readonly logger: Logger | undefined;
  private readonly snapshots: SnapshotStore | undefined;
  private readonly snapshotEvery: number;

  constructor(options: SessionCommandHandlerOptions) {
    this.store = options.store;
    this.cacheSize = options.cacheSize ?? 10_000;
    this.maxAttempts = options.maxAttempts ?? 8;
    this.logger = options.logger;
    this.snapshots = options.snapshots;
    this.snapshotEvery = Math.max(1, options.snapshotEvery ?? DEFAULT_SNAPSHOT_EVERY);
  }

  /** The session's current state, brought up to date from the store. */
  async load(sessionId: string): Promise<LoadedSession> {
    const streamId = sessionStreamId(sessionId);
    const base = this.cache.get(streamId) ?? (await this.fromSnapshot(streamId));
    const fresh = await this.store.readStream(streamId, {
      fromRevision: base.version + 1,
      // The last event folded is where the events after it start.
      ...(base.version >= 0 ? { hint: { revision: base.version, position: base.position } } : {}),
    });
    const loaded = foldRecorded(base, decodeAll(fresh));
    this.remember(streamId, loaded, base.snapshotVersion);
    return loaded;
  }

  /**
   * The session as this handler last folded it, without reading the stream: possibly behind what others appended
   * since, never ahead of the stream. Undefined when it is not cached.
   */
  peek(sessionId: string): LoadedSession | undefined {
    const entry = this.cache.get(sessionStreamId(sessionId));
    return entry && { state: entry.state, version: entry.version, position: entry.position };
  }

  /** Decides the command against the current state and appends its events; throws CommandRejectedError when refused. */
  async handle(command: SessionCommand): Promise<CommandResult> {
    const streamId = sessionStreamId(command.sessionId);
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      // First try: decide on the cached fold without reading; the append's expected version proves it current, and
      // a conflict reads what others appended. A refusal or a no-op proves nothing, so it is confirmed on a fresh read.
      let loaded: LoadedSession | undefined = attempt === 1 ? this.cache.get(streamId) : undefined;
      let decision = loaded ? decide(command, loaded.state) : undefined;
      if (!loaded || !decision || !decision.ok || decision.events.length === 0) {
        loaded = await this.load(command.sessionId);
        decision = decide(command, loaded.state);
      }
      if (!decision.ok) throw new CommandRejectedError(decision.rejection);
      if (decision.events.length === 0) return { ...loaded, events: [] };
      const tenantId = loaded.state.status === 'none' ? command.tenantId : loaded.state.tenantId;
      const toAppend = decision.events.map((event, i) =>
        encodeSessionEvent(eventIdFor(command.commandId, i), event, {
          tenantId,
          sessionId: command.sessionId,
          occurredAt: command.at,
          commandId: command.commandId,
          commandType: command.type,
          actor: command.actor,
          ...('idempotency' in command && command.idempotency
            ? { idempotencyKey: command.idempotency.key, requestHash: command.idempotency.requestHash }
            : {}),
        }),
      );
      try {
        const result = await this.store.append(streamId, toAppend, {
          expectedVersion: loaded.version < 0 ? 'no_stream' : loaded.version,
        });
        const firstRevision = result.nextExpectedVersion - toAppend.length + 1;
        const recorded: RecordedSessionEvent[] = decision.events.map((event, i) => ({
          event,
          metadata: toAppend[i]!.metadata as RecordedSessionEvent['metadata'],
          eventId: toAppend[i]!.eventId,
          streamId,
          revision: firstRevision + i,
          // The port promises only that the last one is exact; the JetStream and in-memory adapters number an append's
          // events contiguously, so these are exact there. Where they are not, a step's place in the state (see
          // StepState.submitted) is off, which costs a read hint, never a wrong read: adapters check hints.
          position: result.position - (toAppend.length - 1 - i),
          recordedAt: command.at,
        }));
        const next = foldRecorded(loaded, recorded);
        this.remember(streamId, next, this.cache.get(streamId)?.snapshotVersion ?? -1);
        return { ...next, events: recorded };
      } catch (error) {
        if (!(error instanceof WrongExpectedVersionError)) {
          // The append may or may not have landed: forget the cache so the next load reads the truth.
          this.cache.delete(streamId);
          throw error;
        }
        this.logger?.debug(
          { streamId, attempt, commandType: command.type },
          'version conflict, deciding again',
        );
      }
    }
    throw new ConcurrencyExhaustedError(streamId, this.maxAttempts);
  }

  /** Where a load with nothing cached starts: the stream's snapshot when there is a usable one, else nothing. */
  private async fromSnapshot(streamId: string): Promise<CacheEntry> {
    if (!this.snapshots) return { ...EMPTY, snapshotVersion: -1 };
    try {
      const snapshot = await this.snapshots.get(streamId);
      if (snapshot) {
        const { state, version, position } = snapshot;
        return { state, version, position, snapshotVersion: version };
      }
    } catch (error) {
      this.logger?.warn(
        { err: error, streamId },
        'reading the snapshot failed; folding from the first event',
      );
    }
    return { ...EMPTY, snapshotVersion: -1 };
  }

  private remember(streamId: string, loaded: LoadedSession, snapshotVersion: number): void {
    const entry: CacheEntry = { ...loaded, snapshotVersion };
    this.cache.delete(streamId);
    this.cache.set(streamId, entry);
    if (this.cache.size > this.cacheSize) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    this.maybeSnapshot(streamId, entry);
  }

  /**
   * Writes a snapshot in the background once the fold has moved `snapshotEvery` events past the last one. Writes
   * of one stream go one at a time, in order, and one due while another is in flight replaces any still waiting,
   * so the newest is always the last written. It never fails a command: a snapshot not written only makes a later
   * load read more.
   */
  private maybeSnapshot(streamId: string, entry: CacheEntry): void {
    const { snapshots } = this;
    if (!snapshots || entry.version - entry.snapshotVersion < this.snapshotEvery) return;
    // Counted as written from now on: a failing store is tried again only after another snapshotEvery events.
    entry.snapshotVersion = entry.version;
    const { state, version, position } = entry;
    const snapshot: SessionSnapshot = { v: SNAPSHOT_FORMAT, streamId, version, position, state };
    if (this.snapshotting.has(streamId)) {
      this.snapshotting.set(streamId, snapshot);
      return;
    }
    this.snapshotting.set(streamId, null);
    void this.writeSnapshots(snapshots, streamId, snapshot);
  }

  private async writeSnapshots(
    snapshots: SnapshotStore,
    streamId: string,
    first: SessionSnapshot,
  ): Promise<void> {
    let next: SessionSnapshot | null = first;
    while (next) {
      const { version } = next;
      try {
        await snapshots.put(next);
        this.logger?.debug({ streamId, version }, 'snapshot written');
      } catch (error) {
        this.logger?.warn(
          { err: error, streamId, version },
          'writing a snapshot failed; carrying on without',
        );
      }
      next = this.snapshotting.get(streamId) ?? null;
      this.snapshotting.set(streamId, null);
    }
    this.snapshotting.delete(streamId);
  }
}

function* decodeAll(events: Iterable<RecordedEvent>): Iterable<RecordedSessionEvent> {
  for (const e of events) {
    const decoded = decodeSessionEvent(e);
    if (decoded) yield decoded;
  }
}
