import { z } from 'zod';
import type { DeadLetterReason, SessionDocument, StepError } from '@rpa/shared';

/** One dead-lettered step, as the dead-letter listing serves it. */
export interface DeadLetterItem {
  sessionId: string;
  stepId: string;
  seq: number;
  action: string;
  reason: DeadLetterReason;
  attempts: number;
  error: StepError | null;
  /** When the step was dead-lettered (ISO). */
  at: string;
}

/** Where a dead letter sits in the listing: newest first, then by session and step, so that the order is total. */
export interface DeadLetterKey {
  atMs: number;
  sessionId: string;
  seq: number;
}

export interface DeadLetterFilter {
  sessionId?: string | undefined;
  reason?: DeadLetterReason | undefined;
}

export interface DeadLetterPage {
  items: DeadLetterItem[];
  nextKey: DeadLetterKey | null;
}

/** The listing key of a dead letter; an unparsable time sorts as the epoch rather than failing. */
export function deadLetterKeyOf(item: DeadLetterItem): DeadLetterKey {
  const ms = Date.parse(item.at);
  return { atMs: Number.isFinite(ms) ? ms : 0, sessionId: item.sessionId, seq: item.seq };
}

/** Negative when `a` lists before `b`. */
export function compareDeadLetterKeys(a: DeadLetterKey, b: DeadLetterKey): number {
  if (a.atMs !== b.atMs) return b.atMs - a.atMs;
  if (a.sessionId !== b.sessionId) return a.sessionId < b.sessionId ? -1 : 1;
  return a.seq - b.seq;
}

/** The dead-lettered steps of one session document (a retried step has left the dead letters). */
export function deadLettersOf(doc: SessionDocument): DeadLetterItem[] {
  const items: DeadLetterItem[] = [];
  for (const step of doc.steps) {
    if (!step.deadLetter) continue;
    items.push({
      sessionId: doc.sessionId,
      stepId: step.stepId,
      seq: step.seq,
      action: step.action,
      reason: step.deadLetter.reason,
      attempts: step.deadLetter.attempts,
      error: step.error,
      at: step.deadLetter.at,
    });
  }
  return items;
}

/**
 * A page of dead letters from a tenant's documents, newest first, after `after` (exclusive). Dead letters are
 * rare and read by operators, so they are gathered from the documents on each call rather than kept in a second
 * index that would have to follow every step change.
 */
export function pageDeadLetters(
  docs: Iterable<SessionDocument>,
  options: { limit: number; after?: DeadLetterKey | undefined; filter?: DeadLetterFilter },
): DeadLetterPage {
  const { sessionId, reason } = options.filter ?? {};
  const matching: Array<{ item: DeadLetterItem; key: DeadLetterKey }> = [];
  for (const doc of docs) {
    if (sessionId !== undefined && doc.sessionId !== sessionId) continue;
    for (const item of deadLettersOf(doc)) {
      if (reason !== undefined && item.reason !== reason) continue;
      const key = deadLetterKeyOf(item);
      if (options.after && compareDeadLetterKeys(key, options.after) <= 0) continue;
      matching.push({ item, key });
    }
  }
  matching.sort((a, b) => compareDeadLetterKeys(a.key, b.key));
  const page = matching.slice(0, options.limit);
  const last = page.at(-1);
  return {
    items: page.map((m) => m.item),
    nextKey: matching.length > options.limit && last ? last.key : null,
  };
}

const CursorBody = z.strictObject({
  v: z.literal(1),
  t: z.number().int(),
  s: z.string().min(1).max(200),
  q: z.number().int().positive(),
});

/** An opaque page cursor: the key of the last dead letter served. */
export function encodeDeadLetterCursor(key: DeadLetterKey): string {
  return Buffer.from(JSON.stringify({ v: 1, t: key.atMs, s: key.sessionId, q: key.seq })).toString(
    'base64url',
  );
}

/** The key inside a cursor, or null when the string is not a dead-letter cursor this API issued. */
export function decodeDeadLetterCursor(cursor: string): DeadLetterKey | null {
  if (!/^[A-Za-z0-9_-]{1,600}$/.test(cursor)) return null;
  try {
    const parsed = CursorBody.safeParse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
    return parsed.success ? { atMs: parsed.data.t, sessionId: parsed.data.s, seq: parsed.data.q } : null;
  } catch {
    return null;
  }
}
