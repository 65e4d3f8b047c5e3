import { z } from 'zod';
import { SchemaError } from '../errors.js';
import { BrowserOptions, Labels } from '../events/sessionEvents.js';
import { StepSpec } from '../steps/stepSpec.js';

/**
 * A session waiting for a robot: published on the assign subject when the session opens, when an operator resumes
 * it, and when it is cancelled (so that a robot cleans its work up). The robot reads everything else it needs from
 * the session's stream.
 */
export const AssignmentMessage = z.strictObject({
  v: z.literal(1),
  sessionId: z.string(),
  tenantId: z.string(),
  reason: z.enum(['opened', 'resumed', 'cancelled', 'reconciled']).default('opened'),
  /** Robot labels the session needs (every one, same value). */
  requires: Labels.optional(),
  labels: Labels.optional(),
  browser: BrowserOptions.optional(),
  openedAt: z.string().optional(),
});
export type AssignmentMessage = z.infer<typeof AssignmentMessage>;

/** Work on one session's subject, consumed in order by the session's owner. */
export const SessionWorkMessage = z.discriminatedUnion('kind', [
  z.strictObject({
    v: z.literal(1),
    kind: z.literal('step'),
    sessionId: z.string(),
    tenantId: z.string(),
    stepId: z.string(),
    seq: z.number().int().positive(),
    step: StepSpec,
  }),
  /** A step an operator retried: the owner reads its spec from the stream (it was submitted long ago). */
  z.strictObject({
    v: z.literal(1),
    kind: z.literal('retry'),
    sessionId: z.string(),
    tenantId: z.string(),
    stepId: z.string(),
    seq: z.number().int().positive(),
  }),
  z.strictObject({ v: z.literal(1), kind: z.literal('close'), sessionId: z.string(), tenantId: z.string() }),
]);

/** A best-effort nudge to a session's owner that an operator changed the session; the stream says what. */
export const ControlNotice = z.strictObject({
  v: z.literal(1),
  sessionId: z.string(),
  tenantId: z.string(),
  event: z.enum(['SessionPaused', 'SessionResumed', 'SessionCancelled', 'StepRetried']),
});
export type ControlNotice = z.infer<typeof ControlNotice>;
export type SessionWorkMessage = z.infer<typeof SessionWorkMessage>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Serialises a message after checking it against its schema. */
export function encodeMessage<S extends z.ZodType>(schema: S, value: z.input<S>): Uint8Array {
  return encoder.encode(JSON.stringify(schema.parse(value)));
}

/** Parses and validates a message body; throws SchemaError naming the bad fields. */
export function decodeMessage<S extends z.ZodType>(schema: S, data: Uint8Array): z.infer<S> {
  let json: unknown;
  try {
    json = JSON.parse(decoder.decode(data));
  } catch (error) {
    throw new SchemaError(`message is not JSON: ${(error as Error).message}`, []);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message }));
    throw new SchemaError(
      `invalid message: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
      issues,
    );
  }
  return parsed.data;
}
