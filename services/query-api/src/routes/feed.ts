import type { FastifyInstance } from 'fastify';
import type { FeedHub } from '../feed/feedHub.js';

/**
 * GET /v1/feed: the WebSocket feed. The upgrade request is authenticated like any other (onRequest), so a
 * connection is bound to one tenant before its first message.
 */
export function registerFeedRoute(app: FastifyInstance, hub: FeedHub): void {
  app.get(
    '/v1/feed',
    { websocket: true, schema: { summary: 'Live session documents over WebSocket', tags: ['feed'] } },
    (socket, request) => {
      hub.attach(socket, request.auth.tenantId);
    },
  );
}
