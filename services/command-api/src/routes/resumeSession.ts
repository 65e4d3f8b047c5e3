import { RpaError } from '@rpa/shared';
import {
  errorResponses,
  ResumeSessionBody,
  SessionIdParams,
  SessionStatusResponse,
} from '../http/schemas.js';
import { commandBase, type CommandApp, type RouteContext } from './context.js';

/** POST /v1/sessions/:id/resume: lets a paused session, or one that needs attention, go on. */
export function registerResumeSessionRoute(app: CommandApp, ctx: RouteContext): void {
  app.post(
    '/v1/sessions/:id/resume',
    {
      config: { commandType: 'ResumeSession' },
      schema: {
        summary: 'Resume a paused session or one that needs attention',
        description:
          'A paused session (paused by an operator, or for a step that failed for good) goes on with its next step; a step it was paused for stays failed (retry it with POST /v1/sessions/{id}/steps/{stepId}/retry instead to run it again). For a session that needs attention the operator accepts what it was stopped for: the steps it named are not run again, and the session returns to the status it had. Only a paused session or one that needs attention resumes (409 otherwise).',
        tags: ['sessions'],
        params: SessionIdParams,
        body: ResumeSessionBody,
        response: { 202: SessionStatusResponse, ...errorResponses(400, 401, 404, 409, 413, 415, 503) },
      },
    },
    async (request, reply) => {
      const sessionId = request.params.id;
      const result = await ctx.run(request, {
        ...commandBase(request, ctx, sessionId),
        type: 'ResumeSession',
        commandId: ctx.ids.commandId(),
      });
      const { status } = result.state;
      // A command that was not rejected found the session: its state cannot be empty.
      if (status === 'none')
        throw new RpaError('INTERNAL', `session ${sessionId} has no state after resuming`);
      return reply.code(202).send({ sessionId, status });
    },
  );
}
