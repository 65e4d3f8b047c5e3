import { z } from 'zod';
import { BrowserOptions, Labels, StepSpec } from '@rpa/shared';
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

export const OpenSessionBody = z
  .strictObject({
    labels: Labels.optional(),
    browser: BrowserOptions.optional(),
    idleTimeoutMs: z.number().int().min(1_000).max(MAX_IDLE_TIMEOUT_MS).nullable().optional(),
  })
  // fastify hands an absent body over as null.
  .nullish();
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

export const SubmitStepsResponse = z.object({
  steps: z.array(z.object({ stepId: z.string(), seq: z.number().int().positive() })),
});

export const CloseSessionBody = z.strictObject({ reason: z.string().max(500).optional() }).nullish();

/** A session's status as the command side sees it right after a command. */
export const SessionStatusBody = z.enum(['open', 'closing', 'needs_attention', 'closed', 'cancelled']);

/** What a command on a whole session answers: the session's status right after it. */
export const SessionStatusResponse = z.object({
  sessionId: z.string(),
  status: SessionStatusBody,
});

/** Resuming takes nothing but the session: an empty object or no body at all. */
export const ResumeSessionBody = z.strictObject({}).nullish();

export const CancelSessionBody = z.strictObject({ reason: z.string().max(500).optional() }).nullish();

export const ErrorResponse = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.unknown().optional() }),
});

/** Error responses every command route may give, for the OpenAPI document and the serializer. */
export function errorResponses<const S extends readonly number[]>(...statuses: S) {
  return Object.fromEntries(statuses.map((s) => [s, ErrorResponse])) as Record<
    S[number],
    typeof ErrorResponse
  >;
}
