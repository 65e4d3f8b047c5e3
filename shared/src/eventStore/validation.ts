import { InvalidAppendError } from './errors.js';
import { MAX_EVENTS_PER_APPEND, type EventToAppend } from './port.js';

const STREAM_ID = /^[A-Za-z0-9_-]{1,200}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Checks what every adapter must refuse before touching its backend. */
export function validateAppend(streamId: string, events: readonly EventToAppend[]): void {
  if (!STREAM_ID.test(streamId))
    throw new InvalidAppendError(`stream id ${JSON.stringify(streamId)} must match ${STREAM_ID}`);
  if (events.length === 0) throw new InvalidAppendError('an append needs at least one event');
  if (events.length > MAX_EVENTS_PER_APPEND) {
    throw new InvalidAppendError(
      `an append may carry at most ${MAX_EVENTS_PER_APPEND} events, got ${events.length}`,
    );
  }
  const seen = new Set<string>();
  for (const e of events) {
    if (!UUID.test(e.eventId))
      throw new InvalidAppendError(`event id ${JSON.stringify(e.eventId)} is not a UUID`);
    if (seen.has(e.eventId))
      throw new InvalidAppendError(`event id ${e.eventId} appears twice in one append`);
    seen.add(e.eventId);
    if (!e.type || e.type.length > 200) throw new InvalidAppendError('event type must be 1-200 characters');
  }
}

export function isValidStreamId(streamId: string): boolean {
  return STREAM_ID.test(streamId);
}
