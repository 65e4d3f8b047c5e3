import { z } from 'zod';
import { BrowserOptions, Labels } from '../events/sessionEvents.js';
import { STEP_ACTIONS, StepError, StepOutput } from '../steps/stepSpec.js';

export const StepDocumentStatus = z.enum(['queued', 'running', 'succeeded', 'failed']);

/** One step as dashboards see it. */
export const StepDocument = z.object({
  stepId: z.string(),
  seq: z.number().int().positive(),
  action: z.enum(STEP_ACTIONS as [string, ...string[]]),
  replay: z.enum(['safe', 'never']),
  status: StepDocumentStatus,
  attempts: z.number().int().nonnegative(),
  output: StepOutput.nullable(),
  /** True when the output was cut to the read model's limits; the event stream holds it whole. */
  outputTruncated: z.boolean().optional(),
  error: StepError.nullable(),
  submittedAt: z.string(),
  startedAt: z.string().nullable(),
  finishedAt: z.string().nullable(),
  durationMs: z.number().nonnegative().nullable(),
});
export type StepDocument = z.infer<typeof StepDocument>;

export const SessionDocumentStatus = z.enum(['open', 'closing', 'closed']);

/**
 * The read model of one session, kept in the sessions KV bucket under `<tenantId>.<sessionId>`. `position` is the
 * global position of the last event applied: applying an event at or below it changes nothing.
 */
export const SessionDocument = z.object({
  sessionId: z.string(),
  tenantId: z.string(),
  status: SessionDocumentStatus,
  robotId: z.string().nullable(),
  epoch: z.number().int().nonnegative(),
  labels: Labels,
  browser: BrowserOptions,
  idleTimeoutMs: z.number().int().positive().nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
  closedAt: z.string().nullable(),
  stepCounts: z.object({
    total: z.number().int().nonnegative(),
    queued: z.number().int().nonnegative(),
    running: z.number().int().nonnegative(),
    succeeded: z.number().int().nonnegative(),
    failed: z.number().int().nonnegative(),
  }),
  steps: z.array(StepDocument),
  version: z.number().int(),
  position: z.number().int().nonnegative(),
});
export type SessionDocument = z.infer<typeof SessionDocument>;
