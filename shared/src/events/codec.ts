import type { z } from 'zod';
import { SchemaError } from '../errors.js';
import type { EventToAppend, RecordedEvent } from '../eventStore/port.js';
import {
  CURRENT_SCHEMA_VERSION,
  SessionEventData,
  SessionEventMetadata,
  upcasters,
  type SessionEvent,
  type SessionEventType,
} from './sessionEvents.js';

function toSchemaError(what: string, error: z.ZodError): SchemaError {
  const issues = error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
  return new SchemaError(
    `${what}: ${issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('; ')}`,
    issues,
  );
}

function isSessionEventType(type: string): type is SessionEventType {
  return Object.hasOwn(SessionEventData, type);
}

/** A session event read back from the store, upcast and validated, with its stream coordinates. */
export interface RecordedSessionEvent {
  event: SessionEvent;
  metadata: SessionEventMetadata;
  eventId: string;
  streamId: string;
  revision: number;
  position: number;
  recordedAt: string;
}

/** Validates a session event on its way into the store and shapes it for the port. */
export function encodeSessionEvent(
  eventId: string,
  event: SessionEvent,
  metadata: Omit<SessionEventMetadata, 'schemaVersion'>,
): EventToAppend {
  const data = SessionEventData[event.type].safeParse(event.data);
  if (!data.success) throw toSchemaError(`invalid ${event.type} payload`, data.error);
  const meta = SessionEventMetadata.safeParse({
    ...metadata,
    schemaVersion: CURRENT_SCHEMA_VERSION[event.type],
  });
  if (!meta.success) throw toSchemaError(`invalid ${event.type} metadata`, meta.error);
  return { eventId, type: event.type, data: data.data, metadata: meta.data };
}

/**
 * Reads a stored event as a session event: upcasts old schema versions, then validates. Returns null for an
 * event type this code does not know (written by a newer version), so that folding skips it instead of failing.
 */
export function decodeSessionEvent(recorded: RecordedEvent): RecordedSessionEvent | null {
  if (!isSessionEventType(recorded.type)) return null;
  const type = recorded.type;
  const meta = SessionEventMetadata.safeParse(recorded.metadata);
  if (!meta.success)
    throw toSchemaError(`invalid ${type} metadata at ${recorded.streamId}@${recorded.revision}`, meta.error);
  let data: unknown = recorded.data;
  const current = CURRENT_SCHEMA_VERSION[type];
  for (let v = meta.data.schemaVersion; v < current; v++) {
    const up = upcasters[type]?.[v];
    if (!up) throw new SchemaError(`no upcaster for ${type} v${v}`, []);
    data = up(data);
  }
  const parsed = SessionEventData[type].safeParse(data);
  if (!parsed.success)
    throw toSchemaError(`invalid ${type} payload at ${recorded.streamId}@${recorded.revision}`, parsed.error);
  return {
    event: { type, data: parsed.data } as SessionEvent,
    metadata: { ...meta.data, schemaVersion: current },
    eventId: recorded.eventId,
    streamId: recorded.streamId,
    revision: recorded.revision,
    position: recorded.position,
    recordedAt: recorded.recordedAt,
  };
}

/** The event-store stream that holds one session's events. */
export function sessionStreamId(sessionId: string): string {
  return `session-${sessionId}`;
}

/** The stream-name prefix of every session stream (the category). */
export const SESSION_STREAM_PREFIX = 'session-';
