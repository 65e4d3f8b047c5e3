import { z } from 'zod';
import { AttentionCode, BrowserOptions, Labels } from '../events/sessionEvents.js';
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

export const SessionDocumentStatus = z.enum([
  'open',
  'closing',
  'needs_attention',
  'closed',
  'cancelled',
  'expired',
]);

/** Why the session waits for an operator (status needs_attention). */
export const AttentionDocument = z.object({
  code: AttentionCode,
  reason: z.string(),
  stepIds: z.array(z.string()),
  /** The status the session returns to when resumed. */
  resumeTo: z.enum(['open', 'closing']),
  at: z.string(),
});

/** The newest restore point; its storage state is never in a read model, only where it is kept. */
export const CheckpointDocument = z.object({
  afterStepSeq: z.number().int().positive(),
  url: z.string(),
  trigger: z.enum(['document', 'step']),
  at: z.string(),
});

/** The last time a robot rebuilt this session's browser. */
export const RecoveryDocument = z.object({
  robotId: z.string(),
  epoch: z.number().int().positive(),
  fromCheckpointSeq: z.number().int().positive().nullable(),
  replayedSteps: z.number().int().nonnegative(),
  skippedSteps: z.number().int().nonnegative(),
  durationMs: z.number().nonnegative(),
  at: z.string(),
});

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
  attention: AttentionDocument.nullable().default(null),
  checkpoint: CheckpointDocument.nullable().default(null),
  recoveries: z.number().int().nonnegative().default(0),
  lastRecovery: RecoveryDocument.nullable().default(null),
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
