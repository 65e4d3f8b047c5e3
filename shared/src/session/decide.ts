import type { SessionCommand } from '../commands/sessionCommands.js';
import type { SessionEvent } from '../events/sessionEvents.js';
import { isTerminal, type SessionState } from './state.js';

/** Why a command was refused; each code maps to one HTTP status at the edge. */
export type RejectionCode =
  | 'SESSION_NOT_FOUND'
  | 'SESSION_EXISTS'
  | 'ILLEGAL_TRANSITION'
  | 'STALE_EPOCH'
  | 'STEP_NOT_FOUND'
  | 'IDEMPOTENCY_MISMATCH'
  | 'SESSION_STEP_LIMIT';

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
          data: { labels: command.labels, browser: command.browser, idleTimeoutMs: command.idleTimeoutMs },
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
      // A session waiting for an operator still queues steps: they run once it is resumed.
      if (state.status !== 'open' && state.status !== 'needs_attention')
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
      if (state.status !== 'open') return accept([]);
      return accept([{ type: 'SessionCloseRequested', data: { reason: command.reason } }]);
    case 'ResumeSession':
      if (state.status !== 'needs_attention')
        return reject(
          'ILLEGAL_TRANSITION',
          `session is ${state.status}: only a session that needs attention resumes`,
        );
      return accept([{ type: 'SessionResumed', data: { skipReplay: state.attention.stepIds } }]);
    case 'CancelSession':
      if (state.status === 'cancelled') return accept([]);
      if (state.status === 'closed' || state.status === 'expired')
        return reject('ILLEGAL_TRANSITION', `session is ${state.status}`);
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
    case 'FlagAttention':
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
        if (state.status !== 'open' && state.status !== 'closing') return accept([]);
        const idle = command.idleMs === undefined ? {} : { idleMs: command.idleMs };
        return accept([{ type: 'SessionExpired', data: { reason: command.reason, ...idle, ...robot } }]);
      }
      if (command.type === 'FlagAttention') {
        if (state.status === 'needs_attention') return accept([]);
        if (isTerminal(state)) return reject('ILLEGAL_TRANSITION', `session is ${state.status}`);
        const { code, reason, stepIds } = command;
        return accept([{ type: 'SessionNeedsAttention', data: { code, reason, stepIds, ...robot } }]);
      }
      if (command.type === 'RecordRecovery') {
        if (state.status !== 'open' && state.status !== 'closing')
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
      if (step.status === 'succeeded' || step.status === 'failed') return accept([]);
      if (state.status !== 'open' && state.status !== 'closing')
        return reject('ILLEGAL_TRANSITION', `session is ${state.status}: no step runs`);
      const ref = {
        stepId: step.stepId,
        seq: step.seq,
        attempt: command.attempt,
        robotId: command.robotId,
        epoch: command.epoch,
      };
      if (command.type === 'StartStep') {
        if (step.status === 'running' && step.attempts >= command.attempt) return accept([]);
        return accept([{ type: 'StepStarted', data: ref }]);
      }
      if (command.outcome.status === 'failed') {
        return accept([
          {
            type: 'StepFailed',
            data: { ...ref, error: command.outcome.error, durationMs: command.durationMs },
          },
        ]);
      }
      const succeeded: SessionEvent = {
        type: 'StepSucceeded',
        data: { ...ref, output: command.outcome.output, durationMs: command.durationMs },
      };
      if (!command.checkpoint) return accept([succeeded]);
      // One append: the restore point exists exactly when the step it follows is recorded as done.
      return accept([
        succeeded,
        { type: 'SessionCheckpointed', data: { afterStepSeq: step.seq, ...command.checkpoint, ...robot } },
      ]);
    }
    default:
      return assertNever(command);
  }
}
