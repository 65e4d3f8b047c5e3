import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { DeadLetterReason, STEP_ACTIONS, StepError } from '@rpa/shared';
import { decodeDeadLetterCursor, encodeDeadLetterCursor, pageDeadLetters } from '../index/deadLetters.js';
import type { SessionIndex } from '../index/sessionIndex.js';
import { ErrorResponse, SessionId } from '../http/schemas.js';

const DeadLetterQuery = z.object({
  sessionId: SessionId.optional().describe('Only the dead letters of this session'),
  reason: DeadLetterReason.optional().describe('Only dead letters of this reason'),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z
    .string()
    .max(600)
    .refine((c) => decodeDeadLetterCursor(c) !== null, { message: 'is not a cursor returned by this API' })
    .optional(),
});

const DeadLetter = z.object({
  sessionId: z.string(),
  stepId: z.string(),
  seq: z.number().int().positive(),
  action: z.enum(STEP_ACTIONS as [string, ...string[]]),
  reason: DeadLetterReason,
  attempts: z.number().int().nonnegative(),
  error: StepError.nullable().describe('The error of the step’s last attempt'),
  at: z.string().describe('When the step was dead-lettered'),
});

const DeadLetterPage = z.object({
  items: z.array(DeadLetter),
  nextCursor: z.string().nullable(),
});

/** GET /v1/dead-letters: the caller's steps that failed for good and wait for an operator, across sessions. */
export function registerDeadLetterRoutes(app: FastifyInstance, index: SessionIndex): void {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/v1/dead-letters',
    {
      schema: {
        summary: "List the caller's dead-lettered steps, newest first",
        description:
          'Steps that failed for good (attempts spent, an error no retry fixes, or the broker’s delivery limit reached), across the caller’s sessions. A step leaves the list once it is retried (POST /v1/sessions/{id}/steps/{stepId}/retry on the command API). Paged like the session listing: pass nextCursor back as cursor.',
        tags: ['sessions'],
        querystring: DeadLetterQuery,
        response: { 200: DeadLetterPage, 400: ErrorResponse },
      },
    },
    async (request) => {
      const { sessionId, reason, limit, cursor } = request.query;
      const after = cursor === undefined ? undefined : (decodeDeadLetterCursor(cursor) ?? undefined);
      const page = pageDeadLetters(index.documents(request.auth.tenantId), {
        limit,
        after,
        filter: { sessionId, reason },
      });
      return {
        items: page.items,
        nextCursor: page.nextKey ? encodeDeadLetterCursor(page.nextKey) : null,
      };
    },
  );
}
