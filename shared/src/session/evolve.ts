import type { SessionEvent, SessionEventMetadata } from '../events/sessionEvents.js';
import type { SessionState, StepState } from './state.js';

function assertNever(x: never): never {
  return x;
}

/**
 * Folds one event into the state. Pure and total: an event that does not apply to the state leaves it as it
 * was, so that replaying any stream can never crash. The metadata is needed only for idempotency bookkeeping.
 */
export function evolve(
  state: SessionState,
  event: SessionEvent,
  metadata?: Pick<SessionEventMetadata, 'sessionId' | 'tenantId' | 'idempotencyKey' | 'requestHash'>,
): SessionState {
  switch (event.type) {
    case 'SessionOpened':
      if (state.status !== 'none' || !metadata) return state;
      return {
        status: 'open',
        sessionId: metadata.sessionId,
        tenantId: metadata.tenantId,
        epoch: 0,
        owner: null,
        lastSeq: 0,
        steps: {},
        order: [],
        submissions: {},
        openedWith: {
          idempotencyKey: metadata.idempotencyKey ?? null,
          requestHash: metadata.requestHash ?? null,
        },
      };
    case 'StepSubmitted': {
      if (state.status === 'none' || state.steps[event.data.stepId]) return state;
      const step: StepState = {
        stepId: event.data.stepId,
        seq: event.data.seq,
        action: event.data.step.action,
        replay: event.data.step.replay ?? 'safe',
        status: 'queued',
        attempts: 0,
      };
      const submissions = { ...state.submissions };
      const key = metadata?.idempotencyKey;
      if (key) {
        const prior = submissions[key];
        submissions[key] = {
          requestHash: metadata.requestHash ?? prior?.requestHash ?? '',
          steps: [...(prior?.steps ?? []), { stepId: step.stepId, seq: step.seq }],
        };
      }
      return {
        ...state,
        lastSeq: Math.max(state.lastSeq, step.seq),
        steps: { ...state.steps, [step.stepId]: step },
        order: [...state.order, step.stepId],
        submissions,
      };
    }
    case 'SessionClaimed':
      if (state.status === 'none' || event.data.epoch <= state.epoch) return state;
      return {
        ...state,
        epoch: event.data.epoch,
        owner: { robotId: event.data.robotId, epoch: event.data.epoch },
      };
    case 'StepStarted':
    case 'StepSucceeded':
    case 'StepFailed': {
      if (state.status === 'none') return state;
      const step = state.steps[event.data.stepId];
      if (!step) return state;
      const next: StepState =
        event.type === 'StepStarted'
          ? { ...step, status: 'running', attempts: Math.max(step.attempts, event.data.attempt) }
          : {
              ...step,
              status: event.type === 'StepSucceeded' ? 'succeeded' : 'failed',
              attempts: Math.max(step.attempts, event.data.attempt),
            };
      return { ...state, steps: { ...state.steps, [step.stepId]: next } };
    }
    case 'SessionCloseRequested':
      if (state.status !== 'open') return state;
      return { ...state, status: 'closing' };
    case 'SessionClosed':
      if (state.status === 'none' || state.status === 'closed') return state;
      // The owner stays recorded so that its duplicate ConfirmClose or late report decides to nothing, not STALE_EPOCH.
      return { ...state, status: 'closed' };
    default:
      return assertNever(event);
  }
}
