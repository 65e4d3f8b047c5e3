import type { StepAction } from '../steps/stepSpec.js';

export type StepStatus = 'queued' | 'running' | 'succeeded' | 'failed';

export interface StepState {
  stepId: string;
  seq: number;
  action: StepAction;
  replay: 'safe' | 'never';
  status: StepStatus;
  attempts: number;
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

interface Existing {
  sessionId: string;
  tenantId: string;
  /** Highest epoch ever claimed; 0 before the first claim. */
  epoch: number;
  owner: Owner | null;
  lastSeq: number;
  steps: Record<string, StepState>;
  /** Step ids in submission order (seq - 1 is the index). */
  order: string[];
  submissions: Record<string, Submission>;
  openedWith: { idempotencyKey: string | null; requestHash: string | null };
}

/** The session aggregate's state: a union on `status`. */
export type SessionState =
  | { status: 'none' }
  | (Existing & { status: 'open' })
  | (Existing & { status: 'closing' })
  | (Existing & { status: 'closed' });

export type SessionStatus = SessionState['status'];

/** The state of a session that has no events yet. */
export const initialState = (): SessionState => ({ status: 'none' });
