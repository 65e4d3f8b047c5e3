import type { SessionEvent, SessionEventMetadata } from '../events/sessionEvents.js';
import type { StreamPlace } from '../eventStore/port.js';
import { DEFAULT_RETRY_POLICY, setsCredentials } from '../steps/stepSpec.js';
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
 * Lets one fold over many events update the state's collections (steps, order, submissions) in place: each
 * collection is copied the first time the fold changes it and then owned by the fold, so folding n events costs
 * O(n), not O(n²). States handed in from outside are never mutated; only the copies made within the scope are,
 * which is safe because a fold keeps only its final state. Without a scope, evolve copies on every change.
 */
export class FoldScope {
  private readonly owned = new WeakSet<object>();

  writable<T extends object>(value: T, copy: (value: T) => T): T {
    if (this.owned.has(value)) return value;
    const copied = copy(value);
    this.owned.add(copied);
    return copied;
  }
}

function writable<T extends object>(scope: FoldScope | undefined, value: T, copy: (value: T) => T): T {
  return scope ? scope.writable(value, copy) : copy(value);
}
const copyRecord = <T extends object>(r: T): T => ({ ...r });
const copyArray = <T>(a: T[]): T[] => [...a];

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
  scope?: FoldScope,
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
        ...(setsCredentials(event.data.step) ? { setsCredentials: true as const } : {}),
        ...(place ? { submitted: { revision: place.revision, position: place.position } } : {}),
      };
      let submissions = state.submissions;
      const key = metadata?.idempotencyKey;
      if (key) {
        submissions = writable(scope, state.submissions, copyRecord);
        const prior = submissions[key];
        submissions[key] = {
          requestHash: metadata.requestHash ?? prior?.requestHash ?? '',
          steps: [...(prior?.steps ?? []), { stepId: step.stepId, seq: step.seq }],
        };
      }
      const steps = writable(scope, state.steps, copyRecord);
      steps[step.stepId] = step;
      const order = writable(scope, state.order, copyArray);
      order.push(step.stepId);
      return {
        ...state,
        lastSeq: Math.max(state.lastSeq, step.seq),
        steps,
        order,
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
      const steps = writable(scope, state.steps, copyRecord);
      steps[step.stepId] = next;
      // A step starting means its target lets it through: whatever the session waited for is over.
      return event.type === 'StepStarted' ? { ...state, steps, waiting: null } : { ...state, steps };
    }
    case 'StepDeadLettered':
    case 'SecretUsed':
      // Facts no decision depends on.
      return state;
    case 'StepRetried': {
      if (state.status === 'none') return state;
      const step = state.steps[event.data.stepId];
      if (!step || step.status !== 'failed') return state;
      const next: StepState = { ...step, status: 'queued', retriedAt: step.attempts };
      const steps = writable(scope, state.steps, copyRecord);
      steps[step.stepId] = next;
      return { ...state, steps };
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
