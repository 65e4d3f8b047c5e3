import type {
  Actor,
  AttentionCode,
  BrowserOptions,
  ExpiryReason,
  SessionPriority,
  StepFailurePolicy,
  WaitReason,
} from '../events/sessionEvents.js';
import type { StepError, StepOutput, StepSpec } from '../steps/stepSpec.js';

/**
 * Commands carry everything a decision needs, including ids and the time, so that `decide` stays pure.
 * `commandId` is unique per command and seeds the ids of the events it produces (a retried command appends
 * nothing new).
 */
interface CommandBase {
  commandId: string;
  sessionId: string;
  tenantId: string;
  /** ISO time of the command. */
  at: string;
  actor: Actor;
}

/** An idempotency key with the hash of the request it first came with. */
export interface Idempotency {
  key: string;
  requestHash: string;
}

export interface OpenSession extends CommandBase {
  type: 'OpenSession';
  labels: Record<string, string>;
  browser: BrowserOptions;
  idleTimeoutMs: number | null;
  /** Default normal. */
  priority?: SessionPriority;
  /** Default pause. */
  onStepFailure?: StepFailurePolicy;
  /** Robot labels the session needs; default none. */
  requires?: Record<string, string>;
  idempotency?: Idempotency;
}

export interface SubmitSteps extends CommandBase {
  type: 'SubmitSteps';
  steps: ReadonlyArray<{ stepId: string; step: StepSpec }>;
  idempotency?: Idempotency;
}

export interface RequestClose extends CommandBase {
  type: 'RequestClose';
  reason: string | null;
}

/**
 * An operator lets a paused session go on, or one that needs attention without replaying the steps it was stopped
 * for.
 */
export interface ResumeSession extends CommandBase {
  type: 'ResumeSession';
}

/** An operator holds a session: the step in hand finishes, no further step starts until it is resumed. */
export interface PauseSession extends CommandBase {
  type: 'PauseSession';
}

/** An operator sends a step that failed for good back to run again; a session paused for it goes on. */
export interface RetryStep extends CommandBase {
  type: 'RetryStep';
  stepId: string;
}

/**
 * The broker gave up delivering a step (its delivery limit) and no result is in the stream: it is failed and
 * dead-lettered as if its attempts were spent. Issued by the system, not by the owner.
 */
export interface DeadLetterStep extends CommandBase {
  type: 'DeadLetterStep';
  stepId: string;
  deliveries: number;
}

/** An operator ends a session for good. */
export interface CancelSession extends CommandBase {
  type: 'CancelSession';
  reason: string | null;
}

export interface ClaimSession extends CommandBase {
  type: 'ClaimSession';
  robotId: string;
}

interface RobotReport extends CommandBase {
  robotId: string;
  /** The ownership epoch the robot holds; a report from an older epoch is rejected. */
  epoch: number;
}

export interface StartStep extends RobotReport {
  type: 'StartStep';
  stepId: string;
  attempt: number;
}

/** A restore point taken right after a step, recorded atomically with the step's success. */
export interface RestorePointRef {
  stateKey: string;
  url: string;
  trigger: 'document' | 'step';
}

export interface CompleteStep extends RobotReport {
  type: 'CompleteStep';
  stepId: string;
  attempt: number;
  durationMs: number;
  outcome: { status: 'succeeded'; output: StepOutput } | { status: 'failed'; error: StepError };
  /** Only with a success: the restore point taken right after the step. */
  checkpoint?: RestorePointRef;
  /** Names of the secrets the attempt resolved and typed (never their values): each is recorded as SecretUsed. */
  secretsUsed?: readonly string[];
}

/**
 * The owner typed secrets outside a reported attempt: while replaying a step that already succeeded, to rebuild the
 * session's browser. Names only; each is recorded as SecretUsed with `replay: true`.
 */
export interface RecordSecretUse extends RobotReport {
  type: 'RecordSecretUse';
  stepId: string;
  names: readonly string[];
}

/** The owner rebuilt the browser from a restore point and the steps after it. */
export interface RecordRecovery extends RobotReport {
  type: 'RecordRecovery';
  fromCheckpoint: { afterStepSeq: number; stateKey: string } | null;
  replayedSteps: number;
  skippedSteps: number;
  durationMs: number;
}

/** The owner stops the session for an operator instead of repeating what must not run twice. */
export interface FlagAttention extends RobotReport {
  type: 'FlagAttention';
  code: AttentionCode;
  reason: string;
  stepIds: string[];
}

/** The owner holds the next step without attempting it: its target is unavailable (an open circuit breaker). */
export interface ReportWaiting extends RobotReport {
  type: 'ReportWaiting';
  stepId: string;
  reason: WaitReason;
  origin: string;
}

export interface ConfirmClose extends RobotReport {
  type: 'ConfirmClose';
}

/** The owner ends a session that sat idle too long or was held too long; its browser context is gone. */
export interface ExpireSession extends RobotReport {
  type: 'ExpireSession';
  reason: ExpiryReason;
  /** With reason idle: how long the session had been idle. */
  idleMs?: number;
}

export type SessionCommand =
  | OpenSession
  | SubmitSteps
  | RequestClose
  | ResumeSession
  | PauseSession
  | RetryStep
  | DeadLetterStep
  | CancelSession
  | ClaimSession
  | StartStep
  | CompleteStep
  | RecordRecovery
  | RecordSecretUse
  | FlagAttention
  | ReportWaiting
  | ConfirmClose
  | ExpireSession;
export type SessionCommandType = SessionCommand['type'];
