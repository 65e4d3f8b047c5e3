import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import {
  decodeSessionEvent,
  SessionEventMetadata,
  sessionStreamId,
  type EventStore,
  type RecordedSessionEvent,
} from '@rpa/shared';
import { ErrorResponse, SessionId } from '../http/schemas.js';
import { sessionNotFound } from './sessions.js';

const EventView = z.object({
  eventId: z.string(),
  type: z.string(),
  revision: z.number().int(),
  position: z.number().int(),
  occurredAt: z.string(),
  recordedAt: z.string(),
  data: z.unknown(),
  metadata: SessionEventMetadata,
});

/**
 * GET /v1/sessions/:id/events: the session's history from the event store, upcast to current schemas. Ownership
 * is read from the events themselves, so a session the projector has not indexed yet is still served to its
 * tenant and to no one else. Event types newer than this build are left out.
 */
export function registerEventRoutes(app: FastifyInstance, eventStore: EventStore): void {
  app.withTypeProvider<ZodTypeProvider>().get(
    '/v1/sessions/:id/events',
    {
      schema: {
        summary: "A session's events, oldest first",
        tags: ['sessions'],
        params: z.object({ id: SessionId }),
        response: { 200: z.object({ events: z.array(EventView) }), 404: ErrorResponse },
      },
    },
    async (request) => {
      const sessionId = request.params.id;
      const recorded = await eventStore.readStream(sessionStreamId(sessionId));
      const decoded = recorded
        .map((r) => decodeSessionEvent(r))
        .filter((e): e is RecordedSessionEvent => e !== null);
      const first = decoded[0];
      if (!first || first.metadata.tenantId !== request.auth.tenantId) throw sessionNotFound(sessionId);
      return {
        events: decoded.map((e) => ({
          eventId: e.eventId,
          type: e.event.type,
          revision: e.revision,
          position: e.position,
          occurredAt: e.metadata.occurredAt,
          recordedAt: e.recordedAt,
          data: e.event.data,
          metadata: e.metadata,
        })),
      };
    },
  );
}
