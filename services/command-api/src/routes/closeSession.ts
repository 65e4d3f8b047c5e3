import { RpaError } from '@rpa/shared';
import { CloseSessionBody, errorResponses, SessionIdParams, SessionStatusResponse } from '../http/schemas.js';
import { commandBase, type CommandApp, type RouteContext } from './context.js';

/** POST /v1/sessions/:id/close: asks the session's robot to finish and close the browser. Idempotent. */
export function registerCloseSessionRoute(app: CommandApp, ctx: RouteContext): void {
  app.post(
    '/v1/sessions/:id/close',
    {
      config: { commandType: 'RequestClose' },
      schema: {
        summary: 'Close a session',
        description:
          'The session stops taking steps at once and closes when its robot confirms. Closing twice is harmless. A paused session, or one that needs attention, must be resumed or cancelled instead (409).',
        tags: ['sessions'],
        params: SessionIdParams,
        body: CloseSessionBody,
        response: { 202: SessionStatusResponse, ...errorResponses(400, 401, 404, 409, 413, 415, 503) },
      },
    },
    async (request, reply) => {
      const sessionId = request.params.id;
      const result = await ctx.run(request, {
        ...commandBase(request, ctx, sessionId),
        type: 'RequestClose',
        commandId: ctx.ids.commandId(),
        reason: request.body?.reason ?? null,
      });
      const { status } = result.state;
      // A command that was not rejected found the session: its state cannot be empty.
      if (status === 'none')
        throw new RpaError('INTERNAL', `session ${sessionId} has no state after closing`);
      return reply.code(202).send({ sessionId, status });
    },
  );
}
