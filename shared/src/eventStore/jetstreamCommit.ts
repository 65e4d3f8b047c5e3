import { headers, type MsgHdrs } from '@nats-io/transport-node';
import { z } from 'zod';
import { SchemaError } from '../errors.js';
import { InvalidAppendError } from './errors.js';
import { MAX_EVENTS_PER_APPEND, type EventToAppend, type RecordedEvent } from './port.js';

/**
 * One append is stored as one NATS message, a "commit", so that all its events land or none do (nats-server 2.9
 * has no atomic batch publish). A commit's events get global positions `seq * POSITION_SCALE + index`.
 */
export const POSITION_SCALE = 4_096;
/** Stream revision of the commit's first event. */
export const REVISION_HEADER = 'Rpa-Revision';
/** Number of events in the commit. */
export const COUNT_HEADER = 'Rpa-Count';
/** JetStream's message-id header: the commit's first event id, which deduplicates a retried append. */
export const MSG_ID_HEADER = 'Nats-Msg-Id';

if (MAX_EVENTS_PER_APPEND >= POSITION_SCALE)
  throw new RangeError('POSITION_SCALE must exceed MAX_EVENTS_PER_APPEND');

const CommitBody = z
  .array(
    z.strictObject({
      eventId: z.string().min(1),
      type: z.string().min(1),
      data: z.unknown(),
      metadata: z.unknown(),
    }),
  )
  .min(1)
  .max(MAX_EVENTS_PER_APPEND);

const Counter = z.string().regex(/^(0|[1-9][0-9]{0,15})$/, 'must be a non-negative integer');

/** What a commit's headers say, readable without decoding its body. */
export interface CommitHeader {
  /** Stream sequence of the message. */
  seq: number;
  firstRevision: number;
  count: number;
  /** The first event's id (the message id). */
  msgId: string | undefined;
}

/** Revision of the commit's last event. */
export function lastRevisionOf(commit: CommitHeader): number {
  return commit.firstRevision + commit.count - 1;
}

/** Global position of the event at `index` in the commit stored at `seq`. */
export function positionOf(seq: number, index: number): number {
  return seq * POSITION_SCALE + index;
}

/** Stream sequence of the commit that holds the event at `position`. */
export function seqOfPosition(position: number): number {
  return Math.floor(position / POSITION_SCALE);
}

/** The commit body: a JSON array of the events. Refuses what JSON cannot carry. */
export function encodeCommitBody(events: readonly EventToAppend[]): Uint8Array {
  let json: string | undefined;
  try {
    json = JSON.stringify(
      events.map((e) => ({ eventId: e.eventId, type: e.type, data: e.data, metadata: e.metadata })),
    );
  } catch (error) {
    throw new InvalidAppendError(`event payloads must be JSON: ${(error as Error).message}`);
  }
  return new TextEncoder().encode(json);
}

/** The headers that let a reader map revisions without decoding the body. */
export function commitHeaders(firstRevision: number, count: number): MsgHdrs {
  const h = headers();
  h.set(REVISION_HEADER, String(firstRevision));
  h.set(COUNT_HEADER, String(count));
  return h;
}

/** Reads a commit's headers; a message this adapter did not write is corruption and throws SchemaError. */
export function readCommitHeader(seq: number, hdrs: MsgHdrs | undefined): CommitHeader {
  const revision = Counter.safeParse(hdrs?.get(REVISION_HEADER) ?? '');
  const count = Counter.safeParse(hdrs?.get(COUNT_HEADER) ?? '');
  const issues = [
    ...(revision.success
      ? []
      : [{ path: REVISION_HEADER, message: 'missing or not a non-negative integer' }]),
    ...(count.success && Number(count.data) >= 1
      ? []
      : [{ path: COUNT_HEADER, message: 'missing or not a positive integer' }]),
  ];
  if (issues.length > 0)
    throw new SchemaError(
      `event commit at sequence ${seq}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
      issues,
    );
  const msgId = hdrs?.get(MSG_ID_HEADER);
  return { seq, firstRevision: Number(revision.data), count: Number(count.data), msgId: msgId || undefined };
}

/** Decodes a commit into the events it recorded; throws SchemaError when the body does not match its headers. */
export function decodeCommit(
  streamId: string,
  commit: CommitHeader,
  body: Uint8Array,
  recordedAt: Date,
): RecordedEvent[] {
  let raw: unknown;
  try {
    raw = JSON.parse(new TextDecoder().decode(body));
  } catch (error) {
    throw new SchemaError(`event commit at sequence ${commit.seq} is not JSON`, [
      { path: '', message: (error as Error).message },
    ]);
  }
  const parsed = CommitBody.safeParse(raw);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
    throw new SchemaError(
      `event commit at sequence ${commit.seq}: ${issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ')}`,
      issues,
    );
  }
  if (parsed.data.length !== commit.count)
    throw new SchemaError(
      `event commit at sequence ${commit.seq} holds ${parsed.data.length} events, its ${COUNT_HEADER} says ${commit.count}`,
      [{ path: COUNT_HEADER, message: 'does not match the body' }],
    );
  const at = recordedAt.toISOString();
  return parsed.data.map((e, index) => ({
    eventId: e.eventId,
    type: e.type,
    data: e.data,
    metadata: e.metadata,
    streamId,
    revision: commit.firstRevision + index,
    position: positionOf(commit.seq, index),
    recordedAt: at,
  }));
}
