import { describe, expect, it } from 'vitest';
import { decodeSessionEvent } from '../events/codec.js';
import type { SessionEvent, SessionEventMetadata } from '../events/sessionEvents.js';
import type { RecordedEvent } from '../eventStore/port.js';
import { DEFAULT_RETRY_POLICY } from '../steps/stepSpec.js';
import { evolve, FoldScope } from './evolve.js';
import { initialState, type SessionState } from './state.js';

type Meta = Pick<SessionEventMetadata, 'sessionId' | 'tenantId' | 'idempotencyKey' | 'requestHash'>;
const meta: Meta = { sessionId: 's1', tenantId: 't1' };

function given(events: Array<SessionEvent | [SessionEvent, Partial<Meta>]>): SessionState {
  return events.reduce<SessionState>((state, item) => {
    const [event, extra] = Array.isArray(item) ? item : [item, {}];
    return evolve(state, event, { ...meta, ...extra });
  }, initialState());
}

const opened: SessionEvent = {
  type: 'SessionOpened',
  data: {
    labels: {},
    browser: {},
    idleTimeoutMs: null,
    priority: 'normal',
    onStepFailure: 'continue',
    requires: {},
  },
};
const submitted = (stepId: string, seq: number): SessionEvent => ({
  type: 'StepSubmitted',
  data: { stepId, seq, step: { action: 'navigate', url: 'https://example.com/', replay: 'never' } },
});
const claimed = (robotId: string, epoch: number): SessionEvent => ({
  type: 'SessionClaimed',
  data: { robotId, epoch, previousRobotId: null },
});
const ref = (stepId: string, attempt: number) => ({ stepId, seq: 1, attempt, robotId: 'r1', epoch: 1 });
const started = (stepId: string, attempt = 1): SessionEvent => ({
  type: 'StepStarted',
  data: ref(stepId, attempt),
});
const succeeded = (stepId: string, attempt = 1): SessionEvent => ({
  type: 'StepSucceeded',
  data: { ...ref(stepId, attempt), output: { kind: 'none' }, durationMs: 5 },
});
const failed = (stepId: string, attempt = 1): SessionEvent => ({
  type: 'StepFailed',
  data: {
    ...ref(stepId, attempt),
    error: { code: 'INTERNAL', message: 'x' },
    durationMs: 5,
    final: true,
    retryInMs: null,
  },
});
const closeRequested: SessionEvent = { type: 'SessionCloseRequested', data: { reason: null } };
const closed: SessionEvent = { type: 'SessionClosed', data: { robotId: 'r1', epoch: 1 } };
const checkpointed = (afterStepSeq: number, stateKey = `s1.${afterStepSeq}.1`): SessionEvent => ({
  type: 'SessionCheckpointed',
  data: { afterStepSeq, stateKey, url: 'https://example.com/', trigger: 'document', robotId: 'r1', epoch: 1 },
});
const recovered: SessionEvent = {
  type: 'SessionRecovered',
  data: {
    fromCheckpoint: { afterStepSeq: 1, stateKey: 's1.1.1' },
    replayedSteps: 2,
    skippedSteps: 0,
    durationMs: 900,
    robotId: 'r2',
    epoch: 2,
  },
};
const needsAttention = (stepIds: string[] = ['a']): SessionEvent => ({
  type: 'SessionNeedsAttention',
  data: { code: 'UNSAFE_REPLAY', reason: 'a must not run twice', stepIds, robotId: 'r1', epoch: 1 },
});
const resumed = (skipReplay: string[] = ['a']): SessionEvent => ({
  type: 'SessionResumed',
  data: { skipReplay },
});
const cancelled: SessionEvent = { type: 'SessionCancelled', data: { reason: 'operator' } };
const expired: SessionEvent = {
  type: 'SessionExpired',
  data: { reason: 'idle', idleMs: 1_600, robotId: 'r1', epoch: 1 },
};

const retryingFailure = (stepId: string, attempt = 1, retryInMs = 1_000): SessionEvent => ({
  type: 'StepFailed',
  data: {
    ...ref(stepId, attempt),
    error: { code: 'TIMEOUT', message: 'x' },
    durationMs: 5,
    final: false,
    retryInMs,
  },
});
const deadLettered = (stepId: string, attempts = 3): SessionEvent => ({
  type: 'StepDeadLettered',
  data: {
    stepId,
    seq: 1,
    reason: 'attempts_exhausted',
    attempts,
    error: { code: 'TIMEOUT', message: 'x' },
  },
});
const retried = (stepId: string): SessionEvent => ({ type: 'StepRetried', data: { stepId, seq: 1 } });
const paused = (): SessionEvent => ({ type: 'SessionPaused', data: { reason: 'operator', stepId: null } });
const pausedFor = (stepId: string): SessionEvent => ({
  type: 'SessionPaused',
  data: { reason: 'step_failed', stepId },
});
const sessionFailed = (stepId: string): SessionEvent => ({
  type: 'SessionFailed',
  data: { stepId, error: { code: 'TIMEOUT', message: 'x' } },
});
const waiting = (stepId: string, origin = 'https://example.com'): SessionEvent => ({
  type: 'SessionWaiting',
  data: { reason: 'ORIGIN_UNAVAILABLE', origin, stepId, robotId: 'r1', epoch: 1 },
});

describe('evolve', () => {
  it('SessionOpened starts an open session owned by the tenant in the metadata', () => {
    expect(given([[opened, { idempotencyKey: 'k', requestHash: 'h' }]])).toEqual({
      status: 'open',
      sessionId: 's1',
      tenantId: 't1',
      browser: opened.data.browser,
      idleTimeoutMs: null,
      priority: 'normal',
      onStepFailure: 'continue',
      requires: {},
      waiting: null,
      epoch: 0,
      owner: null,
      lastSeq: 0,
      steps: {},
      order: [],
      submissions: {},
      openedWith: { idempotencyKey: 'k', requestHash: 'h' },
      checkpoint: null,
      replaySkips: [],
    });
  });

  it('a second SessionOpened is ignored', () => {
    const state = given([opened, submitted('a', 1)]);
    expect(evolve(state, opened, { ...meta, tenantId: 'other' })).toBe(state);
  });

  it('SessionOpened without metadata cannot name a tenant, so it is ignored', () => {
    expect(evolve(initialState(), opened)).toEqual({ status: 'none' });
  });

  it('StepSubmitted queues the step, records its order, replay policy and the highest seq', () => {
    const state = given([opened, submitted('a', 1), submitted('b', 2)]);
    expect(state).toMatchObject({
      lastSeq: 2,
      order: ['a', 'b'],
      steps: {
        a: { stepId: 'a', seq: 1, action: 'navigate', replay: 'never', status: 'queued', attempts: 0 },
      },
    });
  });

  it('StepSubmitted with an idempotency key records what the submission answered', () => {
    const keyed = { idempotencyKey: 'k1', requestHash: 'h1' };
    const state = given([opened, [submitted('a', 1), keyed], [submitted('b', 2), keyed], submitted('c', 3)]);
    expect(state.status !== 'none' && state.submissions).toEqual({
      k1: {
        requestHash: 'h1',
        steps: [
          { stepId: 'a', seq: 1 },
          { stepId: 'b', seq: 2 },
        ],
      },
    });
  });

  it('a StepSubmitted for a known step id is ignored', () => {
    const state = given([opened, submitted('a', 1)]);
    expect(evolve(state, submitted('a', 7), meta)).toBe(state);
  });

  it('SessionClaimed moves the epoch and the owner forward', () => {
    expect(given([opened, claimed('r1', 1), claimed('r2', 2)])).toMatchObject({
      epoch: 2,
      owner: { robotId: 'r2', epoch: 2 },
    });
  });

  it('a SessionClaimed with an older or equal epoch is ignored', () => {
    const state = given([opened, claimed('r2', 2)]);
    expect(evolve(state, claimed('r1', 1), meta)).toBe(state);
    expect(evolve(state, claimed('r3', 2), meta)).toBe(state);
  });

  it('StepStarted marks the step running and keeps the highest attempt', () => {
    const state = given([opened, submitted('a', 1), started('a', 2), started('a', 1)]);
    expect(state.status !== 'none' && state.steps.a).toMatchObject({ status: 'running', attempts: 2 });
  });

  it('StepSucceeded and StepFailed finish the step', () => {
    const state = given([opened, submitted('a', 1), submitted('b', 2), succeeded('a'), failed('b', 3)]);
    expect(state.status !== 'none' && [state.steps.a, state.steps.b]).toMatchObject([
      { status: 'succeeded', attempts: 1 },
      { status: 'failed', attempts: 3 },
    ]);
  });

  it('step events for an unknown step are ignored', () => {
    const state = given([opened, submitted('a', 1)]);
    for (const event of [started('nope'), succeeded('nope'), failed('nope')])
      expect(evolve(state, event, meta)).toBe(state);
  });

  it('SessionCloseRequested closes an open session only', () => {
    expect(given([opened, closeRequested]).status).toBe('closing');
    const done = given([opened, closeRequested, claimed('r1', 1), closed]);
    expect(evolve(done, closeRequested, meta)).toBe(done);
  });

  it('SessionClosed closes and keeps the last owner; a second one is ignored', () => {
    const state = given([opened, claimed('r1', 1), closeRequested, closed]);
    expect(state).toMatchObject({ status: 'closed', owner: { robotId: 'r1', epoch: 1 } });
    expect(evolve(state, closed, meta)).toBe(state);
  });

  const everyEvent: SessionEvent[] = [
    opened,
    submitted('a', 1),
    claimed('r1', 1),
    started('a'),
    succeeded('a'),
    failed('a'),
    checkpointed(1),
    recovered,
    needsAttention(),
    resumed(),
    cancelled,
    closeRequested,
    closed,
    retryingFailure('a'),
    deadLettered('a'),
    retried('a'),
    paused(),
    pausedFor('a'),
    sessionFailed('a'),
    waiting('a'),
    expired,
  ];
  const everyStatus: Record<string, SessionState> = {
    none: initialState(),
    open: given([opened]),
    closing: given([opened, closeRequested]),
    needs_attention: given([opened, needsAttention()]),
    cancelled: given([opened, cancelled]),
    closed: given([opened, closeRequested, closed]),
    paused: given([opened, paused()]),
    failed: given([opened, sessionFailed('a')]),
    expired: given([opened, expired]),
  };

  it.each(Object.entries(everyStatus))(
    'never throws: every event folds onto a %s session',
    (_status, state) => {
      for (const event of everyEvent) {
        expect(() => evolve(state, event, meta)).not.toThrow();
        expect(() => evolve(state, event)).not.toThrow();
      }
    },
  );

  it('events before SessionOpened leave an empty state empty', () => {
    for (const event of everyEvent.slice(1))
      expect(evolve(initialState(), event, meta)).toEqual({ status: 'none' });
  });

  describe('restore points, attention, resume and cancellation', () => {
    it('SessionCheckpointed keeps only the newest restore point', () => {
      const state = given([opened, submitted('a', 1), checkpointed(3), checkpointed(1)]);
      expect(state).toMatchObject({ checkpoint: { afterStepSeq: 3, stateKey: 's1.3.1' } });
      expect(evolve(state, checkpointed(5), meta)).toMatchObject({
        checkpoint: { afterStepSeq: 5, stateKey: 's1.5.1', url: 'https://example.com/' },
      });
    });

    it('a SessionCheckpointed at the same step replaces the point (a new owner took it again)', () => {
      const state = given([opened, checkpointed(3), checkpointed(3, 's1.3.2')]);
      expect(state).toMatchObject({ checkpoint: { afterStepSeq: 3, stateKey: 's1.3.2' } });
    });

    it('the restore point holds no trigger or owner: only what recovery needs', () => {
      const state = given([opened, checkpointed(2)]);
      expect(state.status !== 'none' && state.checkpoint).toEqual({
        afterStepSeq: 2,
        stateKey: 's1.2.1',
        url: 'https://example.com/',
      });
    });

    it('SessionRecovered leaves the state as it was', () => {
      const state = given([opened, claimed('r2', 2), checkpointed(1)]);
      expect(evolve(state, recovered, meta)).toBe(state);
    });

    it('SessionNeedsAttention records why, which steps, and the status to return to', () => {
      expect(given([opened, needsAttention(['a', 'b'])])).toMatchObject({
        status: 'needs_attention',
        attention: {
          code: 'UNSAFE_REPLAY',
          reason: 'a must not run twice',
          stepIds: ['a', 'b'],
          resumeTo: 'open',
        },
      });
      expect(given([opened, closeRequested, needsAttention()])).toMatchObject({
        status: 'needs_attention',
        attention: { resumeTo: 'closing' },
      });
    });

    it('SessionResumed restores the status it interrupted and drops the attention', () => {
      const open = given([opened, needsAttention(), resumed()]);
      expect(open.status).toBe('open');
      expect(open).not.toHaveProperty('attention');
      expect(given([opened, closeRequested, needsAttention(), resumed()]).status).toBe('closing');
    });

    it('SessionResumed accumulates the steps recovery may skip, each once', () => {
      const state = given([
        opened,
        needsAttention(['a']),
        resumed(['a']),
        needsAttention(['b']),
        resumed(['b', 'a']),
      ]);
      expect(state).toMatchObject({ status: 'open', replaySkips: ['a', 'b'] });
    });

    it('SessionCancelled ends the session, drops the attention and keeps the owner', () => {
      const state = given([opened, claimed('r1', 1), needsAttention(), cancelled]);
      expect(state).toMatchObject({ status: 'cancelled', owner: { robotId: 'r1', epoch: 1 } });
      expect(state).not.toHaveProperty('attention');
      expect(given([opened, closeRequested, cancelled]).status).toBe('cancelled');
    });

    it('SessionClosed drops the attention', () => {
      const state = given([opened, needsAttention(), closed]);
      expect(state.status).toBe('closed');
      expect(state).not.toHaveProperty('attention');
    });

    // Each new event on a state it does not apply to returns that very state: a replay of any stream goes on.
    const noOps: Array<[string, SessionEvent, SessionState]> = [
      [
        'SessionNeedsAttention on a session that needs attention',
        needsAttention(['z']),
        everyStatus.needs_attention!,
      ],
      ['SessionNeedsAttention on a cancelled session', needsAttention(), everyStatus.cancelled!],
      ['SessionNeedsAttention on a closed session', needsAttention(), everyStatus.closed!],
      ['SessionResumed on an open session', resumed(), everyStatus.open!],
      ['SessionResumed on a closing session', resumed(), everyStatus.closing!],
      ['SessionResumed on a cancelled session', resumed(), everyStatus.cancelled!],
      ['SessionResumed on a closed session', resumed(), everyStatus.closed!],
      ['SessionCancelled on a cancelled session', cancelled, everyStatus.cancelled!],
      ['SessionCancelled on a closed session', cancelled, everyStatus.closed!],
      ['SessionClosed on a cancelled session', closed, everyStatus.cancelled!],
      [
        'SessionCloseRequested on a session that needs attention',
        closeRequested,
        everyStatus.needs_attention!,
      ],
      ['SessionCloseRequested on a cancelled session', closeRequested, everyStatus.cancelled!],
      ['SessionRecovered on an open session', recovered, everyStatus.open!],
    ];
    it.each(noOps)('%s changes nothing', (_case, event, state) => {
      expect(evolve(state, event, meta)).toBe(state);
      expect(evolve(state, event)).toBe(state);
    });
  });

  it('a recorded history, as stored, decodes and folds to the same state it did when written', () => {
    // Stored payloads are kept verbatim here so that a schema change that cannot read them fails this test.
    const stored = [
      [
        'SessionOpened',
        {
          labels: { team: 'ops' },
          browser: { locale: 'de-DE' },
          idleTimeoutMs: 60000,
          priority: 'normal',
          onStepFailure: 'continue',
          requires: {},
        },
      ],
      ['StepSubmitted', { stepId: 'a', seq: 1, step: { action: 'navigate', url: 'https://example.com/' } }],
      ['StepSubmitted', { stepId: 'b', seq: 2, step: { action: 'click', selector: '#go', replay: 'never' } }],
      ['SessionClaimed', { robotId: 'r1', epoch: 1, previousRobotId: null }],
      ['StepStarted', { stepId: 'a', seq: 1, attempt: 1, robotId: 'r1', epoch: 1 }],
      [
        'StepSucceeded',
        {
          stepId: 'a',
          seq: 1,
          attempt: 1,
          robotId: 'r1',
          epoch: 1,
          durationMs: 120,
          output: { kind: 'navigation', url: 'https://example.com/', status: 200, title: 'Example' },
        },
      ],
      ['SessionCloseRequested', { reason: null }],
    ] as const;
    const recorded: RecordedEvent[] = stored.map(([type, data], revision) => ({
      eventId: `00000000-0000-4000-8000-00000000000${revision}`,
      type,
      data,
      metadata: {
        schemaVersion: 1,
        tenantId: 't1',
        sessionId: 's1',
        occurredAt: '2026-01-01T00:00:00.000Z',
        commandId: `c${revision}`,
        commandType: 'Recorded',
        actor: { kind: 'system', id: 'test' },
      },
      streamId: 'session-s1',
      revision,
      position: revision + 1,
      recordedAt: '2026-01-01T00:00:00.000Z',
    }));
    const state = recorded
      .map((r) => decodeSessionEvent(r))
      .reduce<SessionState>((s, r) => (r ? evolve(s, r.event, r.metadata) : s), initialState());
    expect(state).toMatchObject({
      status: 'closing',
      tenantId: 't1',
      epoch: 1,
      owner: { robotId: 'r1', epoch: 1 },
      lastSeq: 2,
      order: ['a', 'b'],
      steps: {
        a: { status: 'succeeded', attempts: 1, replay: 'safe' },
        b: { status: 'queued', attempts: 0, replay: 'never' },
      },
    });
  });
});

describe('evolve: expiry', () => {
  it('given a session opened with an idle timeout, then the state holds it', () => {
    const withTimeout: SessionEvent = {
      type: 'SessionOpened',
      data: {
        labels: {},
        browser: {},
        idleTimeoutMs: 1_500,
        priority: 'normal',
        onStepFailure: 'continue',
        requires: {},
      },
    };
    expect(given([withTimeout])).toMatchObject({ status: 'open', idleTimeoutMs: 1_500 });
  });

  it.each([
    ['open', [opened, claimed('r1', 1)]],
    ['closing', [opened, claimed('r1', 1), closeRequested]],
  ] as const)(
    'given a %s session, when SessionExpired, then it is expired and keeps its owner',
    (_s, history) => {
      expect(given([...history, expired])).toMatchObject({
        status: 'expired',
        owner: { robotId: 'r1', epoch: 1 },
      });
    },
  );

  it.each([
    ['closed', [opened, claimed('r1', 1), closeRequested, closed]],
    ['cancelled', [opened, claimed('r1', 1), cancelled]],
    ['needs_attention', [opened, claimed('r1', 1), needsAttention()]],
  ] as const)('given a %s session, when SessionExpired, then nothing changes', (_s, history) => {
    const state = given([...history]);
    expect(evolve(state, expired, meta)).toBe(state);
  });

  it('given an expired session, when SessionClosed or SessionCancelled arrive late, then it stays expired', () => {
    const state = given([opened, claimed('r1', 1), expired]);
    expect(evolve(evolve(state, closed, meta), cancelled, meta)).toBe(state);
  });
});

describe('evolve: retries, dead letters, pauses, failures and waits', () => {
  const withStep = (...events: SessionEvent[]) =>
    given([opened, submitted('a', 1), claimed('r1', 1), ...events]);
  const stepA = (state: SessionState) => (state.status === 'none' ? undefined : state.steps.a);

  it('SessionOpened keeps the priority, failure policy and requirements', () => {
    const state = given([
      {
        ...opened,
        data: { ...opened.data, priority: 'high', onStepFailure: 'fail', requires: { gpu: 'yes' } },
      },
    ]);
    expect(state).toMatchObject({
      priority: 'high',
      onStepFailure: 'fail',
      requires: { gpu: 'yes' },
      waiting: null,
    });
  });

  it('StepSubmitted keeps the step retry policy, or the default, and no retry yet', () => {
    const retry = { maxAttempts: 5, backoff: 'fixed', initialMs: 200, maxMs: 200 } as const;
    const state = given([
      opened,
      submitted('a', 1),
      { type: 'StepSubmitted', data: { stepId: 'b', seq: 2, step: { action: 'checkpoint', retry } } },
    ]);
    expect(state.status !== 'none' && [state.steps.a, state.steps.b]).toMatchObject([
      { retry: DEFAULT_RETRY_POLICY, retriedAt: 0 },
      { retry, retriedAt: 0 },
    ]);
  });

  it('a StepFailed that is not final leaves the step retrying, then StepStarted runs it again', () => {
    const retrying = withStep(started('a', 1), retryingFailure('a', 1));
    expect(stepA(retrying)).toMatchObject({ status: 'retrying', attempts: 1 });
    expect(stepA(evolve(retrying, started('a', 2), meta))).toMatchObject({ status: 'running', attempts: 2 });
    expect(stepA(evolve(retrying, succeeded('a', 2), meta))).toMatchObject({
      status: 'succeeded',
      attempts: 2,
    });
  });

  it('a final StepFailed fails the step for good: nothing after it rewrites it', () => {
    const state = withStep(started('a', 1), failed('a', 1));
    expect(stepA(state)).toMatchObject({ status: 'failed' });
    for (const late of [started('a', 2), succeeded('a', 2), retryingFailure('a', 2)])
      expect(evolve(state, late, meta)).toBe(state);
  });

  it('StepDeadLettered leaves the state as it was (the final StepFailed already failed the step)', () => {
    const state = withStep(started('a', 3), failed('a', 3));
    expect(evolve(state, deadLettered('a'), meta)).toBe(state);
  });

  it('StepRetried queues a failed step again and remembers how many attempts it had then', () => {
    const state = withStep(started('a', 3), failed('a', 3), retried('a'));
    expect(stepA(state)).toMatchObject({ status: 'queued', attempts: 3, retriedAt: 3 });
  });

  it('StepRetried of a step that is not failed is ignored', () => {
    for (const history of [[], [started('a', 1)], [started('a', 1), retryingFailure('a', 1)]]) {
      const state = withStep(...history);
      expect(evolve(state, retried('a'), meta)).toBe(state);
    }
  });

  it('SessionPaused pauses an open session with its reason and step; only an open one', () => {
    expect(withStep(paused())).toMatchObject({
      status: 'paused',
      pause: { reason: 'operator', stepId: null },
    });
    expect(withStep(pausedFor('a'))).toMatchObject({
      status: 'paused',
      pause: { reason: 'step_failed', stepId: 'a' },
    });
    const closing = withStep(closeRequested);
    expect(evolve(closing, paused(), meta)).toBe(closing);
    const pausedOnce = withStep(paused());
    expect(evolve(pausedOnce, pausedFor('a'), meta)).toBe(pausedOnce);
  });

  it('SessionResumed opens a paused session and drops the pause; nothing is skipped', () => {
    const state = withStep(pausedFor('a'), resumed([]));
    expect(state).toMatchObject({ status: 'open', replaySkips: [] });
    expect(state).not.toHaveProperty('pause');
  });

  it.each([
    ['open', []],
    ['paused', [paused()]],
    ['closing', [closeRequested]],
    ['needs_attention', [needsAttention()]],
  ] as const)('SessionFailed fails a %s session for good and drops what its status held', (_s, history) => {
    const state = withStep(waiting('a'), ...history, sessionFailed('a'));
    expect(state).toMatchObject({ status: 'failed', waiting: null, owner: { robotId: 'r1', epoch: 1 } });
    expect(state).not.toHaveProperty('pause');
    expect(state).not.toHaveProperty('attention');
  });

  it.each([
    ['closed', [closeRequested, closed]],
    ['cancelled', [cancelled]],
    ['expired', [expired]],
    ['failed', [sessionFailed('a')]],
  ] as const)('given a %s session, when SessionFailed, then nothing changes', (_s, history) => {
    const state = withStep(...history);
    expect(evolve(state, sessionFailed('a'), meta)).toBe(state);
  });

  it('SessionWaiting records the wait; the next StepStarted ends it', () => {
    const state = withStep(waiting('a'));
    expect(state).toMatchObject({
      waiting: { reason: 'ORIGIN_UNAVAILABLE', origin: 'https://example.com', stepId: 'a' },
    });
    expect(evolve(state, started('a'), meta)).toMatchObject({ waiting: null });
  });

  it('SessionWaiting on a session that is over is ignored', () => {
    const state = withStep(cancelled);
    expect(evolve(state, waiting('a'), meta)).toBe(state);
  });

  it.each([
    ['cancelled', cancelled],
    ['expired', expired],
    ['closed', closed],
  ] as const)('a paused session ends %s without its pause or wait', (status, end) => {
    const state = withStep(waiting('a'), paused(), end);
    expect(state).toMatchObject({ status, waiting: null });
    expect(state).not.toHaveProperty('pause');
  });
});

describe('evolve within a fold scope', () => {
  const stream: Array<[SessionEvent, Partial<Meta>]> = [
    [opened, {}],
    [submitted('a', 1), { idempotencyKey: 'k1', requestHash: 'h1' }],
    [submitted('b', 2), { idempotencyKey: 'k1', requestHash: 'h1' }],
    [claimed('r1', 1), {}],
    [started('a'), {}],
    [succeeded('a'), {}],
    [submitted('c', 3), {}],
    [started('b'), {}],
    [failed('b'), {}],
  ];

  it('folds to exactly the state that evolving event by event gives', () => {
    const scope = new FoldScope();
    const scoped = stream.reduce<SessionState>(
      (state, [event, extra]) => evolve(state, event, { ...meta, ...extra }, undefined, scope),
      initialState(),
    );
    expect(scoped).toEqual(given(stream));
  });

  it('never changes a state handed in from outside the scope, only its own copies', () => {
    const base = given(stream.slice(0, 4));
    const before = structuredClone(base);
    const scope = new FoldScope();
    let state = base;
    for (const [event, extra] of stream.slice(4))
      state = evolve(state, event, { ...meta, ...extra }, undefined, scope);
    expect(base).toEqual(before);
    if (state.status === 'none' || base.status === 'none') throw new Error('unexpected empty state');
    expect(state.steps).not.toBe(base.steps);
    expect(state.order).not.toBe(base.order);
    expect(Object.keys(state.steps)).toEqual(['a', 'b', 'c']);
    // A state from before the fold, evolved again without the scope, is unaffected by what the fold did.
    expect(Object.keys(base.steps)).toEqual(['a', 'b']);
  });
});
