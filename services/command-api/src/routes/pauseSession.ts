import { RpaError } from '@rpa/shared';
import { errorResponses, PauseSessionBody, SessionIdParams, SessionStatusResponse } from '../http/schemas.js';
import { commandBase, type CommandApp, type RouteContext } from './context.js';

/** POST /v1/sessions/:id/pause: holds an open session for an operator. Idempotent. */
export function registerPauseSessionRoute(app: CommandApp, ctx: RouteContext): void {
  app.post(
    '/v1/sessions/:id/pause',
    {
      config: { commandType: 'PauseSession' },
      schema: {
        summary: 'Pause a session',
        description:
          'The step in hand finishes; no further step starts until the session is resumed (POST /v1/sessions/{id}/resume). The session keeps its robot and its browser, and still takes new steps, which run once it is resumed. Pausing a paused session is harmless; only an open session pauses (409 otherwise).',
        tags: ['sessions'],
        params: SessionIdParams,
        body: PauseSessionBody,
        response: { 202: SessionStatusResponse, ...errorResponses(400, 401, 404, 409, 413, 415, 503) },
      },
    },
    async (request, reply) => {
      const sessionId = request.params.id;
      const result = await ctx.run(request, {
        ...commandBase(request, ctx, sessionId),
        type: 'PauseSession',
        commandId: ctx.ids.commandId(),
      });
      const { status } = result.state;
      // A command that was not rejected found the session: its state cannot be empty.
      if (status === 'none')
        throw new RpaError('INTERNAL', `session ${sessionId} has no state after pausing`);
      return reply.code(202).send({ sessionId, status });
    },
  );
}
