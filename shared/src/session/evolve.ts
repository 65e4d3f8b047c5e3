import type { SessionEvent, SessionEventMetadata } from '../events/sessionEvents.js';
import type { StreamPlace } from '../eventStore/port.js';
import { DEFAULT_RETRY_POLICY } from '../steps/stepSpec.js';
import { isTerminal, type SessionState, type StepState } from './state.js';

/** The state without the fields that belong to one status only (attention, pause). */
function withoutStatusFields(state: Exclude<SessionState, { status: 'none' }>) {
  const {
    attention: _a,
    pause: _p,
    ...rest
  } = state as typeof state & { attention?: unknown; pause?: unknown };
  return rest;
}

function assertNever(x: never): never {
  return x;
}

/**
 * Folds one event into the state. Pure and total: an event that does not apply to the state leaves it as it
 * was, so that replaying any stream can never crash. The metadata is needed only for idempotency bookkeeping;
 * the event's place in its stream (revision and position) only to remember where each step was submitted.
 */
export function evolve(
  state: SessionState,
  event: SessionEvent,
  metadata?: Pick<SessionEventMetadata, 'sessionId' | 'tenantId' | 'idempotencyKey' | 'requestHash'>,
  place?: StreamPlace,
): SessionState {
  switch (event.type) {
    case 'SessionOpened':
      if (state.status !== 'none' || !metadata) return state;
      return {
        status: 'open',
        sessionId: metadata.sessionId,
        tenantId: metadata.tenantId,
        browser: event.data.browser,
        idleTimeoutMs: event.data.idleTimeoutMs,
        priority: event.data.priority,
        onStepFailure: event.data.onStepFailure,
        requires: event.data.requires,
        waiting: null,
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
        checkpoint: null,
        replaySkips: [],
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
        retriedAt: 0,
        retry: event.data.step.retry ?? DEFAULT_RETRY_POLICY,
        ...(place ? { submitted: { revision: place.revision, position: place.position } } : {}),
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
      // A result is final: nothing after it (a late report of an older attempt) rewrites it.
      if (step.status === 'succeeded' || step.status === 'failed') return state;
      const attempts = Math.max(step.attempts, event.data.attempt);
      let next: StepState;
      if (event.type === 'StepStarted') next = { ...step, status: 'running', attempts };
      else if (event.type === 'StepSucceeded') next = { ...step, status: 'succeeded', attempts };
      else next = { ...step, status: event.data.final ? 'failed' : 'retrying', attempts };
      const steps = { ...state.steps, [step.stepId]: next };
      // A step starting means its target lets it through: whatever the session waited for is over.
      return event.type === 'StepStarted' ? { ...state, steps, waiting: null } : { ...state, steps };
    }
    case 'StepDeadLettered':
      return state;
    case 'StepRetried': {
      if (state.status === 'none') return state;
      const step = state.steps[event.data.stepId];
      if (!step || step.status !== 'failed') return state;
      const next: StepState = { ...step, status: 'queued', retriedAt: step.attempts };
      return { ...state, steps: { ...state.steps, [step.stepId]: next } };
    }
    case 'SessionPaused': {
      if (state.status !== 'open') return state;
      return { ...state, status: 'paused', pause: { reason: event.data.reason, stepId: event.data.stepId } };
    }
    case 'SessionFailed':
      if (state.status === 'none' || isTerminal(state)) return state;
      return { ...withoutStatusFields(state), status: 'failed', waiting: null };
    case 'SessionWaiting': {
      if (state.status === 'none' || isTerminal(state)) return state;
      const { reason, origin, stepId } = event.data;
      return { ...state, waiting: { reason, origin, stepId } };
    }
    case 'SessionCheckpointed': {
      if (state.status === 'none') return state;
      const { afterStepSeq, stateKey, url } = event.data;
      // Only a newer point replaces the one held: recovery always starts from the newest.
      if (state.checkpoint && state.checkpoint.afterStepSeq > afterStepSeq) return state;
      return { ...state, checkpoint: { afterStepSeq, stateKey, url } };
    }
    case 'SessionRecovered':
      return state;
    case 'SessionNeedsAttention': {
      if (state.status !== 'open' && state.status !== 'closing') return state;
      const { code, reason, stepIds } = event.data;
      return {
        ...state,
        status: 'needs_attention',
        attention: { code, reason, stepIds, resumeTo: state.status },
      };
    }
    case 'SessionResumed': {
      if (state.status === 'paused') return { ...withoutStatusFields(state), status: 'open' };
      if (state.status !== 'needs_attention') return state;
      const skips = new Set([...state.replaySkips, ...event.data.skipReplay]);
      return { ...withoutStatusFields(state), status: state.attention.resumeTo, replaySkips: [...skips] };
    }
    case 'SessionCancelled': {
      if (state.status === 'none' || isTerminal(state)) return state;
      return { ...withoutStatusFields(state), status: 'cancelled', waiting: null };
    }
    case 'SessionExpired': {
      // A session waiting for an operator is not expired: it waits for a decision, not for work.
      if (state.status !== 'open' && state.status !== 'closing' && state.status !== 'paused') return state;
      return { ...withoutStatusFields(state), status: 'expired', waiting: null };
    }
    case 'SessionCloseRequested':
      if (state.status !== 'open') return state;
      return { ...state, status: 'closing' };
    case 'SessionClosed': {
      if (state.status === 'none' || isTerminal(state)) return state;
      // The owner stays recorded so that its duplicate ConfirmClose or late report decides to nothing, not STALE_EPOCH.
      return { ...withoutStatusFields(state), status: 'closed', waiting: null };
    }
    default:
      return assertNever(event);
  }
}
