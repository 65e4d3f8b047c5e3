import { keyedCommandId, keyedSessionId } from '../ids.js';
import { openFieldsOf, openRequestHash } from '../openFields.js';
import { errorResponses, IdempotencyHeaders, OpenSessionBody, OpenSessionResponse } from '../http/schemas.js';
import { commandBase, type CommandApp, type RouteContext } from './context.js';

/** POST /v1/sessions: opens a session (one browser context) for the caller's tenant. */
export function registerOpenSessionRoute(app: CommandApp, ctx: RouteContext): void {
  app.post(
    '/v1/sessions',
    {
      config: { commandType: 'OpenSession' },
      schema: {
        summary: 'Open a session',
        description:
          'Robots take waiting sessions by priority, and only a robot carrying every label in `requires` takes the session. A step that fails for good pauses the session by default (`onStepFailure`). With an Idempotency-Key the session id is derived from the tenant and the key, so a retry answers the same session.',
        tags: ['sessions'],
        headers: IdempotencyHeaders,
        body: OpenSessionBody,
        response: { 201: OpenSessionResponse, ...errorResponses(400, 401, 409, 413, 415, 422, 503) },
      },
    },
    async (request, reply) => {
      const key = request.headers['idempotency-key'];
      const tenantId = request.auth.tenantId;
      const opening = openFieldsOf(request.body ?? {});
      const sessionId = key ? keyedSessionId(tenantId, key) : ctx.ids.sessionId();
      const result = await ctx.run(request, {
        ...commandBase(request, ctx, sessionId),
        type: 'OpenSession',
        commandId: key ? keyedCommandId('open', tenantId, sessionId, key) : ctx.ids.commandId(),
        ...opening,
        ...(key ? { idempotency: { key, requestHash: openRequestHash(opening) } } : {}),
      });
      // SessionOpened is always a stream's first event, so a repeat answers exactly what the first call did.
      return reply.code(201).send({ sessionId, version: result.events.at(-1)?.revision ?? 0 });
    },
  );
}
