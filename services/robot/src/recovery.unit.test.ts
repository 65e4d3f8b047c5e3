import { describe, expect, it } from 'vitest';
import { evolve, initialState, type SessionEvent, type StepSpec } from '@rpa/shared';
import { isTakeOver, planRecovery, stepsToRead, type ExistingSession } from './recovery.js';

const URL = 'https://shop.example/';

/** A session folded from its events, as the robot loads it. */
function given(events: SessionEvent[]): ExistingSession {
  const state = events.reduce((s, e) => evolve(s, e, { sessionId: 's1', tenantId: 't1' }), initialState());
  if (state.status === 'none') throw new TypeError('no session');
  return state;
}

const ROBOT = { robotId: 'r1', epoch: 1 };
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
const claimed: SessionEvent = { type: 'SessionClaimed', data: { ...ROBOT, previousRobotId: null } };

/** Steps in submission order: id and spec. */
function session(steps: Array<[string, StepSpec]>) {
  const specs = new Map(steps);
  const seqOf = (id: string) => steps.findIndex(([stepId]) => stepId === id) + 1;
  const ref = (stepId: string) => ({ stepId, seq: seqOf(stepId), attempt: 1, ...ROBOT });
  const submitted: SessionEvent[] = steps.map(([stepId, step], i) => ({
    type: 'StepSubmitted',
    data: { stepId, seq: i + 1, step },
  }));
  const ran = (...ids: string[]): SessionEvent[] =>
    ids.flatMap((stepId) => [
      { type: 'StepStarted', data: ref(stepId) },
      { type: 'StepSucceeded', data: { ...ref(stepId), output: { kind: 'none' }, durationMs: 1 } },
    ]);
  const failed = (stepId: string): SessionEvent[] => [
    { type: 'StepStarted', data: ref(stepId) },
    {
      type: 'StepFailed',
      data: {
        ...ref(stepId),
        error: { code: 'TIMEOUT', message: 'slow' },
        durationMs: 1,
        final: true,
        retryInMs: null,
      },
    },
  ];
  const cutOff = (stepId: string): SessionEvent[] => [{ type: 'StepStarted', data: ref(stepId) }];
  const checkpoint = (afterStepId: string): SessionEvent => ({
    type: 'SessionCheckpointed',
    data: {
      afterStepSeq: seqOf(afterStepId),
      stateKey: `s1.${seqOf(afterStepId)}.1`,
      url: URL,
      trigger: 'document',
      ...ROBOT,
    },
  });
  return { specs, base: [opened, ...submitted, claimed], ran, failed, cutOff, checkpoint };
}

const nav: StepSpec = { action: 'navigate', url: URL };
const add: StepSpec = { action: 'click', selector: '#add' };
const pay: StepSpec = { action: 'click', selector: '#pay', replay: 'never' };
const read: StepSpec = { action: 'extractText', selector: '#total' };

describe('recovery plan', () => {
  it('sees no take-over in a session where nothing ever started', () => {
    const { base } = session([['nav', nav]]);
    expect(isTakeOver(given(base))).toBe(false);
  });

  it('restores the newest restore point and replays only the page-changing successes after it', () => {
    const s = session([
      ['nav', nav],
      ['add1', add],
      ['nav2', nav],
      ['add2', add],
      ['read', read],
      ['broken', add],
      ['add3', add],
    ]);
    const state = given([
      ...s.base,
      ...s.ran('nav', 'add1', 'nav2'),
      s.checkpoint('nav2'),
      ...s.ran('add2', 'read'),
      ...s.failed('broken'),
      ...s.ran('add3'),
    ]);
    expect(isTakeOver(state)).toBe(true);
    expect(planRecovery(state, s.specs)).toEqual({
      kind: 'replay',
      from: { afterStepSeq: 3, stateKey: 's1.3.1', url: URL },
      credentials: [],
      tail: [
        { stepId: 'add2', seq: 4, step: add },
        { stepId: 'add3', seq: 7, step: add },
      ],
      skippedSteps: 0,
      interrupted: [],
    });
  });

  it('starts from a blank page and step 1 without a restore point', () => {
    const s = session([
      ['nav', nav],
      ['add', add],
    ]);
    const plan = planRecovery(given([...s.base, ...s.ran('nav', 'add')]), s.specs);
    expect(plan).toMatchObject({ kind: 'replay', from: null, tail: [{ stepId: 'nav' }, { stepId: 'add' }] });
  });

  it('asks for an operator when a step that must not run twice is in the tail', () => {
    const s = session([
      ['nav', nav],
      ['pay', pay],
      ['add', add],
    ]);
    const plan = planRecovery(
      given([...s.base, ...s.ran('nav'), s.checkpoint('nav'), ...s.ran('pay', 'add')]),
      s.specs,
    );
    expect(plan).toMatchObject({ kind: 'attention', code: 'UNSAFE_REPLAY', stepIds: ['pay'] });
    expect(plan.kind === 'attention' && plan.reason).toContain('pay');
  });

  it('does not replay an unsafe step the restore point already contains', () => {
    const s = session([
      ['nav', nav],
      ['pay', pay],
      ['add', add],
    ]);
    const plan = planRecovery(
      given([...s.base, ...s.ran('nav', 'pay'), s.checkpoint('pay'), ...s.ran('add')]),
      s.specs,
    );
    expect(plan).toMatchObject({ kind: 'replay', tail: [{ stepId: 'add' }] });
  });

  it('skips the steps an operator allowed to skip, and counts them', () => {
    const s = session([
      ['nav', nav],
      ['pay', pay],
      ['add', add],
    ]);
    const state = given([
      ...s.base,
      ...s.ran('nav'),
      s.checkpoint('nav'),
      ...s.ran('pay', 'add'),
      {
        type: 'SessionNeedsAttention',
        data: { code: 'UNSAFE_REPLAY', reason: 'x', stepIds: ['pay'], ...ROBOT },
      },
      { type: 'SessionResumed', data: { skipReplay: ['pay'] } },
    ]);
    expect(planRecovery(state, s.specs)).toMatchObject({
      kind: 'replay',
      tail: [{ stepId: 'add' }],
      skippedSteps: 1,
      interrupted: [],
    });
  });

  it('asks for an operator about an unsafe step cut off mid-run, and ends it as interrupted once allowed', () => {
    const s = session([
      ['nav', nav],
      ['pay', pay],
    ]);
    const events = [...s.base, ...s.ran('nav'), ...s.cutOff('pay')];
    expect(planRecovery(given(events), s.specs)).toMatchObject({
      kind: 'attention',
      code: 'UNCERTAIN_STEP',
      stepIds: ['pay'],
    });
    const resumed = given([
      ...events,
      {
        type: 'SessionNeedsAttention',
        data: { code: 'UNCERTAIN_STEP', reason: 'x', stepIds: ['pay'], ...ROBOT },
      },
      { type: 'SessionResumed', data: { skipReplay: ['pay'] } },
    ]);
    expect(planRecovery(resumed, s.specs)).toMatchObject({
      kind: 'replay',
      tail: [{ stepId: 'nav' }],
      interrupted: [{ stepId: 'pay', attempts: 1 }],
    });
  });

  it('lets a safe step cut off mid-run simply run again', () => {
    const s = session([
      ['nav', nav],
      ['add', add],
    ]);
    expect(planRecovery(given([...s.base, ...s.ran('nav'), ...s.cutOff('add')]), s.specs)).toMatchObject({
      kind: 'replay',
      tail: [{ stepId: 'nav' }],
      interrupted: [],
    });
  });

  it('falls back to step 1 when the restore point is gone, unless that would repeat an unsafe step', () => {
    const safe = session([
      ['nav', nav],
      ['add', add],
      ['add2', add],
    ]);
    const safeState = given([
      ...safe.base,
      ...safe.ran('nav', 'add'),
      safe.checkpoint('add'),
      ...safe.ran('add2'),
    ]);
    expect(planRecovery(safeState, safe.specs, { restorePointMissing: true })).toMatchObject({
      kind: 'replay',
      from: null,
      tail: [{ stepId: 'nav' }, { stepId: 'add' }, { stepId: 'add2' }],
    });

    const unsafe = session([
      ['nav', nav],
      ['pay', pay],
      ['add', add],
    ]);
    const unsafeState = given([
      ...unsafe.base,
      ...unsafe.ran('nav', 'pay'),
      unsafe.checkpoint('pay'),
      ...unsafe.ran('add'),
    ]);
    expect(planRecovery(unsafeState, unsafe.specs)).toMatchObject({
      kind: 'replay',
      tail: [{ stepId: 'add' }],
    });
    const plan = planRecovery(unsafeState, unsafe.specs, { restorePointMissing: true });
    expect(plan).toMatchObject({ kind: 'attention', code: 'REPLAY_FAILED', stepIds: ['pay'] });
    expect(plan.kind === 'attention' && plan.reason).toContain('s1.2.1');
  });

  it('needs the specs of just the steps it may replay: reading those plans the same as reading all', () => {
    const s = session([
      ['nav', nav],
      ['add1', add],
      ['nav2', nav],
      ['pay', pay],
      ['add2', add],
      ['read', read],
      ['add3', add],
    ]);
    const ran = [
      ...s.base,
      ...s.ran('nav', 'add1', 'nav2'),
      s.checkpoint('nav2'),
      ...s.ran('pay', 'add2', 'read'),
    ];
    const states = [
      given([...s.base, ...s.ran('nav', 'add1', 'nav2'), s.checkpoint('nav2'), ...s.ran('add2', 'read')]),
      given(ran),
      given([
        ...ran,
        {
          type: 'SessionNeedsAttention',
          data: { code: 'UNSAFE_REPLAY', reason: 'x', stepIds: ['pay'], ...ROBOT },
        },
        { type: 'SessionResumed', data: { skipReplay: ['pay'] } },
        ...s.ran('add3'),
      ]),
    ];
    for (const state of states) {
      for (const options of [{}, { restorePointMissing: true }]) {
        const needed = stepsToRead(state, options).map((step) => step.stepId);
        const only = new Map([...s.specs].filter(([stepId]) => needed.includes(stepId)));
        expect(planRecovery(state, only, options)).toEqual(planRecovery(state, s.specs, options));
      }
    }
    expect(stepsToRead(states[0]!).map((step) => step.stepId)).toEqual(['add2']);
    expect(stepsToRead(states[2]!).map((step) => step.stepId)).toEqual(['add2', 'add3']);
    expect(stepsToRead(states[2]!, { restorePointMissing: true }).map((step) => step.stepId)).toEqual([
      'nav',
      'add1',
      'nav2',
      'add2',
      'add3',
    ]);
  });

  it('sets again the headers and cookies of the navigate steps the restore point holds, in order, before the tail', () => {
    const login: StepSpec = {
      action: 'navigate',
      url: `${URL}login`,
      headers: { 'X-Api-Token': { secret: 'api.token' } },
      cookies: [{ name: 'session', secret: 'session.id' }],
    };
    const literal: StepSpec = { action: 'navigate', url: URL, headers: { 'X-Client': { value: 'rpa' } } };
    const later: StepSpec = { action: 'navigate', url: `${URL}later`, cookies: [{ name: 'b', secret: 'b' }] };
    const s = session([
      ['login', login],
      ['nav', nav],
      ['literal', literal],
      ['broken', login],
      ['add', add],
      ['later', later],
      ['add2', add],
    ]);
    const ran = [...s.base, ...s.ran('login', 'nav', 'literal'), ...s.failed('broken'), ...s.ran('add')];
    const state = given([...ran, s.checkpoint('add'), ...s.ran('later', 'add2')]);
    expect(state.steps.login?.setsCredentials).toBe(true);
    expect(state.steps.nav?.setsCredentials).toBeUndefined();
    const plan = planRecovery(state, s.specs);
    // A failed step set nothing for sure; one after the restore point sets its own when the tail replays it.
    expect(plan).toMatchObject({
      kind: 'replay',
      from: { afterStepSeq: 5 },
      credentials: [
        { stepId: 'login', seq: 1, step: login },
        { stepId: 'literal', seq: 3, step: literal },
      ],
      tail: [{ stepId: 'later' }, { stepId: 'add2' }],
    });
    // Only those steps' submissions are read besides the tail's, and they plan the same as all of them.
    const needed = stepsToRead(state).map((step) => step.stepId);
    expect(needed).toEqual(['login', 'literal', 'later', 'add2']);
    const only = new Map([...s.specs].filter(([stepId]) => needed.includes(stepId)));
    expect(planRecovery(state, only)).toEqual(plan);
    // Without the restore point, the tail starts at step 1 and sets them by running them.
    expect(planRecovery(state, s.specs, { restorePointMissing: true })).toMatchObject({
      kind: 'replay',
      from: null,
      credentials: [],
      tail: ['login', 'nav', 'literal', 'add', 'later', 'add2'].map((stepId) => ({ stepId })),
    });
    // A step whose submission cannot be read stops the recovery for an operator rather than lose them silently.
    const withoutLogin = new Map([...s.specs].filter(([stepId]) => stepId !== 'login'));
    expect(planRecovery(state, withoutLogin)).toMatchObject({
      kind: 'attention',
      code: 'REPLAY_FAILED',
      stepIds: ['login'],
    });
  });
});
