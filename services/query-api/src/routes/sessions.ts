import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { HttpError, SessionDocument, SessionDocumentStatus } from '@rpa/shared';
import type { SessionIndex } from '../index/sessionIndex.js';
import { decodeCursor, encodeCursor } from '../index/listingOrder.js';
import { ErrorResponse, SessionId } from '../http/schemas.js';

const ListQuery = z.object({
  status: SessionDocumentStatus.optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z
    .string()
    .max(600)
    .refine((c) => decodeCursor(c) !== null, { message: 'is not a cursor returned by this API' })
    .optional(),
});

const SessionPage = z.object({
  items: z.array(SessionDocument),
  nextCursor: z.string().nullable(),
});

/** The session not found, or not the caller's: the two are indistinguishable on purpose. */
export function sessionNotFound(sessionId: string): HttpError {
  return new HttpError(404, 'SESSION_NOT_FOUND', `session ${sessionId} not found`);
}

/** GET /v1/sessions (list, filter, page) and GET /v1/sessions/:id, from the index, within the caller's tenant. */
export function registerSessionRoutes(app: FastifyInstance, index: SessionIndex): void {
  const api = app.withTypeProvider<ZodTypeProvider>();

  api.get(
    '/v1/sessions',
    {
      schema: {
        summary: "List the caller's sessions, newest first",
        tags: ['sessions'],
        querystring: ListQuery,
        response: { 200: SessionPage, 400: ErrorResponse },
      },
    },
    async (request) => {
      const { status, limit, cursor } = request.query;
      const after = cursor === undefined ? undefined : (decodeCursor(cursor) ?? undefined);
      const page = index.list(request.auth.tenantId, { status, limit, after });
      return { items: page.items, nextCursor: page.nextKey ? encodeCursor(page.nextKey) : null };
    },
  );

  api.get(
    '/v1/sessions/:id',
    {
      schema: {
        summary: 'One session document',
        tags: ['sessions'],
        params: z.object({ id: SessionId }),
        response: { 200: SessionDocument, 404: ErrorResponse },
      },
    },
    async (request) => {
      const doc = index.get(request.auth.tenantId, request.params.id);
      if (!doc) throw sessionNotFound(request.params.id);
      return doc;
    },
  );
}
