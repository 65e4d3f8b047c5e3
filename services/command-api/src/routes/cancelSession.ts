import { RpaError } from '@rpa/shared';
import {
  CancelSessionBody,
  errorResponses,
  SessionIdParams,
  SessionStatusResponse,
} from '../http/schemas.js';
import { commandBase, type CommandApp, type RouteContext } from './context.js';

/** POST /v1/sessions/:id/cancel: ends a session for good, whatever it was doing. Idempotent. */
export function registerCancelSessionRoute(app: CommandApp, ctx: RouteContext): void {
  app.post(
    '/v1/sessions/:id/cancel',
    {
      config: { commandType: 'CancelSession' },
      schema: {
        summary: 'Cancel a session',
        description:
          'The session takes no more steps, runs none of those still queued, and its robot closes the browser. Cancelling twice is harmless; a closed session cannot be cancelled (409).',
        tags: ['sessions'],
        params: SessionIdParams,
        body: CancelSessionBody,
        response: { 202: SessionStatusResponse, ...errorResponses(400, 401, 404, 409, 413, 415, 503) },
      },
    },
    async (request, reply) => {
      const sessionId = request.params.id;
      const result = await ctx.run(request, {
        ...commandBase(request, ctx, sessionId),
        type: 'CancelSession',
        commandId: ctx.ids.commandId(),
        reason: request.body?.reason ?? null,
      });
      const { status } = result.state;
      // A command that was not rejected found the session: its state cannot be empty.
      if (status === 'none')
        throw new RpaError('INTERNAL', `session ${sessionId} has no state after cancelling`);
      return reply.code(202).send({ sessionId, status });
    },
  );
}
