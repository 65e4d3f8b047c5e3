import { z } from 'zod';
import {
  AttentionCode,
  BrowserOptions,
  DeadLetterReason,
  Labels,
  PauseReason,
  SessionPriority,
  StepFailurePolicy,
  WaitReason,
} from '../events/sessionEvents.js';
import { STEP_ACTIONS, StepError, StepOutput } from '../steps/stepSpec.js';

/**
 * retrying: an attempt failed and another is due at `nextAttemptAt`; failed: failed for good (see `deadLetter`);
 * cancelled: the session ended (cancelled, expired or failed) before the step finished.
 */
export const StepDocumentStatus = z.enum([
  'queued',
  'running',
  'retrying',
  'succeeded',
  'failed',
  'cancelled',
]);

/** Why and when a step was dead-lettered; cleared when an operator retries it. */
export const DeadLetterDocument = z.object({
  reason: DeadLetterReason,
  attempts: z.number().int().nonnegative(),
  at: z.string(),
});

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
  nextAttemptAt: z.string().nullable().default(null),
  deadLetter: DeadLetterDocument.nullable().default(null),
});
export type StepDocument = z.infer<typeof StepDocument>;

/** queued: opened, no robot has taken it yet (none free, none with the labels it requires, or its tenant's cap). */
export const SessionDocumentStatus = z.enum([
  'queued',
  'open',
  'paused',
  'failed',
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

/** Why the session is paused. */
export const PauseDocument = z.object({ reason: PauseReason, stepId: z.string().nullable(), at: z.string() });

/** The owner holds the next step without attempting it (an open circuit breaker for its target). */
export const WaitingDocument = z.object({
  reason: WaitReason,
  origin: z.string(),
  stepId: z.string(),
  since: z.string(),
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
  priority: SessionPriority.default('normal'),
  onStepFailure: StepFailurePolicy.default('continue'),
  requires: Labels.default({}),
  createdAt: z.string(),
  updatedAt: z.string(),
  closedAt: z.string().nullable(),
  attention: AttentionDocument.nullable().default(null),
  pause: PauseDocument.nullable().default(null),
  waiting: WaitingDocument.nullable().default(null),
  checkpoint: CheckpointDocument.nullable().default(null),
  recoveries: z.number().int().nonnegative().default(0),
  lastRecovery: RecoveryDocument.nullable().default(null),
  stepCounts: z.object({
    total: z.number().int().nonnegative(),
    queued: z.number().int().nonnegative(),
    running: z.number().int().nonnegative(),
    retrying: z.number().int().nonnegative().default(0),
    succeeded: z.number().int().nonnegative(),
    failed: z.number().int().nonnegative(),
    cancelled: z.number().int().nonnegative().default(0),
    deadLettered: z.number().int().nonnegative().default(0),
  }),
  steps: z.array(StepDocument),
  version: z.number().int(),
  position: z.number().int().nonnegative(),
});
export type SessionDocument = z.infer<typeof SessionDocument>;
