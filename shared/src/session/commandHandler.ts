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
import { evolve } from './evolve.js';
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

const EVENT_ID_NAMESPACE = '6f1c7a52-5b0e-4d3c-9c55-2d2f7f0b8a11';

/** The id of the n-th event a command produces: the same command always yields the same ids. */
export function eventIdFor(commandId: string, index: number): string {
  return uuidv5(`${commandId}#${index}`, EVENT_ID_NAMESPACE);
}

/** Folds recorded session events onto a loaded state. */
export function foldRecorded(base: LoadedSession, recorded: Iterable<RecordedSessionEvent>): LoadedSession {
  let { state, version, position } = base;
  for (const r of recorded) {
    state = evolve(state, r.event, r.metadata);
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
}

/**
 * Loads a session, decides, and appends with the version it read. Folded state is cached by version, so a command
 * reads only the events appended since (another writer's); a conflict refreshes and decides again.
 */
export class SessionCommandHandler {
  private readonly cache = new Map<string, LoadedSession>();
  private readonly store: EventStore;
  private readonly cacheSize: number;
  private readonly maxAttempts: number;
  private readonly logger: Logger | undefined;

  constructor(options: SessionCommandHandlerOptions) {
    this.store = options.store;
    this.cacheSize = options.cacheSize ?? 10_000;
    this.maxAttempts = options.maxAttempts ?? 8;
    this.logger = options.logger;
  }

  /** The session's current state, brought up to date from the store. */
  async load(sessionId: string): Promise<LoadedSession> {
    const streamId = sessionStreamId(sessionId);
    const cached = this.cache.get(streamId) ?? { state: initialState(), version: -1, position: 0 };
    const fresh = await this.store.readStream(streamId, { fromRevision: cached.version + 1 });
    const loaded = foldRecorded(cached, decodeAll(fresh));
    this.remember(streamId, loaded);
    return loaded;
  }

  /** Decides the command against the current state and appends its events; throws CommandRejectedError when refused. */
  async handle(command: SessionCommand): Promise<CommandResult> {
    const streamId = sessionStreamId(command.sessionId);
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      const loaded = await this.load(command.sessionId);
      const decision = decide(command, loaded.state);
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
          // Positions inside one append are only known to be increasing; the last one is exact.
          position: result.position - (toAppend.length - 1 - i),
          recordedAt: command.at,
        }));
        const next = foldRecorded(loaded, recorded);
        this.remember(streamId, next);
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

  private remember(streamId: string, loaded: LoadedSession): void {
    this.cache.delete(streamId);
    this.cache.set(streamId, loaded);
    if (this.cache.size > this.cacheSize) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
  }
}

function* decodeAll(events: Iterable<RecordedEvent>): Iterable<RecordedSessionEvent> {
  for (const e of events) {
    const decoded = decodeSessionEvent(e);
    if (decoded) yield decoded;
  }
}
