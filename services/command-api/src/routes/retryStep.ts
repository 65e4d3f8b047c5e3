import { RpaError } from '@rpa/shared';
import { errorResponses, RetryStepBody, RetryStepResponse, StepParams } from '../http/schemas.js';
import { commandBase, type CommandApp, type RouteContext } from './context.js';

/** POST /v1/sessions/:id/steps/:stepId/retry: sends a step that failed for good back to run again. */
export function registerRetryStepRoute(app: CommandApp, ctx: RouteContext): void {
  app.post(
    '/v1/sessions/:id/steps/:stepId/retry',
    {
      config: { commandType: 'RetryStep' },
      schema: {
        summary: 'Retry a step that failed for good',
        description:
          'The step gets a fresh set of attempts under its retry policy and leaves the dead letters. When the session was paused because of this step, it goes on. Only a step that failed for good (its attempts spent, or an error no retry can fix) is retried, and only while the session is not over (409 otherwise); an unknown session or step is 404.',
        tags: ['sessions'],
        params: StepParams,
        body: RetryStepBody,
        response: { 202: RetryStepResponse, ...errorResponses(400, 401, 404, 409, 413, 415, 503) },
      },
    },
    async (request, reply) => {
      const { id: sessionId, stepId } = request.params;
      const result = await ctx.run(request, {
        ...commandBase(request, ctx, sessionId),
        type: 'RetryStep',
        commandId: ctx.ids.commandId(),
        stepId,
      });
      const { status } = result.state;
      // A command that was not rejected found the session: its state cannot be empty.
      if (status === 'none')
        throw new RpaError('INTERNAL', `session ${sessionId} has no state after retrying a step`);
      return reply.code(202).send({ sessionId, stepId, status });
    },
  );
}
