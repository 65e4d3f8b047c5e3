import { parseBatchItems } from '../batch/batchItems.js';
import type { BatchMetrics } from '../batch/batchMetrics.js';
import { openSessionBatch } from '../batch/sessionBatch.js';
import {
  batchBody,
  batchItemSchema,
  BatchResponse,
  errorResponses,
  IdempotencyHeaders,
  MAX_BATCH_ITEMS,
} from '../http/schemas.js';
import type { CommandApp, RouteContext } from './context.js';

/** What the batch route needs besides what every command route does. */
export interface BatchRouteOptions {
  metrics: BatchMetrics;
  /** Largest batch body; larger ones are refused with 413 before they are parsed. */
  bodyLimitBytes: number;
  /** Items of one batch run at once. */
  concurrency: number;
}

/**
 * POST /v1/sessions:batch opens many sessions, each with its first steps, in one call. The answer is 200 once the
 * batch itself is understood and any item is valid, and every item says how it ended in its own `status`; a body
 * that is not a batch at all, or whose every item is invalid, is refused whole (400, 413), as is a repeated key with
 * another body (422).
 */
export function registerOpenSessionsBatchRoute(
  app: CommandApp,
  ctx: RouteContext,
  options: BatchRouteOptions,
): void {
  const itemSchema = batchItemSchema(ctx.maxStepsPerRequest);
  // "::" is the router's escape for a literal colon; one ":" would start a path parameter.
  app.post(
    '/v1/sessions::batch',
    {
      bodyLimit: options.bodyLimitBytes,
      schema: {
        summary: 'Open many sessions with their first steps',
        description: [
          `1 to ${MAX_BATCH_ITEMS} items, each opened as POST /v1/sessions would open it and then given its 0 to ${ctx.maxStepsPerRequest} steps as POST /v1/sessions/{id}/steps would submit them.`,
          'Each item is validated and run on its own: the answer is 200 whenever the body is a batch with at least one valid item, with one result per item in request order, each carrying the status the item would have answered alone (201 opened, 400 with the field path such as items.3.steps.0.url, 409, 503, …). A refused item appends nothing; the other items still open. When every item is invalid the answer is 400, with the per-item results in error.details.items.',
          'An item with opened=true and an error names a session that exists but did not take its steps: submit them to it, or retry the batch with its Idempotency-Key.',
          'A body that is not a batch (no items array, too many items) is refused whole with 400, a body too large with 413, and nothing is appended.',
          'With an Idempotency-Key each item opens a session derived from the tenant, the key and its position, so the same key and body answer the first response again and append nothing; the same key with another body is refused with 422.',
        ].join('\n\n'),
        tags: ['sessions'],
        headers: IdempotencyHeaders,
        body: batchBody(ctx.maxStepsPerRequest),
        response: { 200: BatchResponse, ...errorResponses(400, 401, 413, 415, 422, 503) },
      },
    },
    async (request, reply) => {
      const items = parseBatchItems(request.body.items, itemSchema);
      const outcomes = await openSessionBatch(
        {
          run: (command) => ctx.run(request, command),
          load: (sessionId) => ctx.load(sessionId),
          tenantId: request.auth.tenantId,
          actor: request.auth.actor,
          clock: ctx.clock,
          ids: ctx.ids,
          concurrency: options.concurrency,
          onInternalError: (error, index) => request.log.error({ err: error, index }, 'batch item failed'),
        },
        items,
        request.headers['idempotency-key'],
      );
      for (const { outcome } of outcomes) options.metrics.item(outcome);
      const results = outcomes.map((o) => o.result);
      // Nothing opened and every item malformed: the request as a whole is bad input, and says so.
      if (results.every((r) => !r.opened && r.status === 400)) {
        return reply.code(400).send({
          error: {
            code: 'VALIDATION_FAILED',
            message: `no item of the batch is valid: ${results
              .slice(0, 3)
              .map((r) => `items.${r.index}: ${r.error?.message ?? 'invalid'}`)
              .join('; ')}${results.length > 3 ? '; …' : ''}`,
            details: { items: results },
          },
        });
      }
      return reply.code(200).send({ items: results });
    },
  );
}
