import type { FastifyInstance } from 'fastify';
import type { FeedHub } from '../feed/feedHub.js';

/**
 * GET /v1/feed: the WebSocket feed. The upgrade request is authenticated like any other (onRequest), so a
 * connection is bound to one tenant (and one actor, for the controls it sends) before its first message.
 */
export function registerFeedRoute(app: FastifyInstance, hub: FeedHub): void {
  app.get(
    '/v1/feed',
    {
      websocket: true,
      schema: {
        summary: 'Live session documents over WebSocket, and session controls',
        description:
          'Send {"subscribe": {"session": id}} or {"subscribe": {"all": true}} (with an optional fromPosition to resume), or the same under "unsubscribe"; session documents arrive as {"type": "session", "document": …}. Controls steer a session as the command API does: {"type": "pause" | "resume" | "cancel", "sessionId": id} or {"type": "retry", "sessionId": id, "stepId": id}, each with an optional requestId, answered by {"type": "control-result", "requestId", "ok", "status"} or {…, "ok": false, "error": {"code", "message"}}. A message that is not understood gets {"type": "error", "error": {"code", "message"}} naming the field.',
        tags: ['feed'],
      },
    },
    (socket, request) => {
      hub.attach(socket, request.auth.tenantId, request.auth.actor);
    },
  );
}
