import { z } from 'zod';
import { SecretName, StepError, StepOutput, StepSpec } from '../steps/stepSpec.js';

const Iso = z.iso.datetime({ offset: true });
/** Why a session needs an operator. */
export const AttentionCode = z.enum(['UNSAFE_REPLAY', 'UNCERTAIN_STEP', 'REPLAY_FAILED']);
export type AttentionCode = z.infer<typeof AttentionCode>;

/** Why a robot ended a session on its own: idle past its idle timeout, or held past the maximum duration. */
export const ExpiryReason = z.enum(['idle', 'max_duration']);
export type ExpiryReason = z.infer<typeof ExpiryReason>;

/** Which waiting sessions robots take first. */
export const SessionPriority = z.enum(['high', 'normal', 'low']);
export type SessionPriority = z.infer<typeof SessionPriority>;

/**
 * What happens to a session when one of its steps fails for good (its attempts are spent, or it cannot succeed on a
 * retry): pause it for an operator (who retries the step, resumes past it or cancels), fail the whole session, or
 * carry on with the next step.
 */
export const StepFailurePolicy = z.enum(['pause', 'fail', 'continue']);
export type StepFailurePolicy = z.infer<typeof StepFailurePolicy>;

/** Why a session was paused. */
export const PauseReason = z.enum(['operator', 'step_failed']);
export type PauseReason = z.infer<typeof PauseReason>;

/** Why a step was dead-lettered. */
export const DeadLetterReason = z.enum(['attempts_exhausted', 'not_retryable', 'max_deliveries']);
export type DeadLetterReason = z.infer<typeof DeadLetterReason>;

/** Why a held session waits without running its next step. */
export const WaitReason = z.enum(['ORIGIN_UNAVAILABLE']);
export type WaitReason = z.infer<typeof WaitReason>;

const RobotRef = { robotId: z.string().min(1).max(200), epoch: z.number().int().positive() };

export const BrowserOptions = z.strictObject({
  viewport: z
    .strictObject({
      width: z.number().int().min(100).max(7_680),
      height: z.number().int().min(100).max(4_320),
    })
    .optional(),
  userAgent: z.string().min(1).max(1_000).optional(),
  locale: z
    .string()
    .regex(/^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$/, 'must be a BCP 47 language tag such as en-US')
    .optional(),
});
export type BrowserOptions = z.infer<typeof BrowserOptions>;

export const Labels = z
  .record(
    z.string().regex(/^[A-Za-z0-9_.\-/]{1,63}$/, 'label names are 1-63 of A-Z a-z 0-9 _ . - /'),
    z.string().max(256),
  )
  .refine((labels) => Object.keys(labels).length <= 32, { message: 'at most 32 labels' });

/**
 * The payload schema of every session event, per type, at its current schema version. An old version is
 * upcast to this shape when read (see `upcasters`), never rewritten in the store.
 */
export const SessionEventData = {
  SessionOpened: z.strictObject({
    labels: Labels,
    browser: BrowserOptions,
    idleTimeoutMs: z.number().int().positive().nullable(),
    priority: SessionPriority,
    onStepFailure: StepFailurePolicy,
    /** Robot labels the session needs: only a robot carrying every one of them (same value) takes it. */
    requires: Labels,
  }),
  StepSubmitted: z.strictObject({ stepId: z.string(), seq: z.number().int().positive(), step: StepSpec }),
  SessionClaimed: z.strictObject({ ...RobotRef, previousRobotId: z.string().nullable() }),
  StepStarted: z.strictObject({
    stepId: z.string(),
    seq: z.number().int().positive(),
    attempt: z.number().int().positive(),
    ...RobotRef,
  }),
  StepSucceeded: z.strictObject({
    stepId: z.string(),
    seq: z.number().int().positive(),
    attempt: z.number().int().positive(),
    output: StepOutput,
    durationMs: z.number().nonnegative(),
    ...RobotRef,
  }),
  /**
   * One attempt failed. `final`: the step is failed for good (no attempt left, or not worth retrying); otherwise the
   * next attempt is due after `retryInMs`.
   */
  StepFailed: z.strictObject({
    stepId: z.string(),
    seq: z.number().int().positive(),
    attempt: z.number().int().positive(),
    error: StepError,
    durationMs: z.number().nonnegative(),
    final: z.boolean(),
    retryInMs: z.number().int().positive().nullable(),
    ...RobotRef,
  }),
  /**
   * A step used the secret `name` (its value was resolved and typed). A redacted fact for audit: the name only, never
   * the value. Appended with the attempt's StepSucceeded or StepFailed; `replay`: typed again by recovery, rebuilding
   * the browser with a step that had already succeeded (`attempt` is then that step's last attempt).
   */
  SecretUsed: z.strictObject({
    name: SecretName,
    stepId: z.string(),
    attempt: z.number().int().positive(),
    replay: z.boolean(),
    ...RobotRef,
  }),
  /** A step failed for good and is kept for an operator to retry; `attempts` counts those since the last retry. */
  StepDeadLettered: z.strictObject({
    stepId: z.string(),
    seq: z.number().int().positive(),
    reason: DeadLetterReason,
    attempts: z.number().int().nonnegative(),
    error: StepError,
  }),
  /** An operator sent a failed step back to run again, with a fresh budget of attempts. */
  StepRetried: z.strictObject({ stepId: z.string(), seq: z.number().int().positive() }),
  /** No further step starts until the session is resumed; the step in hand finishes. */
  SessionPaused: z.strictObject({ reason: PauseReason, stepId: z.string().nullable() }),
  /** The session failed because a step failed for good under `onStepFailure: "fail"`; no further step runs. */
  SessionFailed: z.strictObject({ stepId: z.string(), error: StepError }),
  /**
   * The owner holds the session's next step without attempting it: its target's circuit breaker is open. The
   * wait ends by itself with the next StepStarted, once a probe may go through.
   */
  SessionWaiting: z.strictObject({
    reason: WaitReason,
    origin: z.string().max(2_000),
    stepId: z.string(),
    ...RobotRef,
  }),
  /**
   * A restore point: the browser's storage state (in the restore-points object store under `stateKey`, never in
   * the event: it holds cookies) and URL, exactly as they were after step `afterStepSeq` and before the next one.
   */
  SessionCheckpointed: z.strictObject({
    afterStepSeq: z.number().int().positive(),
    stateKey: z.string().min(1).max(500),
    url: z.string().max(8_192),
    trigger: z.enum(['document', 'step']),
    ...RobotRef,
  }),
  /** A new owner rebuilt the browser: restored `fromCheckpoint` (or a blank page) and replayed the steps after it. */
  SessionRecovered: z.strictObject({
    fromCheckpoint: z
      .strictObject({ afterStepSeq: z.number().int().positive(), stateKey: z.string() })
      .nullable(),
    replayedSteps: z.number().int().nonnegative(),
    skippedSteps: z.number().int().nonnegative(),
    durationMs: z.number().nonnegative(),
    ...RobotRef,
  }),
  /** Recovery stopped rather than repeat steps that must not run twice; an operator resumes or cancels. */
  SessionNeedsAttention: z.strictObject({
    code: AttentionCode,
    reason: z.string().max(2_000),
    stepIds: z.array(z.string()).max(10_000),
    ...RobotRef,
  }),
  /**
   * An operator let a session that needed attention or was paused go on; recovery will not replay the steps in
   * `skipReplay`.
   */
  SessionResumed: z.strictObject({ skipReplay: z.array(z.string()).max(10_000) }),
  /** An operator ended the session for good; no further step runs. */
  SessionCancelled: z.strictObject({ reason: z.string().max(500).nullable() }),
  /**
   * The owner ended a session that sat idle past its idle timeout (`idleMs`: how long it was idle) or was held past
   * the robot's maximum session duration; no further step runs.
   */
  SessionExpired: z.strictObject({
    reason: ExpiryReason,
    idleMs: z.number().int().nonnegative().optional(),
    ...RobotRef,
  }),
  SessionCloseRequested: z.strictObject({ reason: z.string().max(500).nullable() }),
  SessionClosed: z.strictObject({ robotId: z.string().nullable(), epoch: z.number().int().nonnegative() }),
} as const;

export type SessionEventType = keyof typeof SessionEventData;
export const SESSION_EVENT_TYPES = Object.keys(SessionEventData) as SessionEventType[];

/** Current schema version of each event type's payload. */
export const CURRENT_SCHEMA_VERSION: Record<SessionEventType, number> = {
  SessionOpened: 2,
  StepSubmitted: 1,
  SessionClaimed: 1,
  StepStarted: 1,
  StepSucceeded: 1,
  StepFailed: 2,
  SecretUsed: 1,
  StepDeadLettered: 1,
  StepRetried: 1,
  SessionPaused: 1,
  SessionFailed: 1,
  SessionWaiting: 1,
  SessionCheckpointed: 1,
  SessionRecovered: 1,
  SessionNeedsAttention: 1,
  SessionResumed: 1,
  SessionCancelled: 1,
  SessionExpired: 1,
  SessionCloseRequested: 1,
  SessionClosed: 1,
};

/** A session event as the decider produces and folds it: a type and its typed payload. */
export type SessionEvent = {
  [K in SessionEventType]: { type: K; data: z.infer<(typeof SessionEventData)[K]> };
}[SessionEventType];

export type SessionEventOf<K extends SessionEventType> = Extract<SessionEvent, { type: K }>;

/** Who issued the command that produced an event; never a credential. */
export const Actor = z.strictObject({
  kind: z.enum(['api-key', 'jwt', 'robot', 'system', 'anonymous']),
  id: z.string().max(200),
});
export type Actor = z.infer<typeof Actor>;

/** Metadata stored next to every session event: tenant, schema version, causation and audit. */
export const SessionEventMetadata = z.strictObject({
  schemaVersion: z.number().int().positive(),
  tenantId: z.string().min(1),
  sessionId: z.string().min(1),
  occurredAt: Iso,
  commandId: z.string().min(1),
  commandType: z.string().min(1),
  actor: Actor,
  idempotencyKey: z.string().optional(),
  requestHash: z.string().optional(),
});
export type SessionEventMetadata = z.infer<typeof SessionEventMetadata>;

type Upcaster = (data: unknown) => unknown;
/**
 * Upcasters by event type, keyed by the version they upgrade *from*: `upcasters.X[1]` turns a v1 payload into v2.
 * Old events stay readable forever by chaining these on read.
 */
export const upcasters: Partial<Record<SessionEventType, Record<number, Upcaster>>> = {
  // v1 sessions predate priorities, failure policies and robot requirements: they ran at normal priority on any
  // robot, and a failed step never stopped them.
  SessionOpened: {
    1: (data) => ({
      priority: 'normal',
      onStepFailure: 'continue',
      requires: {},
      ...(data as object),
    }),
  },
  // v1 failures were never retried.
  StepFailed: { 1: (data) => ({ final: true, retryInMs: null, ...(data as object) }) },
};
