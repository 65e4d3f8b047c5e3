import type { SessionCommand } from '../commands/sessionCommands.js';
import type { SessionEvent } from '../events/sessionEvents.js';
import { RETRYABLE_ERROR_CODES, retryDelayMs, type StepError } from '../steps/stepSpec.js';
import { isTerminal, type SessionState, type StepState } from './state.js';

/** Why a command was refused; each code maps to one HTTP status at the edge. */
export type RejectionCode =
  | 'SESSION_NOT_FOUND'
  | 'SESSION_EXISTS'
  | 'ILLEGAL_TRANSITION'
  | 'STALE_EPOCH'
  | 'STEP_NOT_FOUND'
  | 'IDEMPOTENCY_MISMATCH'
  | 'SESSION_STEP_LIMIT'
  /** The session is paused: the owner holds its next step until it is resumed. */
  | 'SESSION_PAUSED';

export interface Rejection {
  code: RejectionCode;
  message: string;
}

export type Decision = { ok: true; events: SessionEvent[] } | { ok: false; rejection: Rejection };

/** Most steps one session may ever hold. */
export const MAX_STEPS_PER_SESSION = 10_000;

const accept = (events: SessionEvent[]): Decision => ({ ok: true, events });
const reject = (code: RejectionCode, message: string): Decision => ({
  ok: false,
  rejection: { code, message },
});

function assertNever(x: never): never {
  throw new TypeError(`unhandled command ${JSON.stringify(x)}`);
}

type Existing = Exclude<SessionState, { status: 'none' }>;

/**
 * The events of a step failing for good: its final failure is already decided; it is dead-lettered, and the
 * session's failure policy says what becomes of the session.
 */
function failedForGood(
  state: Existing,
  step: StepState,
  reason: 'attempts_exhausted' | 'not_retryable' | 'max_deliveries',
  error: StepError,
  attempts: number,
): SessionEvent[] {
  const events: SessionEvent[] = [
    { type: 'StepDeadLettered', data: { stepId: step.stepId, seq: step.seq, reason, attempts, error } },
  ];
  if (state.onStepFailure === 'fail') {
    events.push({ type: 'SessionFailed', data: { stepId: step.stepId, error } });
  } else if (state.onStepFailure === 'pause' && state.status === 'open') {
    events.push({ type: 'SessionPaused', data: { reason: 'step_failed', stepId: step.stepId } });
  }
  return events;
}

/**
 * Decides what a command means for a session: the events to append, none (a duplicate of something already
 * decided), or a rejection. Pure: ids and time arrive on the command.
 */
export function decide(command: SessionCommand, state: SessionState): Decision {
  if (command.type === 'OpenSession') {
    if (state.status === 'none') {
      return accept([
        {
          type: 'SessionOpened',
          data: {
            labels: command.labels,
            browser: command.browser,
            idleTimeoutMs: command.idleTimeoutMs,
            priority: command.priority ?? 'normal',
            onStepFailure: command.onStepFailure ?? 'pause',
            requires: command.requires ?? {},
          },
        },
      ]);
    }
    const key = command.idempotency?.key;
    if (key && state.tenantId === command.tenantId && state.openedWith.idempotencyKey === key) {
      return state.openedWith.requestHash === command.idempotency!.requestHash
        ? accept([])
        : reject('IDEMPOTENCY_MISMATCH', 'this Idempotency-Key was first used with a different request body');
    }
    return reject('SESSION_EXISTS', `session ${command.sessionId} already exists`);
  }

  // Every other command needs a session of the same tenant; another tenant's session does not exist for it.
  if (state.status === 'none' || state.tenantId !== command.tenantId) {
    return reject('SESSION_NOT_FOUND', `session ${command.sessionId} not found`);
  }

  switch (command.type) {
    case 'SubmitSteps': {
      const key = command.idempotency?.key;
      const prior = key ? state.submissions[key] : undefined;
      if (prior) {
        return prior.requestHash === command.idempotency!.requestHash
          ? accept([])
          : reject(
              'IDEMPOTENCY_MISMATCH',
              'this Idempotency-Key was first used with a different request body',
            );
      }
      // A step id already in the stream (or twice in one command) is a retry: emitting it again would store a
      // duplicate StepSubmitted and leave a gap in the seqs, so only unseen ids are submitted.
      const seen = new Set<string>();
      const fresh = command.steps.filter((s) => {
        if (state.steps[s.stepId] || seen.has(s.stepId)) return false;
        seen.add(s.stepId);
        return true;
      });
      if (command.steps.length > 0 && fresh.length === 0) return accept([]);
      // A paused session or one waiting for an operator still queues steps: they run once it is resumed.
      if (state.status !== 'open' && state.status !== 'needs_attention' && state.status !== 'paused')
        return reject('ILLEGAL_TRANSITION', `session is ${state.status}: it takes no more steps`);
      if (state.order.length + fresh.length > MAX_STEPS_PER_SESSION) {
        return reject('SESSION_STEP_LIMIT', `a session holds at most ${MAX_STEPS_PER_SESSION} steps`);
      }
      return accept(
        fresh.map((s, i) => ({
          type: 'StepSubmitted' as const,
          data: { stepId: s.stepId, seq: state.lastSeq + i + 1, step: s.step },
        })),
      );
    }
    case 'RequestClose':
      if (state.status === 'needs_attention')
        return reject('ILLEGAL_TRANSITION', 'session needs attention: resume or cancel it');
      if (state.status === 'paused')
        return reject('ILLEGAL_TRANSITION', 'session is paused: resume or cancel it');
      if (state.status !== 'open') return accept([]);
      return accept([{ type: 'SessionCloseRequested', data: { reason: command.reason } }]);
    case 'PauseSession':
      if (state.status === 'paused') return accept([]);
      if (state.status !== 'open')
        return reject('ILLEGAL_TRANSITION', `session is ${state.status}: only an open session pauses`);
      return accept([{ type: 'SessionPaused', data: { reason: 'operator', stepId: null } }]);
    case 'ResumeSession':
      if (state.status === 'paused') return accept([{ type: 'SessionResumed', data: { skipReplay: [] } }]);
      if (state.status !== 'needs_attention')
        return reject(
          'ILLEGAL_TRANSITION',
          `session is ${state.status}: only a paused session or one that needs attention resumes`,
        );
      return accept([{ type: 'SessionResumed', data: { skipReplay: state.attention.stepIds } }]);
    case 'RetryStep': {
      const step = state.steps[command.stepId];
      if (!step) return reject('STEP_NOT_FOUND', `step ${command.stepId} not found`);
      if (isTerminal(state)) return reject('ILLEGAL_TRANSITION', `session is ${state.status}`);
      if (step.status !== 'failed')
        return reject(
          'ILLEGAL_TRANSITION',
          `step is ${step.status}: only a step that failed for good is retried`,
        );
      const events: SessionEvent[] = [{ type: 'StepRetried', data: { stepId: step.stepId, seq: step.seq } }];
      // Retrying the step a session was paused for is what lets it go on.
      if (state.status === 'paused' && state.pause.stepId === step.stepId)
        events.push({ type: 'SessionResumed', data: { skipReplay: [] } });
      return accept(events);
    }
    case 'DeadLetterStep': {
      const step = state.steps[command.stepId];
      if (!step) return reject('STEP_NOT_FOUND', `step ${command.stepId} not found`);
      // A result is in the stream (the advisory raced the report), or the session is over: nothing is lost.
      if (step.status === 'succeeded' || step.status === 'failed' || isTerminal(state)) return accept([]);
      const error: StepError = {
        code: 'DELIVERY_EXHAUSTED',
        message: `the step was delivered ${command.deliveries} times without a result`,
      };
      const attempts = Math.max(1, step.attempts - step.retriedAt);
      return accept([
        {
          type: 'StepFailed',
          data: {
            stepId: step.stepId,
            seq: step.seq,
            attempt: Math.max(1, step.attempts),
            error,
            durationMs: 0,
            final: true,
            retryInMs: null,
            robotId: state.owner?.robotId ?? 'system',
            epoch: Math.max(1, state.epoch),
          },
        },
        ...failedForGood(state, step, 'max_deliveries', error, attempts),
      ]);
    }
    case 'CancelSession':
      if (state.status === 'cancelled') return accept([]);
      if (isTerminal(state)) return reject('ILLEGAL_TRANSITION', `session is ${state.status}`);
      return accept([{ type: 'SessionCancelled', data: { reason: command.reason } }]);
    case 'ClaimSession':
      if (isTerminal(state)) return reject('ILLEGAL_TRANSITION', `session is ${state.status}`);
      if (state.status === 'needs_attention')
        return reject('ILLEGAL_TRANSITION', 'session needs attention: an operator must resume it first');
      if (state.owner?.robotId === command.robotId) return accept([]);
      return accept([
        {
          type: 'SessionClaimed',
          data: {
            robotId: command.robotId,
            epoch: state.epoch + 1,
            previousRobotId: state.owner?.robotId ?? null,
          },
        },
      ]);
    case 'StartStep':
    case 'CompleteStep':
    case 'RecordRecovery':
    case 'RecordSecretUse':
    case 'FlagAttention':
    case 'ReportWaiting':
    case 'ConfirmClose':
    case 'ExpireSession': {
      if (state.owner === null || state.owner.robotId !== command.robotId || command.epoch !== state.epoch) {
        return reject(
          'STALE_EPOCH',
          `robot ${command.robotId} at epoch ${command.epoch} does not own the session (epoch ${state.epoch})`,
        );
      }
      const robot = { robotId: command.robotId, epoch: command.epoch };
      if (command.type === 'ConfirmClose') {
        if (isTerminal(state)) return accept([]);
        if (state.status !== 'closing') return reject('ILLEGAL_TRANSITION', 'session was not asked to close');
        return accept([{ type: 'SessionClosed', data: robot }]);
      }
      if (command.type === 'ExpireSession') {
        // Over already, or waiting for an operator (who decides its fate): nothing to expire.
        if (state.status !== 'open' && state.status !== 'closing' && state.status !== 'paused')
          return accept([]);
        const idle = command.idleMs === undefined ? {} : { idleMs: command.idleMs };
        return accept([{ type: 'SessionExpired', data: { reason: command.reason, ...idle, ...robot } }]);
      }
      if (command.type === 'FlagAttention') {
        if (state.status === 'needs_attention') return accept([]);
        if (isTerminal(state)) return reject('ILLEGAL_TRANSITION', `session is ${state.status}`);
        const { code, reason, stepIds } = command;
        return accept([{ type: 'SessionNeedsAttention', data: { code, reason, stepIds, ...robot } }]);
      }
      if (command.type === 'ReportWaiting') {
        if (isTerminal(state) || state.status === 'needs_attention') return accept([]);
        const { reason, origin, stepId } = command;
        const w = state.waiting;
        if (w && w.reason === reason && w.origin === origin && w.stepId === stepId) return accept([]);
        return accept([{ type: 'SessionWaiting', data: { reason, origin, stepId, ...robot } }]);
      }
      if (command.type === 'RecordRecovery') {
        if (state.status !== 'open' && state.status !== 'closing' && state.status !== 'paused')
          return reject('ILLEGAL_TRANSITION', `session is ${state.status}`);
        const { fromCheckpoint, replayedSteps, skippedSteps, durationMs } = command;
        return accept([
          {
            type: 'SessionRecovered',
            data: { fromCheckpoint, replayedSteps, skippedSteps, durationMs, ...robot },
          },
        ]);
      }
      const step = state.steps[command.stepId];
      if (!step) return reject('STEP_NOT_FOUND', `step ${command.stepId} not found`);
      if (command.type === 'RecordSecretUse') {
        // A use is a fact even on a session that ended since: the value was typed.
        const attempt = Math.max(1, step.attempts);
        return accept(
          [...new Set(command.names)].map((name) => ({
            type: 'SecretUsed' as const,
            data: { name, stepId: step.stepId, attempt, replay: true, ...robot },
          })),
        );
      }
      if (step.status === 'succeeded' || step.status === 'failed') return accept([]);
      const ref = { stepId: step.stepId, seq: step.seq, robotId: command.robotId, epoch: command.epoch };
      if (command.type === 'StartStep') {
        if (step.status === 'running' && step.attempts >= command.attempt) return accept([]);
        // Pausing lets the step in hand finish but starts no other.
        if (state.status === 'paused')
          return reject('SESSION_PAUSED', 'session is paused: the step starts once it is resumed');
        if (state.status !== 'open' && state.status !== 'closing')
          return reject('ILLEGAL_TRANSITION', `session is ${state.status}: no step runs`);
        // Attempts only ever count up, whatever the delivery count of the message that carried the step.
        return accept([
          { type: 'StepStarted', data: { ...ref, attempt: Math.max(command.attempt, step.attempts + 1) } },
        ]);
      }
      // A retrying (or operator-retried, queued) step's last attempt already has its failure recorded, and a new
      // attempt starts before it reports: this is a redelivered report of an attempt that is over (the first result
      // stands).
      if ((step.status === 'retrying' || step.status === 'queued') && command.attempt <= step.attempts)
        return accept([]);
      if (state.status !== 'open' && state.status !== 'closing' && state.status !== 'paused')
        return reject('ILLEGAL_TRANSITION', `session is ${state.status}: no step runs`);
      const attempt = Math.max(command.attempt, step.attempts, 1);
      // Recorded in the same append as the result: a use is on record exactly when the attempt is.
      const used: SessionEvent[] = [...new Set(command.secretsUsed ?? [])].map((name) => ({
        type: 'SecretUsed' as const,
        data: { name, stepId: step.stepId, attempt, replay: false, ...robot },
      }));
      if (command.outcome.status === 'failed') {
        const error = command.outcome.error;
        const spent = attempt - step.retriedAt;
        const retryable = RETRYABLE_ERROR_CODES.has(error.code);
        const failed = { ...ref, attempt, error, durationMs: command.durationMs };
        if (retryable && spent < step.retry.maxAttempts) {
          const retryInMs = retryDelayMs(step.retry, spent, command.commandId);
          return accept([{ type: 'StepFailed', data: { ...failed, final: false, retryInMs } }, ...used]);
        }
        return accept([
          { type: 'StepFailed', data: { ...failed, final: true, retryInMs: null } },
          ...used,
          ...failedForGood(state, step, retryable ? 'attempts_exhausted' : 'not_retryable', error, spent),
        ]);
      }
      const succeeded: SessionEvent = {
        type: 'StepSucceeded',
        data: { ...ref, attempt, output: command.outcome.output, durationMs: command.durationMs },
      };
      if (!command.checkpoint) return accept([succeeded, ...used]);
      // One append: the restore point exists exactly when the step it follows is recorded as done.
      return accept([
        succeeded,
        ...used,
        { type: 'SessionCheckpointed', data: { afterStepSeq: step.seq, ...command.checkpoint, ...robot } },
      ]);
    }
    default:
      return assertNever(command);
  }
}
