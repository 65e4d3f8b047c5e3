/**
 * Pure translations between the event-store port and the KurrentDB client's types: positions, revisions,
 * expected versions, errors, events. Kept apart from the adapter so that every rule is unit-tested without a server.
 *
 * Positions. KurrentDB places an event in `$all` at `{ commit, prepare }`, two unsigned 64-bit log offsets. Since
 * explicit transactions are gone (gRPC clients cannot open one), every event is self-committed and its commit and
 * prepare positions are equal; they are distinct and strictly increasing across `$all`, also within one
 * multi-event append. The port's `position` is that one offset as a number, which is exact up to 2^53 - 1 bytes of
 * log (8 PiB): `{ commit: n, prepare: n }` <-> `n`, both ways, with nothing lost. A position outside that domain
 * (commit != prepare, or beyond 2^53 - 1) is refused loudly rather than rounded: a rounded checkpoint would make a
 * restarted subscription skip or repeat events.
 */
import {
  ANY,
  NO_STREAM,
  STREAM_EXISTS,
  jsonEvent,
  type AppendStreamState,
  type CurrentStreamState,
  type EventData,
  type Position,
  type ResolvedEvent,
} from '@kurrent/kurrentdb-client';
import { RpaError } from '../errors.js';
import { EventStoreUnavailableError, InvalidAppendError, WrongExpectedVersionError } from './errors.js';
import type { EventToAppend, ExpectedVersion, RecordedEvent } from './port.js';

/** A position or revision from KurrentDB that the port's numbers cannot carry exactly. */
export class PositionOutOfRangeError extends RpaError {
  constructor(message: string) {
    super('EVENT_STORE_POSITION_OUT_OF_RANGE', message);
  }
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** The port's number for a KurrentDB position, or undefined when it has none (see the module comment). */
export function tryPositionToNumber(position: Position | undefined): number | undefined {
  if (!position) return undefined;
  const { commit, prepare } = position;
  if (commit !== prepare || commit < 0n || commit > MAX_SAFE) return undefined;
  return Number(commit);
}

/** The port's number for a KurrentDB position; throws when the mapping would not be exact. */
export function positionToNumber(position: Position | undefined): number {
  const n = tryPositionToNumber(position);
  if (n === undefined) {
    const shown = position ? `commit ${position.commit}, prepare ${position.prepare}` : 'none';
    throw new PositionOutOfRangeError(
      `KurrentDB position (${shown}) has no exact global position: commit and prepare must be equal and at most ${Number.MAX_SAFE_INTEGER}`,
    );
  }
  return n;
}

/** The KurrentDB position of the port's number: the inverse of positionToNumber. */
export function numberToPosition(position: number): Position {
  if (!Number.isSafeInteger(position) || position < 0)
    throw new RangeError(`position must be a non-negative safe integer, got ${position}`);
  const n = BigInt(position);
  return { commit: n, prepare: n };
}

/** A stream revision as the port's number (revisions beyond 2^53 - 1 cannot occur in practice; refuse them). */
export function revisionToNumber(revision: bigint): number {
  if (revision < 0n || revision > MAX_SAFE)
    throw new PositionOutOfRangeError(`stream revision ${revision} is outside 0..${Number.MAX_SAFE_INTEGER}`);
  return Number(revision);
}

export function toStreamState(expected: ExpectedVersion): AppendStreamState {
  switch (expected) {
    case 'any':
      return ANY;
    case 'no_stream':
      return NO_STREAM;
    case 'stream_exists':
      return STREAM_EXISTS;
    default:
      if (!Number.isSafeInteger(expected) || expected < 0)
        throw new InvalidAppendError(`expected version must be a non-negative integer, got ${expected}`);
      return BigInt(expected);
  }
}

export function toActualVersion(actual: CurrentStreamState | undefined): number | 'no_stream' | 'unknown' {
  // -1 is how the wire spells "no stream" where a revision is expected.
  if (actual === NO_STREAM || actual === -1n) return 'no_stream';
  if (typeof actual === 'bigint' && actual >= 0n && actual <= MAX_SAFE) return Number(actual);
  return 'unknown';
}

/** The client's error, as duck-typed here so that fakes and the real classes are handled alike. */
interface ClientErrorShape {
  type?: unknown;
  message?: unknown;
  actualState?: CurrentStreamState;
}

function errorType(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const type = (error as ClientErrorShape).type;
  return typeof type === 'string' ? type : undefined;
}

export function isStreamNotFound(error: unknown): boolean {
  return errorType(error) === 'stream-not-found';
}

/**
 * The port's error for what the client threw: a conflict becomes WrongExpectedVersionError (with the stream's
 * actual state), a malformed request InvalidAppendError, anything else EventStoreUnavailableError (retryable with
 * the same event ids). Our own errors pass through.
 */
export function mapClientError(
  error: unknown,
  context: { operation: string; streamId?: string; expected?: ExpectedVersion },
): Error {
  if (error instanceof RpaError) return error;
  const type = errorType(error);
  if (type === 'wrong-expected-version' && context.streamId !== undefined && context.expected !== undefined) {
    return new WrongExpectedVersionError(
      context.streamId,
      context.expected,
      toActualVersion((error as ClientErrorShape).actualState),
    );
  }
  const detail = error instanceof Error ? error.message : String(error);
  const where = context.streamId === undefined ? '' : ` on stream ${context.streamId}`;
  if (
    type === 'invalid-argument' ||
    type === 'maximum-append-size-exceeded' ||
    type === 'append-record-size-exceeded' ||
    type === 'stream-deleted' ||
    type === 'stream-tombstoned'
  ) {
    return new InvalidAppendError(`KurrentDB refused ${context.operation}${where}: ${detail}`);
  }
  return new EventStoreUnavailableError(`KurrentDB ${context.operation}${where} failed: ${detail}`, {
    cause: error,
  });
}

/**
 * The client's event for an append: JSON data and metadata, the caller's event id (KurrentDB's idempotency key, so
 * a retried append with the same ids and expected version is answered with the original result).
 */
export function toEventData(event: EventToAppend): EventData {
  return jsonEvent({
    id: event.eventId,
    type: event.type,
    // The port accepts any JSON value; the client's types name only objects, arrays and strings.
    data: event.data as Record<string, unknown>,
    metadata: event.metadata as Record<string, unknown> | undefined,
  });
}

/**
 * Stream names in KurrentDB: the port's stream id behind an optional namespace (`<namespace>:`), so that several
 * deployments or test runs can share one database. `:` cannot occur in a port stream id, so namespaces never overlap.
 */
export class StreamNames {
  private readonly prefix: string;
  constructor(namespace?: string) {
    if (namespace !== undefined && !/^[A-Za-z0-9_-]{1,64}$/.test(namespace))
      throw new RangeError(`namespace ${JSON.stringify(namespace)} must match /^[A-Za-z0-9_-]{1,64}$/`);
    this.prefix = namespace === undefined ? '' : `${namespace}:`;
  }

  toKurrent(streamId: string): string {
    return this.prefix + streamId;
  }

  /** The port's stream id, or undefined for a stream outside this namespace (or a system stream). */
  fromKurrent(name: string): string | undefined {
    if (name.startsWith('$') || !name.startsWith(this.prefix)) return undefined;
    return name.slice(this.prefix.length);
  }

  /** The server-side filter prefix for a subscription; undefined means "every non-system stream". */
  filterPrefix(streamPrefix: string | undefined): string | undefined {
    const full = this.prefix + (streamPrefix ?? '');
    return full === '' ? undefined : full;
  }
}

/**
 * The port's event for what the client read, or undefined when it is not one of ours (no event, a system or foreign
 * stream, a binary event). An event without an exact position is refused (see the module comment).
 */
export function toRecordedEvent(resolved: ResolvedEvent, names: StreamNames): RecordedEvent | undefined {
  const e = resolved.event;
  if (!e || !e.isJson) return undefined;
  const streamId = names.fromKurrent(e.streamId);
  if (streamId === undefined) return undefined;
  return {
    eventId: e.id,
    type: e.type,
    data: e.data,
    metadata: e.metadata,
    streamId,
    revision: revisionToNumber(e.revision),
    position: positionToNumber(e.position),
    recordedAt: e.created.toISOString(),
  };
}
