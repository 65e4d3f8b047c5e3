import { z } from 'zod';
import { BrowserOptions, Labels, SessionPriority, StepFailurePolicy, StepSpec } from '@rpa/shared';
import { IdempotencyKey } from '../idempotency.js';

/** Longest idle timeout a session may ask for: a week. */
export const MAX_IDLE_TIMEOUT_MS = 7 * 24 * 3_600_000;

export const SessionIdParams = z.object({
  id: z.uuid().describe('The session id returned when it was opened'),
});

export const IdempotencyHeaders = z.object({
  'idempotency-key': IdempotencyKey.optional().describe(
    'Makes a retried request land once: the same key and body answer the first response; another body is refused',
  ),
});

/** What opening a session takes: the body of POST /v1/sessions, and the open fields of a batch item. */
export const OpenSessionFields = z.strictObject({
  labels: Labels.optional(),
  browser: BrowserOptions.optional(),
  idleTimeoutMs: z.number().int().min(1_000).max(MAX_IDLE_TIMEOUT_MS).nullable().optional(),
  priority: SessionPriority.optional().describe(
    'Which waiting sessions robots take first: high, normal (the default) or low',
  ),
  onStepFailure: StepFailurePolicy.optional().describe(
    'When a step fails for good (its retries spent, or an error no retry can fix): pause the session for an operator (the default), fail the whole session, or continue with the next step',
  ),
  requires: Labels.optional().describe(
    'Labels a robot must carry (same name and value) to take the session, such as {"region": "eu"}; none by default',
  ),
});

// fastify hands an absent body over as null.
export const OpenSessionBody = OpenSessionFields.nullish();
export type OpenSessionBody = z.infer<typeof OpenSessionBody>;

export const OpenSessionResponse = z.object({
  sessionId: z.string(),
  /** Revision of the session's stream after the command: wait for read models to reach it to read your write. */
  version: z.number().int(),
});

/** The body of a step submission; at most `maxSteps` steps per request. */
export function submitStepsBody(maxSteps: number) {
  return z.strictObject({ steps: z.array(StepSpec).min(1).max(maxSteps) });
}

/** Most sessions one batch may open. */
export const MAX_BATCH_ITEMS = 100;

/** One session of a batch: the open fields, its first steps (none is fine) and a reference echoed in the answer. */
export function batchItemSchema(maxSteps: number) {
  return OpenSessionFields.extend({
    steps: z.array(StepSpec).max(maxSteps).optional(),
    clientRef: z.string().min(1).max(200).optional(),
  });
}
export type BatchItem = z.infer<ReturnType<typeof batchItemSchema>>;

/**
 * The body of a batch. Only its envelope is validated here: each item is validated on its own by the route, so
 * that one bad item is answered in its place instead of failing the batch. The document still shows the item.
 */
export function batchBody(maxSteps: number) {
  const item = z
    .unknown()
    .meta(z.toJSONSchema(batchItemSchema(maxSteps), { io: 'input', target: 'openapi-3.0' }));
  return z.strictObject({ items: z.array(item).min(1).max(MAX_BATCH_ITEMS) });
}

/** The error part of an answer: the same shape as a whole request's error body. */
export const ErrorObject = z.object({
  code: z.string(),
  message: z.string(),
  details: z.unknown().optional(),
});

export const BatchItemResult = z.object({
  index: z.number().int().nonnegative().describe('Position of the item in the request'),
  clientRef: z.string().optional(),
  status: z
    .number()
    .int()
    .describe(
      'What the item would have answered on its own: 201 opened with its steps, else the error’s status',
    ),
  opened: z
    .boolean()
    .describe('Whether the session exists: true with an error means it opened but did not take its steps'),
  sessionId: z.string().optional(),
  version: z
    .number()
    .int()
    .optional()
    .describe(
      'Revision of the session’s stream after the item’s last event: wait for read models to reach it',
    ),
  steps: z.array(z.object({ stepId: z.string(), seq: z.number().int().positive() })).optional(),
  error: ErrorObject.optional(),
});
export type BatchItemResult = z.infer<typeof BatchItemResult>;

export const BatchResponse = z.object({ items: z.array(BatchItemResult) });

export const SubmitStepsResponse = z.object({
  steps: z.array(z.object({ stepId: z.string(), seq: z.number().int().positive() })),
});

export const CloseSessionBody = z.strictObject({ reason: z.string().max(500).optional() }).nullish();

/** A session's status as the command side sees it right after a command. */
export const SessionStatusBody = z.enum([
  'open',
  'closing',
  'paused',
  'failed',
  'needs_attention',
  'closed',
  'cancelled',
  'expired',
]);

/** What a command on a whole session answers: the session's status right after it. */
export const SessionStatusResponse = z.object({
  sessionId: z.string(),
  status: SessionStatusBody,
});

/** Resuming takes nothing but the session: an empty object or no body at all. */
export const ResumeSessionBody = z.strictObject({}).nullish();

/** Pausing takes nothing but the session: an empty object or no body at all. */
export const PauseSessionBody = z.strictObject({}).nullish();

export const StepParams = SessionIdParams.extend({
  stepId: z.string().min(1).max(100).describe('The step id returned when the step was submitted'),
});

/** Retrying takes nothing but the session and the step: an empty object or no body at all. */
export const RetryStepBody = z.strictObject({}).nullish();

/** What retrying a step answers: the session's status right after it (a session paused for the step goes on). */
export const RetryStepResponse = SessionStatusResponse.extend({ stepId: z.string() });

export const CancelSessionBody = z.strictObject({ reason: z.string().max(500).optional() }).nullish();

export const ErrorResponse = z.object({ error: ErrorObject });

/** Error responses every command route may give, for the OpenAPI document and the serializer. */
export function errorResponses<const S extends readonly number[]>(...statuses: S) {
  return Object.fromEntries(statuses.map((s) => [s, ErrorResponse])) as Record<
    S[number],
    typeof ErrorResponse
  >;
}
