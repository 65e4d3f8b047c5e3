import { describe, expect, it } from 'vitest';
import type {
  CancelSession,
  ClaimSession,
  CompleteStep,
  ConfirmClose,
  DeadLetterStep,
  ExpireSession,
  FlagAttention,
  OpenSession,
  PauseSession,
  RecordRecovery,
  RecordSecretUse,
  ReportWaiting,
  RequestClose,
  ResumeSession,
  RetryStep,
  SessionCommand,
  StartStep,
  SubmitSteps,
} from '../commands/sessionCommands.js';
import type { SessionEvent, SessionEventMetadata, StepFailurePolicy } from '../events/sessionEvents.js';
import {
  DEFAULT_RETRY_POLICY,
  retryDelayMs,
  type RetryPolicy,
  type StepError,
  type StepSpec,
} from '../steps/stepSpec.js';
import { decide, MAX_STEPS_PER_SESSION, type RejectionCode } from './decide.js';
import { evolve } from './evolve.js';
import { initialState, type SessionState } from './state.js';

// Given/when/then over the pure decider: `given` folds past events, `when` decides a command, `then*` checks
// the decision. Events and commands are built by the small factories below so each case reads as a sentence.

const SESSION = 's1';
const TENANT = 't1';
type Meta = Pick<SessionEventMetadata, 'sessionId' | 'tenantId' | 'idempotencyKey' | 'requestHash'>;
type Given = SessionEvent | { event: SessionEvent; meta: Partial<Meta> };

function fold(history: Given[]): SessionState {
  return history.reduce<SessionState>((state, item) => {
    const { event, meta } = 'type' in item ? { event: item, meta: {} } : item;
    return evolve(state, event, { sessionId: SESSION, tenantId: TENANT, ...meta });
  }, initialState());
}

function given(history: Given[] | SessionState) {
  const state = Array.isArray(history) ? fold(history) : history;
  return {
    when(command: SessionCommand) {
      const decision = decide(command, state);
      return {
        then(expected: SessionEvent[]) {
          expect(decision).toEqual({ ok: true, events: expected });
        },
        thenNothingHappens() {
          expect(decision).toEqual({ ok: true, events: [] });
        },
        thenRejects(code: RejectionCode) {
          expect(decision.ok ? decision.events : decision.rejection.code).toEqual(code);
          if (!decision.ok) expect(decision.rejection.message).not.toBe('');
        },
      };
    },
  };
}

// --- commands ---
const base = (tenantId = TENANT) =>
  ({
    sessionId: SESSION,
    tenantId,
    at: '2026-01-01T00:00:00.000Z',
    actor: { kind: 'system', id: 'test' },
    commandId: 'cmd',
  }) as const;

const open = (over: Partial<OpenSession> = {}): OpenSession => ({
  ...base(),
  type: 'OpenSession',
  labels: { team: 'billing' },
  browser: { locale: 'en-US' },
  idleTimeoutMs: 60_000,
  ...over,
});
const click = (selector = '#go'): StepSpec => ({ action: 'click', selector });
const submit = (stepIds: string[], over: Partial<SubmitSteps> = {}): SubmitSteps => ({
  ...base(),
  type: 'SubmitSteps',
  steps: stepIds.map((stepId) => ({ stepId, step: click(`#${stepId}`) })),
  ...over,
});
const requestClose = (over: Partial<RequestClose> = {}): RequestClose => ({
  ...base(),
  type: 'RequestClose',
  reason: 'done',
  ...over,
});
const claim = (robotId: string, over: Partial<ClaimSession> = {}): ClaimSession => ({
  ...base(),
  type: 'ClaimSession',
  robotId,
  ...over,
});
const start = (robotId: string, epoch: number, stepId: string, attempt = 1): StartStep => ({
  ...base(),
  type: 'StartStep',
  robotId,
  epoch,
  stepId,
  attempt,
});
const succeed = (robotId: string, epoch: number, stepId: string, attempt = 1): CompleteStep => ({
  ...base(),
  type: 'CompleteStep',
  robotId,
  epoch,
  stepId,
  attempt,
  durationMs: 12,
  outcome: { status: 'succeeded', output: { kind: 'none' } },
});
const fail = (robotId: string, epoch: number, stepId: string, attempt = 1): CompleteStep => ({
  ...succeed(robotId, epoch, stepId, attempt),
  outcome: { status: 'failed', error: { code: 'TIMEOUT', message: 'no #go within 15s' } },
});
const confirmClose = (robotId: string, epoch: number): ConfirmClose => ({
  ...base(),
  type: 'ConfirmClose',
  robotId,
  epoch,
});

// --- events ---
const opened = (over: Partial<Meta> = {}): Given => ({
  event: {
    type: 'SessionOpened',
    data: {
      labels: { team: 'billing' },
      browser: { locale: 'en-US' },
      idleTimeoutMs: 60_000,
      priority: 'normal',
      onStepFailure: 'continue',
      requires: {},
    },
  },
  meta: over,
});
const submitted = (stepId: string, seq: number, meta: Partial<Meta> = {}): Given => ({
  event: { type: 'StepSubmitted', data: { stepId, seq, step: click(`#${stepId}`) } },
  meta,
});
const claimed = (robotId: string, epoch: number, previousRobotId: string | null = null): SessionEvent => ({
  type: 'SessionClaimed',
  data: { robotId, epoch, previousRobotId },
});
const ref = (robotId: string, epoch: number, stepId: string, seq: number, attempt = 1) => ({
  stepId,
  seq,
  attempt,
  robotId,
  epoch,
});
const started = (robotId: string, epoch: number, stepId: string, seq: number, attempt = 1): SessionEvent => ({
  type: 'StepStarted',
  data: ref(robotId, epoch, stepId, seq, attempt),
});
const succeeded = (robotId: string, epoch: number, stepId: string, seq: number): SessionEvent => ({
  type: 'StepSucceeded',
  data: { ...ref(robotId, epoch, stepId, seq), output: { kind: 'none' }, durationMs: 12 },
});
const failed = (robotId: string, epoch: number, stepId: string, seq: number): SessionEvent => ({
  type: 'StepFailed',
  data: {
    ...ref(robotId, epoch, stepId, seq),
    error: { code: 'TIMEOUT', message: 'no #go within 15s' },
    durationMs: 12,
    final: true,
    retryInMs: null,
  },
});
/** What the decider records for fail() on a step's first attempt under the default policy: another attempt is due. */
const retryingFailure = (robotId: string, epoch: number, stepId: string, seq: number): SessionEvent => ({
  type: 'StepFailed',
  data: {
    ...ref(robotId, epoch, stepId, seq),
    error: { code: 'TIMEOUT', message: 'no #go within 15s' },
    durationMs: 12,
    final: false,
    // base().commandId seeds the jitter; the bounds are checked in 'retrying a failed step' below.
    retryInMs: retryDelayMs(DEFAULT_RETRY_POLICY, 1, 'cmd'),
  },
});
const closeRequested: SessionEvent = { type: 'SessionCloseRequested', data: { reason: 'done' } };
const closed = (robotId: string, epoch: number): SessionEvent => ({
  type: 'SessionClosed',
  data: { robotId, epoch },
});

const openWithSteps: Given[] = [opened(), submitted('a', 1), submitted('b', 2)];
const ownedByR1: Given[] = [...openWithSteps, claimed('r1', 1)];

// --- operator commands, recovery reports and their events ---
const resume = (): ResumeSession => ({ ...base(), type: 'ResumeSession' });
const cancel = (reason: string | null = 'not needed any more'): CancelSession => ({
  ...base(),
  type: 'CancelSession',
  reason,
});
const flag = (robotId: string, epoch: number, stepIds = ['b']): FlagAttention => ({
  ...base(),
  type: 'FlagAttention',
  robotId,
  epoch,
  code: 'UNSAFE_REPLAY',
  reason: 'step b must not run twice',
  stepIds,
});
const recover = (robotId: string, epoch: number): RecordRecovery => ({
  ...base(),
  type: 'RecordRecovery',
  robotId,
  epoch,
  fromCheckpoint: { afterStepSeq: 1, stateKey: 's1.1.1' },
  replayedSteps: 1,
  skippedSteps: 0,
  durationMs: 850,
});
const restorePoint = { stateKey: 's1.1.1', url: 'https://example.com/home', trigger: 'document' } as const;
const succeedWithCheckpoint = (robotId: string, epoch: number, stepId: string): CompleteStep => ({
  ...succeed(robotId, epoch, stepId),
  checkpoint: restorePoint,
});

const needsAttention = (robotId: string, epoch: number, stepIds = ['b']): SessionEvent => ({
  type: 'SessionNeedsAttention',
  data: { code: 'UNSAFE_REPLAY', reason: 'step b must not run twice', stepIds, robotId, epoch },
});
const resumed = (skipReplay: string[]): SessionEvent => ({ type: 'SessionResumed', data: { skipReplay } });
const cancelled = (reason: string | null = 'not needed any more'): SessionEvent => ({
  type: 'SessionCancelled',
  data: { reason },
});
const recovered = (robotId: string, epoch: number): SessionEvent => ({
  type: 'SessionRecovered',
  data: {
    fromCheckpoint: { afterStepSeq: 1, stateKey: 's1.1.1' },
    replayedSteps: 1,
    skippedSteps: 0,
    durationMs: 850,
    robotId,
    epoch,
  },
});

const expire = (robotId: string, epoch: number, idleMs: number | undefined = 61_000): ExpireSession => ({
  ...base(),
  type: 'ExpireSession',
  robotId,
  epoch,
  ...(idleMs === undefined ? { reason: 'max_duration' as const } : { reason: 'idle' as const, idleMs }),
});
const expired = (robotId: string, epoch: number, idleMs: number | undefined = 61_000): SessionEvent => ({
  type: 'SessionExpired',
  data: {
    ...(idleMs === undefined ? { reason: 'max_duration' as const } : { reason: 'idle' as const, idleMs }),
    robotId,
    epoch,
  },
});

// One history per status the new rules distinguish; r1 owns each at epoch 1.
const closingByR1: Given[] = [...ownedByR1, closeRequested];
const attentionByR1: Given[] = [...ownedByR1, needsAttention('r1', 1)];
const cancelledByR1: Given[] = [...ownedByR1, cancelled()];
const closedByR1: Given[] = [...closingByR1, closed('r1', 1)];
const histories = {
  open: ownedByR1,
  closing: closingByR1,
  needs_attention: attentionByR1,
  cancelled: cancelledByR1,
  closed: closedByR1,
};
const only = (...statuses: Array<keyof typeof histories>) =>
  statuses.map((status) => [status, histories[status]] as const);

describe('OpenSession', () => {
  it('given no events, when opening, then SessionOpened carries labels, browser, idle timeout and the defaults', () => {
    given([])
      .when(open())
      .then([
        {
          type: 'SessionOpened',
          data: {
            labels: { team: 'billing' },
            browser: { locale: 'en-US' },
            idleTimeoutMs: 60_000,
            priority: 'normal',
            onStepFailure: 'pause',
            requires: {},
          },
        },
      ]);
  });

  it('given no events, when opening with a priority, a failure policy and requirements, then SessionOpened carries them', () => {
    given([])
      .when(open({ priority: 'high', onStepFailure: 'fail', requires: { region: 'eu' } }))
      .then([
        {
          type: 'SessionOpened',
          data: {
            labels: { team: 'billing' },
            browser: { locale: 'en-US' },
            idleTimeoutMs: 60_000,
            priority: 'high',
            onStepFailure: 'fail',
            requires: { region: 'eu' },
          },
        },
      ]);
  });

  it('given an open session, when opening it again, then SESSION_EXISTS', () => {
    given([opened()]).when(open()).thenRejects('SESSION_EXISTS');
  });

  it('given a closed session, when opening it again, then SESSION_EXISTS', () => {
    given([...ownedByR1, closeRequested, closed('r1', 1)])
      .when(open())
      .thenRejects('SESSION_EXISTS');
  });

  describe('with an Idempotency-Key', () => {
    const keyed = opened({ idempotencyKey: 'k1', requestHash: 'h1' });

    it('given a session opened with the key, when the same key and hash come again, then nothing happens', () => {
      given([keyed])
        .when(open({ idempotency: { key: 'k1', requestHash: 'h1' } }))
        .thenNothingHappens();
    });

    it('given a session opened with the key, when it has moved on, then a repeat still decides to nothing', () => {
      given([keyed, submitted('a', 1), closeRequested])
        .when(open({ idempotency: { key: 'k1', requestHash: 'h1' } }))
        .thenNothingHappens();
    });

    it('given a session opened with the key, when the key comes with another hash, then IDEMPOTENCY_MISMATCH', () => {
      given([keyed])
        .when(open({ idempotency: { key: 'k1', requestHash: 'other' } }))
        .thenRejects('IDEMPOTENCY_MISMATCH');
    });

    it('given a session opened with the key, when another key comes, then SESSION_EXISTS', () => {
      given([keyed])
        .when(open({ idempotency: { key: 'k2', requestHash: 'h1' } }))
        .thenRejects('SESSION_EXISTS');
    });

    it('given a session opened without a key, when a key comes, then SESSION_EXISTS', () => {
      given([opened()])
        .when(open({ idempotency: { key: 'k1', requestHash: 'h1' } }))
        .thenRejects('SESSION_EXISTS');
    });

    it("given another tenant's session opened with the key, when the key comes, then SESSION_EXISTS", () => {
      given([keyed])
        .when(open({ ...base('t2'), idempotency: { key: 'k1', requestHash: 'h1' } }))
        .thenRejects('SESSION_EXISTS');
    });
  });
});

describe('SubmitSteps', () => {
  it('given an open session, when submitting, then StepSubmitted events carry consecutive seqs from 1', () => {
    given([opened()])
      .when(submit(['a', 'b']))
      .then([
        { type: 'StepSubmitted', data: { stepId: 'a', seq: 1, step: click('#a') } },
        { type: 'StepSubmitted', data: { stepId: 'b', seq: 2, step: click('#b') } },
      ]);
  });

  it('given earlier submissions, when submitting more, then the seqs continue where they stopped', () => {
    given(openWithSteps)
      .when(submit(['c', 'd']))
      .then([
        { type: 'StepSubmitted', data: { stepId: 'c', seq: 3, step: click('#c') } },
        { type: 'StepSubmitted', data: { stepId: 'd', seq: 4, step: click('#d') } },
      ]);
  });

  it('given submitted steps, when the same step ids come again, then nothing happens', () => {
    given(openWithSteps)
      .when(submit(['a', 'b']))
      .thenNothingHappens();
  });

  it('given a closed session, when already-submitted step ids come again, then nothing happens (a retry)', () => {
    given([...ownedByR1, closeRequested, closed('r1', 1)])
      .when(submit(['b']))
      .thenNothingHappens();
  });

  it('given submitted steps, when a command mixes known and new ids, then only the new ones are submitted, seqs without gap', () => {
    given(openWithSteps)
      .when(submit(['b', 'c']))
      .then([{ type: 'StepSubmitted', data: { stepId: 'c', seq: 3, step: click('#c') } }]);
  });

  it('given an open session, when one command repeats a step id, then the step is submitted once', () => {
    given([opened()])
      .when(submit(['a', 'a', 'b']))
      .then([
        { type: 'StepSubmitted', data: { stepId: 'a', seq: 1, step: click('#a') } },
        { type: 'StepSubmitted', data: { stepId: 'b', seq: 2, step: click('#b') } },
      ]);
  });

  describe('with an Idempotency-Key', () => {
    const keyedHistory: Given[] = [
      opened(),
      submitted('a', 1, { idempotencyKey: 'k1', requestHash: 'h1' }),
      submitted('b', 2, { idempotencyKey: 'k1', requestHash: 'h1' }),
    ];

    it('given a keyed submission, when the same key and hash come again, then nothing happens', () => {
      given(keyedHistory)
        .when(submit(['x', 'y'], { idempotency: { key: 'k1', requestHash: 'h1' } }))
        .thenNothingHappens();
    });

    it('given a keyed submission, when the key comes with another hash, then IDEMPOTENCY_MISMATCH', () => {
      given(keyedHistory)
        .when(submit(['x'], { idempotency: { key: 'k1', requestHash: 'h2' } }))
        .thenRejects('IDEMPOTENCY_MISMATCH');
    });

    it('given a keyed submission and a close request, when the submission is retried, then nothing happens', () => {
      given([...keyedHistory, closeRequested])
        .when(submit(['a', 'b'], { idempotency: { key: 'k1', requestHash: 'h1' } }))
        .thenNothingHappens();
    });

    it('given a keyed submission, when a new key comes, then its steps are submitted after the others', () => {
      given(keyedHistory)
        .when(submit(['c'], { idempotency: { key: 'k2', requestHash: 'h1' } }))
        .then([{ type: 'StepSubmitted', data: { stepId: 'c', seq: 3, step: click('#c') } }]);
    });
  });

  it('given a closing session, when submitting new steps, then ILLEGAL_TRANSITION', () => {
    given([...openWithSteps, closeRequested])
      .when(submit(['c']))
      .thenRejects('ILLEGAL_TRANSITION');
  });

  it('given a closed session, when submitting new steps, then ILLEGAL_TRANSITION', () => {
    given([...ownedByR1, closeRequested, closed('r1', 1)])
      .when(submit(['c']))
      .thenRejects('ILLEGAL_TRANSITION');
  });

  describe('the step limit', () => {
    // Folding 10,000 events only to reach the limit would dominate the suite; the limit reads `order` alone.
    const nearlyFull = (): SessionState => {
      const state = fold([opened()]);
      if (state.status !== 'open') throw new TypeError('expected an open session');
      const count = MAX_STEPS_PER_SESSION - 1;
      return { ...state, order: Array.from({ length: count }, (_, i) => `s${i}`), lastSeq: count };
    };

    it('given one free slot, when submitting one step, then it is accepted', () => {
      const decision = decide(submit(['last']), nearlyFull());
      expect(decision).toMatchObject({
        ok: true,
        events: [{ type: 'StepSubmitted', data: { seq: MAX_STEPS_PER_SESSION } }],
      });
    });

    it('given one free slot, when submitting two steps, then SESSION_STEP_LIMIT', () => {
      given(nearlyFull())
        .when(submit(['x', 'y']))
        .thenRejects('SESSION_STEP_LIMIT');
    });
  });
});

describe('every command but OpenSession needs a session of the same tenant', () => {
  const commands: SessionCommand[] = [
    submit(['a']),
    requestClose(),
    resume(),
    cancel(),
    claim('r1'),
    start('r1', 1, 'a'),
    succeed('r1', 1, 'a'),
    recover('r1', 1),
    flag('r1', 1),
    confirmClose('r1', 1),
  ];

  it.each(commands.map((c) => [c.type, c] as const))(
    'given no session, when %s, then SESSION_NOT_FOUND',
    (_type, command) => {
      given([]).when(command).thenRejects('SESSION_NOT_FOUND');
    },
  );

  it.each(commands.map((c) => [c.type, { ...c, tenantId: 't2' }] as const))(
    "given another tenant's session, when %s, then SESSION_NOT_FOUND",
    (_type, command) => {
      given([...ownedByR1, closeRequested])
        .when(command)
        .thenRejects('SESSION_NOT_FOUND');
    },
  );
});

describe('RequestClose', () => {
  it('given an open session, when closing, then SessionCloseRequested with the reason', () => {
    given([opened()])
      .when(requestClose({ reason: 'finished' }))
      .then([{ type: 'SessionCloseRequested', data: { reason: 'finished' } }]);
  });

  it('given a closing session, when closing again, then nothing happens', () => {
    given([opened(), closeRequested]).when(requestClose()).thenNothingHappens();
  });

  it('given a closed session, when closing again, then nothing happens', () => {
    given([...ownedByR1, closeRequested, closed('r1', 1)])
      .when(requestClose())
      .thenNothingHappens();
  });
});

describe('ClaimSession', () => {
  it('given an unclaimed session, when a robot claims it, then SessionClaimed at epoch 1 with no previous robot', () => {
    given(openWithSteps)
      .when(claim('r1'))
      .then([claimed('r1', 1, null)]);
  });

  it('given a session owned by r1, when r2 claims it, then the epoch goes up and r1 is named as previous owner', () => {
    given(ownedByR1)
      .when(claim('r2'))
      .then([claimed('r2', 2, 'r1')]);
  });

  it('given a session owned by r1, when r1 claims it again, then nothing happens', () => {
    given(ownedByR1).when(claim('r1')).thenNothingHappens();
  });

  it('given a closing session, when a new robot claims it, then the claim lands (someone must confirm the close)', () => {
    given([...ownedByR1, closeRequested])
      .when(claim('r2'))
      .then([claimed('r2', 2, 'r1')]);
  });

  it('given a closed session, when a robot claims it, then ILLEGAL_TRANSITION', () => {
    given([...ownedByR1, closeRequested, closed('r1', 1)])
      .when(claim('r2'))
      .thenRejects('ILLEGAL_TRANSITION');
  });
});

describe('robot reports are fenced by owner and epoch', () => {
  const takenOver: Given[] = [...ownedByR1, claimed('r2', 2, 'r1')];
  const label = (c: SessionCommand) =>
    c.type === 'CompleteStep' && c.checkpoint ? 'CompleteStep with a checkpoint' : c.type;
  const reports = (robotId: string, epoch: number): SessionCommand[] => [
    start(robotId, epoch, 'a'),
    succeed(robotId, epoch, 'a'),
    succeedWithCheckpoint(robotId, epoch, 'a'),
    recover(robotId, epoch),
    flag(robotId, epoch),
    confirmClose(robotId, epoch),
    expire(robotId, epoch),
  ];

  it.each(reports('r1', 1).map((c) => [label(c), c] as const))(
    'given r2 took the session over, when %s comes from r1 at its old epoch, then STALE_EPOCH',
    (_type, command) => {
      given([...takenOver, closeRequested])
        .when(command)
        .thenRejects('STALE_EPOCH');
    },
  );

  it.each(reports('r3', 2).map((c) => [label(c), c] as const))(
    'given r2 owns the session, when %s comes from another robot at the current epoch, then STALE_EPOCH',
    (_type, command) => {
      given([...takenOver, closeRequested])
        .when(command)
        .thenRejects('STALE_EPOCH');
    },
  );

  it.each(reports('r2', 3).map((c) => [label(c), c] as const))(
    'given r2 owns epoch 2, when %s claims an epoch from the future, then STALE_EPOCH',
    (_type, command) => {
      given([...takenOver, closeRequested])
        .when(command)
        .thenRejects('STALE_EPOCH');
    },
  );

  it.each(reports('r1', 1).map((c) => [label(c), c] as const))(
    'given nobody claimed the session, when %s comes, then STALE_EPOCH',
    (_type, command) => {
      given([...openWithSteps, closeRequested])
        .when(command)
        .thenRejects('STALE_EPOCH');
    },
  );
});

describe('StartStep', () => {
  it('given the owner and a queued step, when it starts the step, then StepStarted with the step seq', () => {
    given(ownedByR1)
      .when(start('r1', 1, 'b'))
      .then([started('r1', 1, 'b', 2)]);
  });

  it('given a running step, when the same attempt starts again, then nothing happens', () => {
    given([...ownedByR1, started('r1', 1, 'a', 1)])
      .when(start('r1', 1, 'a', 1))
      .thenNothingHappens();
  });

  it('given a step a previous owner started, when the new owner starts attempt 2, then StepStarted attempt 2', () => {
    given([...ownedByR1, started('r1', 1, 'a', 1), claimed('r2', 2, 'r1')])
      .when(start('r2', 2, 'a', 2))
      .then([started('r2', 2, 'a', 1, 2)]);
  });

  it('given the owner, when it starts an unknown step, then STEP_NOT_FOUND', () => {
    given(ownedByR1)
      .when(start('r1', 1, 'nope'))
      .thenRejects('STEP_NOT_FOUND');
  });

  it('given a finished step, when it is started again, then nothing happens', () => {
    given([...ownedByR1, succeeded('r1', 1, 'a', 1)])
      .when(start('r1', 1, 'a', 2))
      .thenNothingHappens();
  });

  it('given a closing session, when the owner starts a queued step, then StepStarted (closing drains the queue)', () => {
    given([...ownedByR1, closeRequested])
      .when(start('r1', 1, 'a'))
      .then([started('r1', 1, 'a', 1)]);
  });

  it('given a closed session, when its last owner starts a queued step, then ILLEGAL_TRANSITION', () => {
    given([...ownedByR1, closeRequested, closed('r1', 1)])
      .when(start('r1', 1, 'a'))
      .thenRejects('ILLEGAL_TRANSITION');
  });
});

describe('CompleteStep', () => {
  it('given a running step, when the owner reports success, then StepSucceeded with output and duration', () => {
    given([...ownedByR1, started('r1', 1, 'a', 1)])
      .when(succeed('r1', 1, 'a'))
      .then([succeeded('r1', 1, 'a', 1)]);
  });

  it('given a running step, when the owner reports a retryable failure of its first attempt, then StepFailed with the error and the delay to the next', () => {
    given([...ownedByR1, started('r1', 1, 'b', 2)])
      .when(fail('r1', 1, 'b'))
      .then([retryingFailure('r1', 1, 'b', 2)]);
  });

  it('given a succeeded step, when the same completion is delivered again, then nothing happens', () => {
    given([...ownedByR1, started('r1', 1, 'a', 1), succeeded('r1', 1, 'a', 1)])
      .when(succeed('r1', 1, 'a'))
      .thenNothingHappens();
  });

  it('given a failed step, when a different outcome arrives for it, then nothing happens (the first result stands)', () => {
    given([...ownedByR1, failed('r1', 1, 'a', 1)])
      .when(succeed('r1', 1, 'a'))
      .thenNothingHappens();
  });

  it('given a closed session, when its last owner repeats a completion, then nothing happens', () => {
    given([...ownedByR1, succeeded('r1', 1, 'a', 1), closeRequested, closed('r1', 1)])
      .when(succeed('r1', 1, 'a'))
      .thenNothingHappens();
  });

  it('given the owner, when it completes an unknown step, then STEP_NOT_FOUND', () => {
    given(ownedByR1)
      .when(succeed('r1', 1, 'nope'))
      .thenRejects('STEP_NOT_FOUND');
  });
});

describe('ConfirmClose', () => {
  it('given a closing session, when the owner confirms, then SessionClosed names robot and epoch', () => {
    given([...ownedByR1, claimed('r2', 2, 'r1'), closeRequested])
      .when(confirmClose('r2', 2))
      .then([closed('r2', 2)]);
  });

  it('given an open session, when the owner confirms a close, then ILLEGAL_TRANSITION', () => {
    given(ownedByR1).when(confirmClose('r1', 1)).thenRejects('ILLEGAL_TRANSITION');
  });

  it('given a closed session, when the owner confirms again (a redelivery), then nothing happens', () => {
    given([...ownedByR1, closeRequested, closed('r1', 1)])
      .when(confirmClose('r1', 1))
      .thenNothingHappens();
  });

  it('given a closed session, when another robot confirms, then STALE_EPOCH', () => {
    given([...ownedByR1, closeRequested, closed('r1', 1)])
      .when(confirmClose('r2', 2))
      .thenRejects('STALE_EPOCH');
  });
});

describe('a whole session', () => {
  it('folds a realistic history and decides each step of it', () => {
    const history: Given[] = [];
    const step = (command: SessionCommand) => {
      const decision = decide(command, fold(history));
      if (!decision.ok) throw new TypeError(`${command.type} rejected: ${decision.rejection.code}`);
      history.push(...decision.events);
      return decision.events.map((e) => e.type);
    };
    expect(step(open())).toEqual(['SessionOpened']);
    expect(step(submit(['a', 'b']))).toEqual(['StepSubmitted', 'StepSubmitted']);
    expect(step(claim('r1'))).toEqual(['SessionClaimed']);
    expect(step(start('r1', 1, 'a'))).toEqual(['StepStarted']);
    expect(step(succeed('r1', 1, 'a'))).toEqual(['StepSucceeded']);
    expect(step(claim('r2'))).toEqual(['SessionClaimed']);
    expect(step(start('r2', 2, 'b'))).toEqual(['StepStarted']);
    expect(step(fail('r2', 2, 'b'))).toEqual(['StepFailed']);
    expect(step(requestClose())).toEqual(['SessionCloseRequested']);
    expect(step(confirmClose('r2', 2))).toEqual(['SessionClosed']);
    expect(fold(history)).toMatchObject({ status: 'closed', epoch: 2, lastSeq: 2 });
  });
});

describe('ResumeSession', () => {
  it('given a session that needs attention, when an operator resumes it, then SessionResumed skips the flagged steps', () => {
    given([...ownedByR1, needsAttention('r1', 1, ['a', 'b'])])
      .when(resume())
      .then([resumed(['a', 'b'])]);
  });

  it.each(only('open', 'closing', 'cancelled', 'closed'))(
    'given a %s session, when an operator resumes it, then ILLEGAL_TRANSITION',
    (_status, history) => {
      given(history).when(resume()).thenRejects('ILLEGAL_TRANSITION');
    },
  );

  it('given a session resumed once, when the resume is repeated, then ILLEGAL_TRANSITION (it is open again)', () => {
    given([...attentionByR1, resumed(['b'])])
      .when(resume())
      .thenRejects('ILLEGAL_TRANSITION');
  });
});

describe('CancelSession', () => {
  it.each(only('open', 'closing', 'needs_attention'))(
    'given a %s session, when an operator cancels it, then SessionCancelled with the reason',
    (_status, history) => {
      given(history)
        .when(cancel('order placed by hand'))
        .then([cancelled('order placed by hand')]);
    },
  );

  it('given a session nobody claimed yet, when an operator cancels it, then SessionCancelled', () => {
    given(openWithSteps)
      .when(cancel(null))
      .then([cancelled(null)]);
  });

  it('given a cancelled session, when it is cancelled again, then nothing happens', () => {
    given(cancelledByR1).when(cancel('again')).thenNothingHappens();
  });

  it('given a closed session, when an operator cancels it, then ILLEGAL_TRANSITION', () => {
    given(closedByR1).when(cancel()).thenRejects('ILLEGAL_TRANSITION');
  });
});

describe('ClaimSession on a session no robot may take', () => {
  it.each(only('needs_attention', 'cancelled', 'closed'))(
    'given a %s session, when another robot claims it, then ILLEGAL_TRANSITION',
    (_status, history) => {
      given(history).when(claim('r2')).thenRejects('ILLEGAL_TRANSITION');
    },
  );

  it('given a session resumed after attention, when another robot claims it, then the claim lands', () => {
    given([...attentionByR1, resumed(['b'])])
      .when(claim('r2'))
      .then([claimed('r2', 2, 'r1')]);
  });
});

describe('FlagAttention', () => {
  it.each(only('open', 'closing'))(
    'given a %s session, when its owner flags it, then SessionNeedsAttention names code, reason, steps and owner',
    (_status, history) => {
      given(history)
        .when(flag('r1', 1, ['b']))
        .then([needsAttention('r1', 1, ['b'])]);
    },
  );

  it('given r2 took the session over, when r1 flags it at its old epoch, then STALE_EPOCH', () => {
    given([...ownedByR1, claimed('r2', 2, 'r1')])
      .when(flag('r1', 1))
      .thenRejects('STALE_EPOCH');
  });

  it('given a session that already needs attention, when the flag is reported again, then nothing happens', () => {
    given(attentionByR1).when(flag('r1', 1)).thenNothingHappens();
  });

  it.each(only('cancelled', 'closed'))(
    'given a %s session, when its last owner flags it, then ILLEGAL_TRANSITION',
    (_status, history) => {
      given(history).when(flag('r1', 1)).thenRejects('ILLEGAL_TRANSITION');
    },
  );
});

describe('RecordRecovery', () => {
  it.each(only('open', 'closing'))(
    'given a %s session, when its owner records a recovery, then SessionRecovered with what was restored and replayed',
    (_status, history) => {
      given(history)
        .when(recover('r1', 1))
        .then([recovered('r1', 1)]);
    },
  );

  it('given r2 took the session over, when r1 records a recovery at its old epoch, then STALE_EPOCH', () => {
    given([...ownedByR1, claimed('r2', 2, 'r1')])
      .when(recover('r1', 1))
      .thenRejects('STALE_EPOCH');
  });

  it.each(only('needs_attention', 'cancelled', 'closed'))(
    'given a %s session, when its owner records a recovery, then ILLEGAL_TRANSITION',
    (_status, history) => {
      given(history).when(recover('r1', 1)).thenRejects('ILLEGAL_TRANSITION');
    },
  );
});

describe('CompleteStep with a restore point', () => {
  const checkpointed = (robotId: string, epoch: number, afterStepSeq: number): SessionEvent => ({
    type: 'SessionCheckpointed',
    data: { afterStepSeq, ...restorePoint, robotId, epoch },
  });

  it('given a running step, when the owner reports success with a checkpoint, then StepSucceeded and SessionCheckpointed in one decision', () => {
    given([...ownedByR1, started('r1', 1, 'b', 2)])
      .when(succeedWithCheckpoint('r1', 1, 'b'))
      .then([succeeded('r1', 1, 'b', 2), checkpointed('r1', 1, 2)]);
  });

  it('given a running step, when the owner reports failure with a checkpoint, then only StepFailed (no point after a failure)', () => {
    given([...ownedByR1, started('r1', 1, 'b', 2)])
      .when({ ...fail('r1', 1, 'b'), checkpoint: restorePoint })
      .then([retryingFailure('r1', 1, 'b', 2)]);
  });

  it('given a succeeded step, when its success with a checkpoint is delivered again, then nothing happens', () => {
    given([...ownedByR1, succeeded('r1', 1, 'a', 1), checkpointed('r1', 1, 1)])
      .when(succeedWithCheckpoint('r1', 1, 'a'))
      .thenNothingHappens();
  });
});

describe('no step runs while a session needs attention or is cancelled', () => {
  it.each(only('needs_attention', 'cancelled'))(
    'given a %s session, when its owner starts a queued step, then ILLEGAL_TRANSITION',
    (_status, history) => {
      given(history)
        .when(start('r1', 1, 'a'))
        .thenRejects('ILLEGAL_TRANSITION');
    },
  );

  const runningA: Given[] = [...ownedByR1, started('r1', 1, 'a', 1)];
  it.each([
    ['needs_attention', [...runningA, needsAttention('r1', 1)]],
    ['cancelled', [...runningA, cancelled()]],
  ] as const)(
    'given a %s session, when its owner completes the step that was running, then ILLEGAL_TRANSITION',
    (_status, history) => {
      given([...history])
        .when(succeed('r1', 1, 'a'))
        .thenRejects('ILLEGAL_TRANSITION');
    },
  );

  it('given a step that finished before the flag, when its completion is delivered again, then nothing happens', () => {
    given([...ownedByR1, succeeded('r1', 1, 'a', 1), needsAttention('r1', 1)])
      .when(succeed('r1', 1, 'a'))
      .thenNothingHappens();
  });
});

describe('close and submit around attention and cancellation', () => {
  it('given a cancelled session, when its owner confirms a close, then nothing happens (it is over already)', () => {
    given(cancelledByR1).when(confirmClose('r1', 1)).thenNothingHappens();
  });

  it('given a session that needs attention, when steps are submitted, then they are queued for after the resume', () => {
    given(attentionByR1)
      .when(submit(['c']))
      .then([{ type: 'StepSubmitted', data: { stepId: 'c', seq: 3, step: click('#c') } }]);
  });

  it('given a cancelled session, when new steps are submitted, then ILLEGAL_TRANSITION', () => {
    given(cancelledByR1)
      .when(submit(['c']))
      .thenRejects('ILLEGAL_TRANSITION');
  });

  it('given a session that needs attention, when a close is requested, then ILLEGAL_TRANSITION', () => {
    given(attentionByR1).when(requestClose()).thenRejects('ILLEGAL_TRANSITION');
  });

  it('given a cancelled session, when a close is requested, then nothing happens', () => {
    given(cancelledByR1).when(requestClose()).thenNothingHappens();
  });
});

describe('a session that stops for an operator', () => {
  it('folds a takeover, a flag, a resume and a recovery, deciding each step of it', () => {
    const history: Given[] = [];
    const step = (command: SessionCommand) => {
      const decision = decide(command, fold(history));
      if (!decision.ok) throw new TypeError(`${command.type} rejected: ${decision.rejection.code}`);
      history.push(...decision.events);
      return decision.events.map((e) => e.type);
    };
    expect(step(open())).toEqual(['SessionOpened']);
    expect(step(submit(['a', 'b', 'c']))).toEqual(['StepSubmitted', 'StepSubmitted', 'StepSubmitted']);
    expect(step(claim('r1'))).toEqual(['SessionClaimed']);
    expect(step(start('r1', 1, 'a'))).toEqual(['StepStarted']);
    expect(step(succeedWithCheckpoint('r1', 1, 'a'))).toEqual(['StepSucceeded', 'SessionCheckpointed']);
    expect(step(start('r1', 1, 'b'))).toEqual(['StepStarted']);
    expect(step(succeed('r1', 1, 'b'))).toEqual(['StepSucceeded']);
    expect(step(claim('r2'))).toEqual(['SessionClaimed']);
    expect(step(flag('r2', 2, ['b']))).toEqual(['SessionNeedsAttention']);
    expect(step(resume())).toEqual(['SessionResumed']);
    expect(step(claim('r3'))).toEqual(['SessionClaimed']);
    expect(step(recover('r3', 3))).toEqual(['SessionRecovered']);
    expect(step(start('r3', 3, 'c'))).toEqual(['StepStarted']);
    expect(step(succeed('r3', 3, 'c'))).toEqual(['StepSucceeded']);
    expect(step(requestClose())).toEqual(['SessionCloseRequested']);
    expect(step(confirmClose('r3', 3))).toEqual(['SessionClosed']);
    expect(fold(history)).toMatchObject({
      status: 'closed',
      epoch: 3,
      checkpoint: { afterStepSeq: 1 },
      replaySkips: ['b'],
    });
  });
});

describe('ExpireSession', () => {
  const expiredByR1: Given[] = [...ownedByR1, expired('r1', 1)];

  it.each(only('open', 'closing'))(
    'given a %s session, when its owner reports it idle, then SessionExpired names reason, idle time and owner',
    (_status, history) => {
      given(history)
        .when(expire('r1', 1, 61_000))
        .then([expired('r1', 1, 61_000)]);
    },
  );

  it('given an open session, when its owner reports it held too long, then SessionExpired without an idle time', () => {
    given(ownedByR1)
      .when(expire('r1', 1, undefined))
      .then([expired('r1', 1, undefined)]);
  });

  it.each(only('closed', 'cancelled'))(
    'given a %s session, when its owner reports it idle, then nothing happens',
    (_status, history) => {
      given(history).when(expire('r1', 1)).thenNothingHappens();
    },
  );

  it('given an expired session, when its owner reports it again (a retry), then nothing happens', () => {
    given(expiredByR1).when(expire('r1', 1)).thenNothingHappens();
  });

  it('given a session that needs attention, when its owner reports it idle, then nothing happens: it waits for an operator', () => {
    given(attentionByR1).when(expire('r1', 1)).thenNothingHappens();
  });

  it('given an expired session, when steps are submitted, then ILLEGAL_TRANSITION', () => {
    given(expiredByR1)
      .when(submit(['c']))
      .thenRejects('ILLEGAL_TRANSITION');
  });

  it('given an expired session, when another robot claims it, then ILLEGAL_TRANSITION', () => {
    given(expiredByR1).when(claim('r2')).thenRejects('ILLEGAL_TRANSITION');
  });

  it('given an expired session, when an operator cancels it, then ILLEGAL_TRANSITION', () => {
    given(expiredByR1).when(cancel()).thenRejects('ILLEGAL_TRANSITION');
  });

  it('given an expired session, when close is requested, then nothing happens', () => {
    given(expiredByR1).when(requestClose()).thenNothingHappens();
  });
});

// --- retries, dead letters, pauses and waits ---
const TIMEOUT: StepError = { code: 'TIMEOUT', message: 'no #go within 15s' };
const NO_SELECTOR: StepError = { code: 'SELECTOR_NOT_FOUND', message: 'no #go on the page' };

/** A session under `policy` with step a (retry policy `retry`, or the default) and b, owned by r1 at epoch 1. */
const ownedUnder = (policy: StepFailurePolicy, retry?: RetryPolicy): Given[] => [
  {
    event: {
      type: 'SessionOpened',
      data: {
        labels: {},
        browser: {},
        idleTimeoutMs: null,
        priority: 'normal',
        onStepFailure: policy,
        requires: {},
      },
    },
    meta: {},
  },
  {
    type: 'StepSubmitted',
    data: { stepId: 'a', seq: 1, step: { action: 'click', selector: '#a', ...(retry ? { retry } : {}) } },
  },
  submitted('b', 2),
  claimed('r1', 1),
];
const failWith = (error: StepError, stepId: string, attempt: number, commandId = 'cmd'): CompleteStep => ({
  ...succeed('r1', 1, stepId, attempt),
  commandId,
  outcome: { status: 'failed', error },
});
const failure = (
  stepId: string,
  seq: number,
  attempt: number,
  error: StepError,
  retryInMs: number | null,
): SessionEvent => ({
  type: 'StepFailed',
  data: {
    ...ref('r1', 1, stepId, seq, attempt),
    error,
    durationMs: 12,
    final: retryInMs === null,
    retryInMs,
  },
});
/** Attempts 1..n of step a started and failed with TIMEOUT, each but the last with another attempt due. */
const attemptsFailed = (n: number, final = false): SessionEvent[] =>
  Array.from({ length: n }, (_, i) => [
    started('r1', 1, 'a', 1, i + 1),
    failure('a', 1, i + 1, TIMEOUT, final && i === n - 1 ? null : 1_000),
  ]).flat();
const deadLettered = (
  stepId: string,
  seq: number,
  reason: 'attempts_exhausted' | 'not_retryable' | 'max_deliveries',
  attempts: number,
  error: StepError,
): SessionEvent => ({ type: 'StepDeadLettered', data: { stepId, seq, reason, attempts, error } });
const pausedFor = (stepId: string | null): SessionEvent => ({
  type: 'SessionPaused',
  data: stepId === null ? { reason: 'operator', stepId: null } : { reason: 'step_failed', stepId },
});
const retried = (stepId: string, seq: number): SessionEvent => ({
  type: 'StepRetried',
  data: { stepId, seq },
});
const pause = (): PauseSession => ({ ...base(), type: 'PauseSession' });
const retryStep = (stepId: string): RetryStep => ({ ...base(), type: 'RetryStep', stepId });
const deadLetter = (stepId: string, deliveries = 15): DeadLetterStep => ({
  ...base(),
  type: 'DeadLetterStep',
  stepId,
  deliveries,
});
const reportWaiting = (
  robotId: string,
  epoch: number,
  stepId = 'a',
  origin = 'https://shop.example',
): ReportWaiting => ({
  ...base(),
  type: 'ReportWaiting',
  robotId,
  epoch,
  stepId,
  reason: 'ORIGIN_UNAVAILABLE',
  origin,
});
const waiting = (stepId = 'a', origin = 'https://shop.example'): SessionEvent => ({
  type: 'SessionWaiting',
  data: { reason: 'ORIGIN_UNAVAILABLE', origin, stepId, robotId: 'r1', epoch: 1 },
});

/** The delay a decision put on its StepFailed; fails the test when the decision is anything else. */
function retryInMsOf(history: Given[], command: SessionCommand): number | null {
  const decision = decide(command, fold(history));
  if (!decision.ok) throw new TypeError(`rejected: ${decision.rejection.code}`);
  const [first, ...rest] = decision.events;
  expect(rest).toEqual([]);
  if (first?.type !== 'StepFailed') throw new TypeError(`decided ${first?.type}`);
  expect(first.data.final).toBe(first.data.retryInMs === null);
  return first.data.retryInMs;
}

describe('retrying a failed step', () => {
  const exponential: RetryPolicy = { maxAttempts: 6, backoff: 'exponential', initialMs: 1_000, maxMs: 5_000 };

  it('given a running first attempt, when it fails with a retryable code, then StepFailed is not final and names the delay', () => {
    const history = [...ownedUnder('pause'), started('r1', 1, 'a', 1)];
    const delay = retryInMsOf(history, failWith(TIMEOUT, 'a', 1));
    given(history)
      .when(failWith(TIMEOUT, 'a', 1))
      .then([failure('a', 1, 1, TIMEOUT, delay)]);
    expect(delay).toBeGreaterThanOrEqual(900);
    expect(delay).toBeLessThanOrEqual(1_100);
  });

  it('given the same failure decided again with the same commandId, then the delay is the same', () => {
    const history = [...ownedUnder('pause'), started('r1', 1, 'a', 1)];
    const once = retryInMsOf(history, failWith(TIMEOUT, 'a', 1, 'complete-1'));
    expect(retryInMsOf(history, failWith(TIMEOUT, 'a', 1, 'complete-1'))).toBe(once);
  });

  it('given many commands, when each decides a failure, then every delay is within ±10% of the backoff and they spread', () => {
    const history = [...ownedUnder('pause', exponential), ...attemptsFailed(1), started('r1', 1, 'a', 1, 2)];
    const delays = Array.from({ length: 50 }, (_, i) =>
      retryInMsOf(history, failWith(TIMEOUT, 'a', 2, `c${i}`))!,
    );
    // Attempt 2 failed: the next waits initialMs * 2.
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(1_800);
      expect(delay).toBeLessThanOrEqual(2_200);
    }
    expect(new Set(delays).size).toBeGreaterThan(10);
  });

  it.each([
    [1, 1_000],
    [2, 2_000],
    [3, 4_000],
  ])('given exponential backoff, when attempt %i fails, then the next waits about %i ms', (attempt, base) => {
    const history = [
      ...ownedUnder('pause', exponential),
      ...attemptsFailed(attempt - 1),
      started('r1', 1, 'a', 1, attempt),
    ];
    for (const seed of ['x', 'y', 'z']) {
      const delay = retryInMsOf(history, failWith(TIMEOUT, 'a', attempt, seed))!;
      expect(delay).toBeGreaterThanOrEqual(base * 0.9);
      expect(delay).toBeLessThanOrEqual(base * 1.1);
    }
  });

  it('given exponential backoff past its cap, when an attempt fails, then the delay never exceeds maxMs', () => {
    const history = [...ownedUnder('pause', exponential), ...attemptsFailed(4), started('r1', 1, 'a', 1, 5)];
    // 1 s doubled four times is 16 s: capped at 5 s.
    for (let i = 0; i < 30; i++) {
      const delay = retryInMsOf(history, failWith(TIMEOUT, 'a', 5, `c${i}`))!;
      expect(delay).toBeGreaterThanOrEqual(4_500);
      expect(delay).toBeLessThanOrEqual(5_000);
    }
  });

  it('given fixed backoff, when a later attempt fails, then the delay stays about initialMs', () => {
    const fixed: RetryPolicy = { maxAttempts: 5, backoff: 'fixed', initialMs: 2_000, maxMs: 30_000 };
    const history = [...ownedUnder('pause', fixed), ...attemptsFailed(3), started('r1', 1, 'a', 1, 4)];
    const delay = retryInMsOf(history, failWith(TIMEOUT, 'a', 4))!;
    expect(delay).toBeGreaterThanOrEqual(1_800);
    expect(delay).toBeLessThanOrEqual(2_200);
  });

  it('given a failure with another attempt due, when the owner starts the next attempt, then StepStarted counts it', () => {
    given([...ownedUnder('pause'), ...attemptsFailed(1)])
      .when(start('r1', 1, 'a', 2))
      .then([started('r1', 1, 'a', 1, 2)]);
  });

  it('given a failure with another attempt due, when the same failure report is delivered again, then nothing happens', () => {
    given([...ownedUnder('pause'), ...attemptsFailed(1)])
      .when(failWith(TIMEOUT, 'a', 1))
      .thenNothingHappens();
  });

  it('given a failure with another attempt due, when a late success of that attempt arrives, then nothing happens (the first result stands)', () => {
    given([...ownedUnder('pause'), ...attemptsFailed(1)])
      .when(succeed('r1', 1, 'a', 1))
      .thenNothingHappens();
  });

  describe('the last attempt', () => {
    const lastRunning = (policy: StepFailurePolicy): Given[] => [
      ...ownedUnder(policy),
      ...attemptsFailed(2),
      started('r1', 1, 'a', 1, 3),
    ];

    it('given the pause policy, when the third attempt fails, then final StepFailed, StepDeadLettered attempts_exhausted and SessionPaused step_failed', () => {
      given(lastRunning('pause'))
        .when(failWith(TIMEOUT, 'a', 3))
        .then([
          failure('a', 1, 3, TIMEOUT, null),
          deadLettered('a', 1, 'attempts_exhausted', 3, TIMEOUT),
          pausedFor('a'),
        ]);
    });

    it('given the fail policy, when the third attempt fails, then the session fails with the step and its error', () => {
      given(lastRunning('fail'))
        .when(failWith(TIMEOUT, 'a', 3))
        .then([
          failure('a', 1, 3, TIMEOUT, null),
          deadLettered('a', 1, 'attempts_exhausted', 3, TIMEOUT),
          { type: 'SessionFailed', data: { stepId: 'a', error: TIMEOUT } },
        ]);
    });

    it('given the continue policy, when the third attempt fails, then the step is dead-lettered and nothing more', () => {
      given(lastRunning('continue'))
        .when(failWith(TIMEOUT, 'a', 3))
        .then([failure('a', 1, 3, TIMEOUT, null), deadLettered('a', 1, 'attempts_exhausted', 3, TIMEOUT)]);
    });

    it('given a policy of one attempt, when the first attempt fails, then it is final at once', () => {
      const once: RetryPolicy = { maxAttempts: 1, backoff: 'exponential', initialMs: 1_000, maxMs: 30_000 };
      given([...ownedUnder('continue', once), started('r1', 1, 'a', 1)])
        .when(failWith(TIMEOUT, 'a', 1))
        .then([failure('a', 1, 1, TIMEOUT, null), deadLettered('a', 1, 'attempts_exhausted', 1, TIMEOUT)]);
    });

    it('given a session an operator paused while the step ran, when its last attempt fails, then no second pause', () => {
      given([...lastRunning('pause'), pausedFor(null)])
        .when(failWith(TIMEOUT, 'a', 3))
        .then([failure('a', 1, 3, TIMEOUT, null), deadLettered('a', 1, 'attempts_exhausted', 3, TIMEOUT)]);
    });
  });

  it('given a running first attempt, when it fails with SELECTOR_NOT_FOUND, then it is final at once as not_retryable', () => {
    given([...ownedUnder('pause'), started('r1', 1, 'a', 1)])
      .when(failWith(NO_SELECTOR, 'a', 1))
      .then([
        failure('a', 1, 1, NO_SELECTOR, null),
        deadLettered('a', 1, 'not_retryable', 1, NO_SELECTOR),
        pausedFor('a'),
      ]);
  });
});

describe('PauseSession', () => {
  it('given an open session, when an operator pauses it, then SessionPaused by the operator for no step', () => {
    given(ownedByR1)
      .when(pause())
      .then([pausedFor(null)]);
  });

  it('given a paused session, when it is paused again, then nothing happens', () => {
    given([...ownedByR1, pausedFor(null)])
      .when(pause())
      .thenNothingHappens();
  });

  it.each(only('closing', 'needs_attention', 'cancelled', 'closed'))(
    'given a %s session, when an operator pauses it, then ILLEGAL_TRANSITION',
    (_status, history) => {
      given(history).when(pause()).thenRejects('ILLEGAL_TRANSITION');
    },
  );
});

describe('a paused session', () => {
  const pausedByOperator: Given[] = [...ownedByR1, started('r1', 1, 'a', 1), pausedFor(null)];

  it('given a session an operator paused, when it is resumed, then SessionResumed with nothing to skip', () => {
    given(pausedByOperator)
      .when(resume())
      .then([resumed([])]);
  });

  it('given a session paused for a failed step, when it is resumed, then SessionResumed (past the step)', () => {
    given([
      ...ownedUnder('pause'),
      started('r1', 1, 'a', 1),
      failure('a', 1, 1, NO_SELECTOR, null),
      pausedFor('a'),
    ])
      .when(resume())
      .then([resumed([])]);
  });

  it('given a paused session, when its owner starts the next step, then SESSION_PAUSED', () => {
    given(pausedByOperator)
      .when(start('r1', 1, 'b'))
      .thenRejects('SESSION_PAUSED');
  });

  it('given a paused session, when its owner reports the step in hand started again, then nothing happens', () => {
    given(pausedByOperator)
      .when(start('r1', 1, 'a', 1))
      .thenNothingHappens();
  });

  it('given a paused session, when its owner completes the step in hand, then StepSucceeded', () => {
    given(pausedByOperator)
      .when(succeed('r1', 1, 'a'))
      .then([succeeded('r1', 1, 'a', 1)]);
  });

  it('given a paused session, when it is resumed, then the next step starts', () => {
    given([...pausedByOperator, resumed([])])
      .when(start('r1', 1, 'b'))
      .then([started('r1', 1, 'b', 2)]);
  });

  it('given a paused session, when a close is requested, then ILLEGAL_TRANSITION', () => {
    given(pausedByOperator).when(requestClose()).thenRejects('ILLEGAL_TRANSITION');
  });

  it('given a paused session, when its owner reports it idle, then SessionExpired', () => {
    given(pausedByOperator)
      .when(expire('r1', 1))
      .then([expired('r1', 1)]);
  });

  it('given a paused session, when an operator cancels it, then SessionCancelled', () => {
    given(pausedByOperator).when(cancel()).then([cancelled()]);
  });

  it('given a paused session, when steps are submitted, then they are queued for after the resume', () => {
    given(pausedByOperator)
      .when(submit(['c']))
      .then([{ type: 'StepSubmitted', data: { stepId: 'c', seq: 3, step: click('#c') } }]);
  });
});

describe('RetryStep', () => {
  const failedForGood = (policy: StepFailurePolicy): Given[] => [
    ...ownedUnder(policy),
    ...attemptsFailed(3, true),
    deadLettered('a', 1, 'attempts_exhausted', 3, TIMEOUT),
  ];

  it('given a step failed for good in an open session, when an operator retries it, then StepRetried', () => {
    given(failedForGood('continue'))
      .when(retryStep('a'))
      .then([retried('a', 1)]);
  });

  it('given a session paused for the step, when an operator retries it, then StepRetried and SessionResumed', () => {
    given([...failedForGood('pause'), pausedFor('a')])
      .when(retryStep('a'))
      .then([retried('a', 1), resumed([])]);
  });

  it('given a session an operator paused, when a failed step is retried, then StepRetried alone: it stays paused', () => {
    given([...failedForGood('continue'), pausedFor(null)])
      .when(retryStep('a'))
      .then([retried('a', 1)]);
  });

  it.each([
    ['queued', [] as SessionEvent[]],
    ['running', [started('r1', 1, 'a', 1)]],
    ['retrying', attemptsFailed(1)],
    ['succeeded', [started('r1', 1, 'a', 1), succeeded('r1', 1, 'a', 1)]],
  ])('given a %s step, when an operator retries it, then ILLEGAL_TRANSITION', (_status, events) => {
    given([...ownedUnder('pause'), ...events])
      .when(retryStep('a'))
      .thenRejects('ILLEGAL_TRANSITION');
  });

  it('given a session, when an operator retries an unknown step, then STEP_NOT_FOUND', () => {
    given(ownedByR1).when(retryStep('nope')).thenRejects('STEP_NOT_FOUND');
  });

  it('given a failed session, when an operator retries its failed step, then ILLEGAL_TRANSITION', () => {
    given([...failedForGood('fail'), { type: 'SessionFailed', data: { stepId: 'a', error: TIMEOUT } }])
      .when(retryStep('a'))
      .thenRejects('ILLEGAL_TRANSITION');
  });

  it('given a retried step, when it is retried again before it ran, then ILLEGAL_TRANSITION (it is queued)', () => {
    given([...failedForGood('continue'), retried('a', 1)])
      .when(retryStep('a'))
      .thenRejects('ILLEGAL_TRANSITION');
  });

  describe('after a retry, attempts count afresh', () => {
    const afterRetry: Given[] = [...failedForGood('continue'), retried('a', 1)];

    it('given a retried step, when its new message starts as delivery 1, then StepStarted attempt 4 (attempts only count up)', () => {
      given(afterRetry)
        .when(start('r1', 1, 'a', 1))
        .then([started('r1', 1, 'a', 1, 4)]);
    });

    it('given a retried step, when its first new attempt fails with a retryable code, then another is due', () => {
      const history = [...afterRetry, started('r1', 1, 'a', 1, 4)];
      const delay = retryInMsOf(history, failWith(TIMEOUT, 'a', 4));
      // The first attempt after the retry: the backoff starts again from initialMs.
      expect(delay).toBeGreaterThanOrEqual(900);
      expect(delay).toBeLessThanOrEqual(1_100);
    });

    it('given a retried step, when its third new attempt fails, then it is dead-lettered with 3 attempts', () => {
      const history: Given[] = [
        ...afterRetry,
        started('r1', 1, 'a', 1, 4),
        failure('a', 1, 4, TIMEOUT, 1_000),
        started('r1', 1, 'a', 1, 5),
        failure('a', 1, 5, TIMEOUT, 2_000),
        started('r1', 1, 'a', 1, 6),
      ];
      given(history)
        .when(failWith(TIMEOUT, 'a', 6))
        .then([failure('a', 1, 6, TIMEOUT, null), deadLettered('a', 1, 'attempts_exhausted', 3, TIMEOUT)]);
    });
  });
});

describe('DeadLetterStep', () => {
  const exhausted: StepError = {
    code: 'DELIVERY_EXHAUSTED',
    message: 'the step was delivered 15 times without a result',
  };
  const deliveryFailure = (attempt: number): SessionEvent => ({
    type: 'StepFailed',
    data: {
      ...ref('r1', 1, 'a', 1, attempt),
      error: exhausted,
      durationMs: 0,
      final: true,
      retryInMs: null,
    },
  });

  it('given a running step with no result, when the broker gives up on it, then final StepFailed DELIVERY_EXHAUSTED, StepDeadLettered max_deliveries and the pause', () => {
    given([...ownedUnder('pause'), ...attemptsFailed(1), started('r1', 1, 'a', 1, 2)])
      .when(deadLetter('a'))
      .then([deliveryFailure(2), deadLettered('a', 1, 'max_deliveries', 2, exhausted), pausedFor('a')]);
  });

  it('given the fail policy, when the broker gives up on a step, then the session fails', () => {
    given([...ownedUnder('fail'), started('r1', 1, 'a', 1)])
      .when(deadLetter('a'))
      .then([
        deliveryFailure(1),
        deadLettered('a', 1, 'max_deliveries', 1, exhausted),
        { type: 'SessionFailed', data: { stepId: 'a', error: exhausted } },
      ]);
  });

  it('given the continue policy, when the broker gives up on a step, then only the failure and the dead letter', () => {
    given([...ownedUnder('continue'), started('r1', 1, 'a', 1)])
      .when(deadLetter('a'))
      .then([deliveryFailure(1), deadLettered('a', 1, 'max_deliveries', 1, exhausted)]);
  });

  it.each([
    ['succeeded', [started('r1', 1, 'a', 1), succeeded('r1', 1, 'a', 1)]],
    ['failed for good', attemptsFailed(3, true)],
  ])(
    'given a %s step, when the broker gives up on it, then nothing happens (the result is in)',
    (_s, events) => {
      given([...ownedUnder('pause'), ...events])
        .when(deadLetter('a'))
        .thenNothingHappens();
    },
  );

  it('given a cancelled session, when the broker gives up on its step, then nothing happens', () => {
    given([...ownedUnder('pause'), started('r1', 1, 'a', 1), cancelled()])
      .when(deadLetter('a'))
      .thenNothingHappens();
  });

  it('given a session, when the broker gives up on an unknown step, then STEP_NOT_FOUND', () => {
    given(ownedByR1).when(deadLetter('nope')).thenRejects('STEP_NOT_FOUND');
  });
});

describe('ReportWaiting', () => {
  it('given the owner, when it holds the next step for an unavailable origin, then SessionWaiting', () => {
    given(ownedByR1).when(reportWaiting('r1', 1)).then([waiting()]);
  });

  it('given a waiting session, when the same wait is reported again, then nothing happens', () => {
    given([...ownedByR1, waiting()])
      .when(reportWaiting('r1', 1))
      .thenNothingHappens();
  });

  it('given a waiting session, when the wait moves to another origin, then SessionWaiting again', () => {
    given([...ownedByR1, waiting()])
      .when(reportWaiting('r1', 1, 'a', 'https://other.example'))
      .then([waiting('a', 'https://other.example')]);
  });

  it('given a wait that a started step ended, when the same wait is reported, then SessionWaiting again', () => {
    given([...ownedByR1, waiting(), started('r1', 1, 'a', 1)])
      .when(reportWaiting('r1', 1))
      .then([waiting()]);
  });

  it('given r2 took the session over, when r1 reports a wait at its old epoch, then STALE_EPOCH', () => {
    given([...ownedByR1, claimed('r2', 2, 'r1')])
      .when(reportWaiting('r1', 1))
      .thenRejects('STALE_EPOCH');
  });

  it('given a session nobody claimed, when a robot reports a wait, then STALE_EPOCH', () => {
    given(openWithSteps).when(reportWaiting('r1', 1)).thenRejects('STALE_EPOCH');
  });

  it.each(only('cancelled', 'closed', 'needs_attention'))(
    'given a %s session, when its owner reports a wait, then nothing happens',
    (_status, history) => {
      given(history).when(reportWaiting('r1', 1)).thenNothingHappens();
    },
  );
});

describe('a failed session', () => {
  const failedSession: Given[] = [
    ...ownedUnder('fail'),
    started('r1', 1, 'a', 1),
    failure('a', 1, 1, NO_SELECTOR, null),
    deadLettered('a', 1, 'not_retryable', 1, NO_SELECTOR),
    { type: 'SessionFailed', data: { stepId: 'a', error: NO_SELECTOR } },
  ];

  it('given a failed session, when an operator cancels it, then ILLEGAL_TRANSITION', () => {
    given(failedSession).when(cancel()).thenRejects('ILLEGAL_TRANSITION');
  });

  it.each([
    ['claims it', claim('r2')],
    ['pauses it', pause()],
    ['resumes it', resume()],
  ] as const)('given a failed session, when someone %s, then ILLEGAL_TRANSITION', (_what, command) => {
    given(failedSession).when(command).thenRejects('ILLEGAL_TRANSITION');
  });

  it('given a failed session, when its owner starts the next step, then ILLEGAL_TRANSITION', () => {
    given(failedSession)
      .when(start('r1', 1, 'b'))
      .thenRejects('ILLEGAL_TRANSITION');
  });

  it('given a failed session, when its owner reports it idle, then nothing happens', () => {
    given(failedSession).when(expire('r1', 1)).thenNothingHappens();
  });
});

describe('secrets used by a step', () => {
  const secretUsed = (name: string, stepId: string, attempt = 1): SessionEvent => ({
    type: 'SecretUsed',
    data: { name, stepId, attempt, replay: false, robotId: 'r1', epoch: 1 },
  });
  const usingSecrets = <T extends CompleteStep>(command: T, ...names: string[]): T => ({
    ...command,
    secretsUsed: names,
  });

  it('given a running step, when the owner reports success with the secrets it used, then StepSucceeded and one SecretUsed per name in one decision', () => {
    given([...ownedByR1, started('r1', 1, 'b', 2)])
      .when(usingSecrets(succeed('r1', 1, 'b'), 'login.user', 'login.password', 'login.user'))
      .then([succeeded('r1', 1, 'b', 2), secretUsed('login.user', 'b'), secretUsed('login.password', 'b')]);
  });

  it('given a running step, when a retryable failure names a secret, then StepFailed and SecretUsed of that attempt', () => {
    given([...ownedByR1, started('r1', 1, 'b', 2)])
      .when(usingSecrets(fail('r1', 1, 'b'), 'login.password'))
      .then([retryingFailure('r1', 1, 'b', 2), secretUsed('login.password', 'b')]);
  });

  it('given a running step, when a final failure names a secret, then SecretUsed is recorded before the dead letter', () => {
    given([...ownedUnder('continue'), started('r1', 1, 'a', 1)])
      .when(usingSecrets(failWith(NO_SELECTOR, 'a', 1), 'login.password'))
      .then([
        failure('a', 1, 1, NO_SELECTOR, null),
        {
          type: 'SecretUsed',
          data: { name: 'login.password', stepId: 'a', attempt: 1, replay: false, robotId: 'r1', epoch: 1 },
        },
        deadLettered('a', 1, 'not_retryable', 1, NO_SELECTOR),
      ]);
  });

  it('given a running step, when success with a checkpoint names a secret, then the use is between the result and the restore point', () => {
    given([...ownedByR1, started('r1', 1, 'b', 2)])
      .when(usingSecrets(succeedWithCheckpoint('r1', 1, 'b'), 'login.password'))
      .then([
        succeeded('r1', 1, 'b', 2),
        secretUsed('login.password', 'b'),
        {
          type: 'SessionCheckpointed',
          data: { afterStepSeq: 2, ...restorePoint, robotId: 'r1', epoch: 1 },
        },
      ]);
  });

  it('given a succeeded step, when its report with secrets is delivered again, then nothing happens (no second use)', () => {
    given([
      ...ownedByR1,
      started('r1', 1, 'a', 1),
      succeeded('r1', 1, 'a', 1),
      secretUsed('login.password', 'a'),
    ])
      .when(usingSecrets(succeed('r1', 1, 'a'), 'login.password'))
      .thenNothingHappens();
  });

  const replayUse = (
    robotId: string,
    epoch: number,
    stepId: string,
    ...names: string[]
  ): RecordSecretUse => ({
    ...base(),
    type: 'RecordSecretUse',
    robotId,
    epoch,
    stepId,
    names,
  });

  it('given a succeeded step, when its new owner reports the secrets it typed replaying it, then SecretUsed marked as a replay', () => {
    given([...ownedByR1, started('r1', 1, 'a', 1), succeeded('r1', 1, 'a', 1), claimed('r2', 2, 'r1')])
      .when(replayUse('r2', 2, 'a', 'login.user', 'login.password', 'login.user'))
      .then([
        {
          type: 'SecretUsed',
          data: { name: 'login.user', stepId: 'a', attempt: 1, replay: true, robotId: 'r2', epoch: 2 },
        },
        {
          type: 'SecretUsed',
          data: { name: 'login.password', stepId: 'a', attempt: 1, replay: true, robotId: 'r2', epoch: 2 },
        },
      ]);
  });

  it('given a new owner, when the old one reports a replayed use, then STALE_EPOCH', () => {
    given([...ownedByR1, succeeded('r1', 1, 'a', 1), claimed('r2', 2, 'r1')])
      .when(replayUse('r1', 1, 'a', 'login.password'))
      .thenRejects('STALE_EPOCH');
  });

  it('given the owner, when it reports a replayed use for an unknown step, then STEP_NOT_FOUND', () => {
    given(ownedByR1)
      .when(replayUse('r1', 1, 'nope', 'pw'))
      .thenRejects('STEP_NOT_FOUND');
  });

  it('given SecretUsed in the history, then the state is as without it', () => {
    const history: Given[] = [...ownedByR1, started('r1', 1, 'a', 1), succeeded('r1', 1, 'a', 1)];
    expect(fold([...history, secretUsed('login.password', 'a')])).toEqual(fold(history));
  });
});
