import type { Actor, BrowserOptions } from '../events/sessionEvents.js';
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

export interface CompleteStep extends RobotReport {
  type: 'CompleteStep';
  stepId: string;
  attempt: number;
  durationMs: number;
  outcome: { status: 'succeeded'; output: StepOutput } | { status: 'failed'; error: StepError };
}

export interface ConfirmClose extends RobotReport {
  type: 'ConfirmClose';
}

export type SessionCommand =
  OpenSession | SubmitSteps | RequestClose | ClaimSession | StartStep | CompleteStep | ConfirmClose;
export type SessionCommandType = SessionCommand['type'];
