import { z } from 'zod';

/** Session ids as the event store accepts them inside `session-<id>` stream ids. */
export const SessionId = z.string().regex(/^[A-Za-z0-9_-]{1,192}$/, 'must be 1-192 of A-Z a-z 0-9 _ -');

/** The body of every error response. */
export const ErrorResponse = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});
