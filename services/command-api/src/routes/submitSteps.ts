import { keyedCommandId, stepIdFor } from '../ids.js';
import { requestHash } from '../idempotency.js';
import { submittedSteps } from '../submittedSteps.js';
import {
  errorResponses,
  IdempotencyHeaders,
  SessionIdParams,
  submitStepsBody,
  SubmitStepsResponse,
} from '../http/schemas.js';
import { commandBase, type CommandApp, type RouteContext } from './context.js';

/** POST /v1/sessions/:id/steps: appends steps to a session's queue, in order. */
export function registerSubmitStepsRoute(app: CommandApp, ctx: RouteContext): void {
  app.post(
    '/v1/sessions/:id/steps',
    {
      config: { commandType: 'SubmitSteps' },
      schema: {
        summary: 'Submit steps to a session',
        description: `1 to ${ctx.maxStepsPerRequest} steps, run in order after the ones already submitted. With an Idempotency-Key a retry answers the first response and submits nothing again.`,
        tags: ['sessions'],
        params: SessionIdParams,
        headers: IdempotencyHeaders,
        body: submitStepsBody(ctx.maxStepsPerRequest),
        response: { 202: SubmitStepsResponse, ...errorResponses(400, 401, 404, 409, 413, 415, 422, 503) },
      },
    },
    async (request, reply) => {
      const sessionId = request.params.id;
      const key = request.headers['idempotency-key'];
      const commandId = key
        ? keyedCommandId('submit', request.auth.tenantId, sessionId, key)
        : ctx.ids.commandId();
      const steps = request.body.steps.map((step, i) => ({ stepId: stepIdFor(commandId, i), step }));
      const result = await ctx.run(request, {
        ...commandBase(request, ctx, sessionId),
        type: 'SubmitSteps',
        commandId,
        steps,
        ...(key ? { idempotency: { key, requestHash: requestHash(request.body) } } : {}),
      });
      return reply.code(202).send({ steps: submittedSteps(result.state, steps, key) });
    },
  );
}
