import { z } from 'zod';
import type { SessionDocument } from '@rpa/shared';

/** Where a document sits in a listing: newest first, ties broken by session id so that the order is total. */
export interface ListingKey {
  createdAtMs: number;
  sessionId: string;
}

/** The listing key of a document; an unparsable creation time sorts as the epoch rather than failing. */
export function listingKeyOf(doc: SessionDocument): ListingKey {
  const ms = Date.parse(doc.createdAt);
  return { createdAtMs: Number.isFinite(ms) ? ms : 0, sessionId: doc.sessionId };
}

/** Negative when `a` lists before `b`. */
export function compareListingKeys(a: ListingKey, b: ListingKey): number {
  if (a.createdAtMs !== b.createdAtMs) return b.createdAtMs - a.createdAtMs;
  if (a.sessionId === b.sessionId) return 0;
  return a.sessionId < b.sessionId ? -1 : 1;
}

const CursorBody = z.strictObject({
  v: z.literal(1),
  t: z.number().int(),
  s: z.string().min(1).max(200),
});

/**
 * An opaque page cursor: the key of the last item served. Paging by key rather than by offset means that sessions
 * created or removed while a client walks the pages neither repeat nor skip the ones that stayed.
 */
export function encodeCursor(key: ListingKey): string {
  return Buffer.from(JSON.stringify({ v: 1, t: key.createdAtMs, s: key.sessionId })).toString('base64url');
}

/** The key inside a cursor, or null when the string is not a cursor this API issued. */
export function decodeCursor(cursor: string): ListingKey | null {
  if (!/^[A-Za-z0-9_-]{1,600}$/.test(cursor)) return null;
  try {
    const parsed = CursorBody.safeParse(JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')));
    return parsed.success ? { createdAtMs: parsed.data.t, sessionId: parsed.data.s } : null;
  } catch {
    return null;
  }
}
