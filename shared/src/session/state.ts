import type {
  AttentionCode,
  BrowserOptions,
  PauseReason,
  SessionPriority,
  StepFailurePolicy,
  WaitReason,
} from '../events/sessionEvents.js';
import type { StreamPlace } from '../eventStore/port.js';
import type { RetryPolicy, StepAction } from '../steps/stepSpec.js';

/** retrying: an attempt failed and the next one is due; failed: failed for good (dead-lettered). */
export type StepStatus = 'queued' | 'running' | 'retrying' | 'succeeded' | 'failed';

export interface StepState {
  stepId: string;
  seq: number;
  action: StepAction;
  replay: 'safe' | 'never';
  status: StepStatus;
  /** Attempts started, ever. */
  attempts: number;
  /** `attempts` when an operator last retried the step: the policy counts the attempts after it. */
  retriedAt: number;
  retry: RetryPolicy;
  /**
   * A navigate step that sets request headers or cookies for its origin, which stay with the browser context after
   * it and which no restore point keeps: recovery sets them again. Absent otherwise.
   */
  setsCredentials?: true;
  /**
   * Where its StepSubmitted is in the stream, so that its spec can be read back without reading the whole stream.
   * Absent when the fold was not told where events are (evolve called without their place).
   */
  submitted?: StreamPlace;
}

export interface Owner {
  robotId: string;
  epoch: number;
}

/** What an idempotent submission answered the first time, so a repeat can answer the same. */
export interface Submission {
  requestHash: string;
  steps: Array<{ stepId: string; seq: number }>;
}

/** The newest restore point: storage state (by reference) and URL as they were right after step `afterStepSeq`. */
export interface RestorePoint {
  afterStepSeq: number;
  stateKey: string;
  url: string;
}

/** Why the session waits for an operator, and the status it returns to when resumed. */
export interface Attention {
  code: AttentionCode;
  reason: string;
  stepIds: string[];
  resumeTo: 'open' | 'closing';
}

/** Why the session is paused; `stepId`: the step that failed for good, when that is why. */
export interface Pause {
  reason: PauseReason;
  stepId: string | null;
}

/** The owner holds the next step without attempting it. */
export interface Waiting {
  reason: WaitReason;
  origin: string;
  stepId: string;
}

interface Existing {
  sessionId: string;
  tenantId: string;
  browser: BrowserOptions;
  /** How long the session may sit without activity before its owner expires it; null: never. */
  idleTimeoutMs: number | null;
  priority: SessionPriority;
  onStepFailure: StepFailurePolicy;
  requires: Record<string, string>;
  /** Set while the owner holds the next step because its target is unavailable; cleared when a step starts. */
  waiting: Waiting | null;
  /** Highest epoch ever claimed; 0 before the first claim. */
  epoch: number;
  owner: Owner | null;
  lastSeq: number;
  steps: Record<string, StepState>;
  /** Step ids in submission order (seq - 1 is the index). */
  order: string[];
  submissions: Record<string, Submission>;
  openedWith: { idempotencyKey: string | null; requestHash: string | null };
  checkpoint: RestorePoint | null;
  /** Step ids an operator allowed recovery to skip instead of replaying them. */
  replaySkips: string[];
}

/** The session aggregate's state: a union on `status`. */
export type SessionState =
  | { status: 'none' }
  | (Existing & { status: 'open' })
  | (Existing & { status: 'closing' })
  | (Existing & { status: 'paused'; pause: Pause })
  | (Existing & { status: 'needs_attention'; attention: Attention })
  | (Existing & { status: 'closed' })
  | (Existing & { status: 'cancelled' })
  | (Existing & { status: 'expired' })
  | (Existing & { status: 'failed' });

export type SessionStatus = SessionState['status'];

/** The state of a session that has no events yet. */
export const initialState = (): SessionState => ({ status: 'none' });

/** Closed, cancelled, expired and failed sessions are over: nothing runs in them again. */
export function isTerminal(state: SessionState): boolean {
  return (
    state.status === 'closed' ||
    state.status === 'cancelled' ||
    state.status === 'expired' ||
    state.status === 'failed'
  );
}

/** True once the step has a result for good: succeeded, or failed with no attempt to come. */
export function isFinished(step: StepState): boolean {
  return step.status === 'succeeded' || step.status === 'failed';
}
