import type { JetStreamClient } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import {
  AssignmentMessage,
  ControlNotice,
  decodeMessage,
  SESSION_EVENT_TYPES,
  SessionWorkMessage,
  silentLogger,
  Topology,
  type RecordedSessionEvent,
  type SessionEvent,
  type SessionEventOf,
  type SessionEventType,
} from '@rpa/shared';
import { dispatchFor, StepDispatcher, type Dispatch, type DispatchKind } from './dispatcher.js';
import { parseTenantLimits, TenantGate } from './tenantGate.js';

const topology = new Topology('unit');
const SESSION = 'sess-1';
const TENANT = 'acme';
const OCCURRED_AT = '2025-01-01T10:00:00.000Z';
const robot = { robotId: 'robot-a', epoch: 1 };

let revision = -1;
/** A recorded event of the test session, with an event id derived from its revision. */
function recorded<K extends SessionEventType>(
  type: K,
  data: SessionEventOf<K>['data'],
): RecordedSessionEvent {
  revision++;
  return {
    event: { type, data } as SessionEvent,
    metadata: {
      schemaVersion: 1,
      tenantId: TENANT,
      sessionId: SESSION,
      occurredAt: OCCURRED_AT,
      commandId: `c${revision}`,
      commandType: 'Test',
      actor: { kind: 'system', id: 'test' },
    },
    eventId: `evt-${type}-${revision}`,
    streamId: `session-${SESSION}`,
    revision,
    position: revision + 1,
    recordedAt: OCCURRED_AT,
  };
}

/** One event of every type; the Record type makes a new event type without an example fail to compile. */
const examples: { [K in SessionEventType]: () => RecordedSessionEvent } = {
  SessionOpened: () =>
    recorded('SessionOpened', {
      labels: { team: 'billing' },
      browser: { locale: 'en-US' },
      idleTimeoutMs: 60_000,
      priority: 'normal',
      onStepFailure: 'continue',
      requires: {},
    }),
  StepSubmitted: () =>
    recorded('StepSubmitted', {
      stepId: 'a',
      seq: 1,
      step: { action: 'navigate', url: 'https://example.com/' },
    }),
  SessionClaimed: () => recorded('SessionClaimed', { ...robot, previousRobotId: null }),
  StepStarted: () => recorded('StepStarted', { stepId: 'a', seq: 1, attempt: 1, ...robot }),
  StepSucceeded: () =>
    recorded('StepSucceeded', {
      stepId: 'a',
      seq: 1,
      attempt: 1,
      output: { kind: 'none' },
      durationMs: 10,
      ...robot,
    }),
  StepFailed: () =>
    recorded('StepFailed', {
      stepId: 'a',
      seq: 1,
      attempt: 1,
      error: { code: 'SELECTOR_NOT_FOUND', message: 'no #a' },
      durationMs: 10,
      final: true,
      retryInMs: null,
      ...robot,
    }),
  SessionCheckpointed: () =>
    recorded('SessionCheckpointed', {
      afterStepSeq: 1,
      stateKey: topology.restorePointKey(SESSION, 1, 1),
      url: 'https://example.com/',
      trigger: 'document',
      ...robot,
    }),
  SessionRecovered: () =>
    recorded('SessionRecovered', {
      fromCheckpoint: null,
      replayedSteps: 1,
      skippedSteps: 0,
      durationMs: 300,
      ...robot,
    }),
  SessionNeedsAttention: () =>
    recorded('SessionNeedsAttention', {
      code: 'UNSAFE_REPLAY',
      reason: 'step a must not run twice',
      stepIds: ['a'],
      ...robot,
    }),
  SessionResumed: () => recorded('SessionResumed', { skipReplay: ['a'] }),
  SessionCancelled: () => recorded('SessionCancelled', { reason: 'not needed' }),
  SessionExpired: () => recorded('SessionExpired', { reason: 'idle', idleMs: 60_500, ...robot }),
  SessionCloseRequested: () => recorded('SessionCloseRequested', { reason: null }),
  SessionClosed: () => recorded('SessionClosed', { ...robot }),
  StepDeadLettered: () =>
    recorded('StepDeadLettered', {
      stepId: 'a',
      seq: 1,
      reason: 'attempts_exhausted',
      attempts: 3,
      error: { code: 'TIMEOUT', message: 'timed out' },
    }),
  SecretUsed: () =>
    recorded('SecretUsed', { name: 'login.password', stepId: 'a', attempt: 1, replay: false, ...robot }),
  StepRetried: () => recorded('StepRetried', { stepId: 'a', seq: 1 }),
  SessionPaused: () => recorded('SessionPaused', { reason: 'operator', stepId: null }),
  SessionFailed: () =>
    recorded('SessionFailed', { stepId: 'a', error: { code: 'TIMEOUT', message: 'timed out' } }),
  SessionWaiting: () =>
    recorded('SessionWaiting', {
      reason: 'ORIGIN_UNAVAILABLE',
      origin: 'https://example.com',
      stepId: 'a',
      ...robot,
    }),
};

/** A dispatch with its body decoded by the schema its subject promises. */
function decoded(dispatch: Dispatch) {
  const body =
    dispatch.kind === 'notice'
      ? decodeMessage(ControlNotice, dispatch.data)
      : dispatch.subject.startsWith(`${topology.prefix}.work.assign.`)
        ? decodeMessage(AssignmentMessage, dispatch.data)
        : decodeMessage(SessionWorkMessage, dispatch.data);
  return { kind: dispatch.kind, subject: dispatch.subject, msgID: dispatch.msgID, body };
}

const dispatchesOf = (e: RecordedSessionEvent) => dispatchFor(e, topology).map(decoded);

describe('dispatchFor', () => {
  it('when a session opens, then one assignment carries its labels, browser and open time, keyed by the event id', () => {
    const e = examples.SessionOpened();
    expect(dispatchesOf(e)).toEqual([
      {
        kind: 'assignment',
        subject: topology.assignSubject,
        msgID: e.eventId,
        body: {
          v: 1,
          sessionId: SESSION,
          tenantId: TENANT,
          reason: 'opened',
          labels: { team: 'billing' },
          browser: { locale: 'en-US' },
          openedAt: OCCURRED_AT,
          requires: {},
        },
      },
    ]);
  });

  it.each(['high', 'normal', 'low'] as const)(
    'when a %s-priority session opens, then its assignment goes to that priority’s subject with its requirements',
    (priority) => {
      const e = recorded('SessionOpened', {
        labels: {},
        browser: {},
        idleTimeoutMs: null,
        priority,
        onStepFailure: 'pause',
        requires: { region: 'eu' },
      } as SessionEventOf<'SessionOpened'>['data']);
      const [dispatch] = dispatchesOf(e);
      expect(dispatch?.subject).toBe(topology.assignSubjectFor(priority));
      expect(dispatch?.body).toMatchObject({ reason: 'opened', requires: { region: 'eu' } });
    },
  );

  it('when a step is retried, then a notice to its owner and a retry message (no spec) keyed by the event id', () => {
    const e = examples.StepRetried();
    expect(dispatchesOf(e)).toEqual([
      {
        kind: 'notice',
        subject: topology.controlSubject(SESSION),
        msgID: `${e.eventId}.notice`,
        body: { v: 1, sessionId: SESSION, tenantId: TENANT, event: 'StepRetried' },
      },
      {
        kind: 'step',
        subject: topology.stepsSubject(SESSION),
        msgID: e.eventId,
        body: { v: 1, kind: 'retry', sessionId: SESSION, tenantId: TENANT, stepId: 'a', seq: 1 },
      },
    ]);
  });

  it('when a session is paused, then only a notice on its control subject', () => {
    const e = examples.SessionPaused();
    expect(dispatchesOf(e)).toEqual([
      {
        kind: 'notice',
        subject: topology.controlSubject(SESSION),
        msgID: `${e.eventId}.notice`,
        body: { v: 1, sessionId: SESSION, tenantId: TENANT, event: 'SessionPaused' },
      },
    ]);
  });

  it('when a step is submitted, then one step message on the session subject carries the step, keyed by the event id', () => {
    const e = examples.StepSubmitted();
    expect(dispatchesOf(e)).toEqual([
      {
        kind: 'step',
        subject: topology.stepsSubject(SESSION),
        msgID: e.eventId,
        body: {
          v: 1,
          kind: 'step',
          sessionId: SESSION,
          tenantId: TENANT,
          stepId: 'a',
          seq: 1,
          step: { action: 'navigate', url: 'https://example.com/' },
        },
      },
    ]);
  });

  it('when close is requested, then one close message on the session subject, after the steps before it', () => {
    const e = examples.SessionCloseRequested();
    expect(dispatchesOf(e)).toEqual([
      {
        kind: 'close',
        subject: topology.stepsSubject(SESSION),
        msgID: e.eventId,
        body: { v: 1, kind: 'close', sessionId: SESSION, tenantId: TENANT },
      },
    ]);
  });

  it('when a session is resumed, then a notice and a high-priority assignment with reason resumed', () => {
    const e = examples.SessionResumed();
    expect(dispatchesOf(e)).toEqual([
      {
        kind: 'notice',
        subject: topology.controlSubject(SESSION),
        msgID: `${e.eventId}.notice`,
        body: { v: 1, sessionId: SESSION, tenantId: TENANT, event: 'SessionResumed' },
      },
      {
        kind: 'assignment',
        subject: topology.assignSubjectFor('high'),
        msgID: e.eventId,
        body: { v: 1, sessionId: SESSION, tenantId: TENANT, reason: 'resumed' },
      },
    ]);
  });

  it('when a session is cancelled, then a close for its owner and then an assignment for anyone, with distinct ids', () => {
    const e = examples.SessionCancelled();
    expect(dispatchesOf(e)).toEqual([
      {
        kind: 'notice',
        subject: topology.controlSubject(SESSION),
        msgID: `${e.eventId}.notice`,
        body: { v: 1, sessionId: SESSION, tenantId: TENANT, event: 'SessionCancelled' },
      },
      {
        kind: 'close',
        subject: topology.stepsSubject(SESSION),
        msgID: e.eventId,
        body: { v: 1, kind: 'close', sessionId: SESSION, tenantId: TENANT },
      },
      {
        kind: 'assignment',
        subject: topology.assignSubjectFor('high'),
        msgID: `${e.eventId}.assign`,
        body: { v: 1, sessionId: SESSION, tenantId: TENANT, reason: 'cancelled' },
      },
    ]);
  });

  it.each([
    'SessionClaimed',
    'StepStarted',
    'StepSucceeded',
    'StepFailed',
    'SessionCheckpointed',
    'SessionRecovered',
    'SessionNeedsAttention',
    'SessionExpired',
    'SessionClosed',
    'StepDeadLettered',
    'SessionFailed',
    'SessionWaiting',
    'SecretUsed',
  ] as const)('when %s is recorded, then there is no work to publish', (type) => {
    expect(dispatchFor(examples[type](), topology)).toEqual([]);
  });

  it('the same event always yields the same messages and ids, so a replay is deduplicated', () => {
    for (const type of SESSION_EVENT_TYPES) {
      const e = examples[type]();
      expect(dispatchesOf(e), type).toEqual(dispatchesOf(structuredClone(e)));
    }
  });

  it('no two messages of a session share an id: JetStream deduplicates by id across the whole work stream', () => {
    const ids = SESSION_EVENT_TYPES.flatMap((type) => dispatchFor(examples[type](), topology)).map(
      (d) => d.msgID,
    );
    expect(ids.length).toBe(11);
    expect(new Set(ids).size).toBe(ids.length);
  });
});

interface Published {
  subject: string;
  msgID: string | undefined;
}

/** A JetStream client that records publishes; `failOn` makes the n-th publish (from 0) fail once. */
function recordingJs(failOn: number | null = null) {
  const published: Published[] = [];
  let calls = 0;
  const js = {
    async publish(subject: string, _data: Uint8Array, options?: { msgID?: string }) {
      if (calls++ === failOn) throw new Error('no ack within the timeout');
      const duplicate = published.some((p) => p.msgID === options?.msgID);
      if (!duplicate) published.push({ subject, msgID: options?.msgID });
      return { stream: topology.workStream, seq: published.length, duplicate };
    },
  } as unknown as JetStreamClient;
  return { js, published };
}

describe('StepDispatcher', () => {
  it('publishes a cancelled session’s close before its assignment, each with its own id, and reports each', async () => {
    const { js, published } = recordingJs();
    const reported: Array<[DispatchKind, boolean]> = [];
    const dispatcher = new StepDispatcher({
      js,
      topology,
      logger: silentLogger,
      onPublished: (kind, duplicate) => reported.push([kind, duplicate]),
    });
    const e = examples.SessionCancelled();
    await dispatcher.handle(e);
    await dispatcher.handle(e);
    expect(published).toEqual([
      { subject: topology.stepsSubject(SESSION), msgID: e.eventId },
      { subject: topology.assignSubjectFor('high'), msgID: `${e.eventId}.assign` },
    ]);
    expect(reported).toEqual([
      ['close', false],
      ['assignment', false],
      ['close', true],
      ['assignment', true],
    ]);
  });

  it('stops at a failed publish, and handling the event again publishes what is missing and nothing twice', async () => {
    const { js, published } = recordingJs(1);
    const dispatcher = new StepDispatcher({ js, topology, logger: silentLogger });
    const e = examples.SessionCancelled();
    await expect(dispatcher.handle(e)).rejects.toThrow('no ack');
    expect(published.map((p) => p.msgID)).toEqual([e.eventId]);
    await dispatcher.handle(e);
    expect(published.map((p) => p.msgID)).toEqual([e.eventId, `${e.eventId}.assign`]);
  });

  it('publishes nothing for an event that carries no work', async () => {
    const { js, published } = recordingJs();
    await new StepDispatcher({ js, topology, logger: silentLogger }).handle(examples.StepSucceeded());
    expect(published).toEqual([]);
  });
});

/** A KV bucket in memory with create/update-by-revision, enough for the tenant gate. */
function memoryKv() {
  const entries = new Map<string, { value: string; revision: number }>();
  let revisions = 0;
  const kv = {
    async get(key: string) {
      const e = entries.get(key);
      return e && { operation: 'PUT', revision: e.revision, json: () => JSON.parse(e.value) };
    },
    async create(key: string, value: string) {
      if (entries.has(key)) throw new Error('wrong last sequence');
      entries.set(key, { value, revision: ++revisions });
      return revisions;
    },
    async update(key: string, value: string, revision: number) {
      if (entries.get(key)?.revision !== revision) throw new Error('wrong last sequence');
      entries.set(key, { value, revision: ++revisions });
      return revisions;
    },
  } as unknown as KV;
  return kv;
}

describe('StepDispatcher with a tenant cap', () => {
  let position = 1_000;
  const event = (sessionId: string, type: 'SessionOpened' | 'SessionClosed', priority = 'normal') => {
    const base = type === 'SessionOpened' ? examples.SessionOpened() : examples.SessionClosed();
    const e = structuredClone(base);
    e.metadata.sessionId = sessionId;
    e.eventId = `${sessionId}-${type}`;
    e.position = ++position;
    if (e.event.type === 'SessionOpened') e.event.data.priority = priority as 'normal';
    return e;
  };
  const assigned = (published: Published[]) =>
    published.filter((p) => p.subject.startsWith(`${topology.prefix}.work.assign.`)).map((p) => p.msgID);

  it('holds sessions beyond the cap and lets them through by priority then arrival as active ones end', async () => {
    const { js, published } = recordingJs();
    const kv = memoryKv();
    const gate = new TenantGate(kv, { defaultMax: 0, perTenant: { [TENANT]: 2 } }, silentLogger);
    const dispatcher = new StepDispatcher({ js, topology, logger: silentLogger, gate });
    for (const e of [
      event('s1', 'SessionOpened'),
      event('s2', 'SessionOpened'),
      event('n1', 'SessionOpened', 'normal'),
      event('l1', 'SessionOpened', 'low'),
      event('h1', 'SessionOpened', 'high'),
      event('n2', 'SessionOpened', 'normal'),
    ])
      await dispatcher.handle(e);
    expect(assigned(published)).toEqual(['s1-SessionOpened', 's2-SessionOpened']);
    expect((await gate.waiting(TENANT)).map((w) => w.sessionId)).toEqual(['h1', 'n1', 'n2', 'l1']);

    const closeS1 = event('s1', 'SessionClosed');
    await dispatcher.handle(closeS1);
    expect(assigned(published).slice(2)).toEqual(['h1-SessionOpened']);
    // Handled again (a restart from an older checkpoint): nothing more goes out and nothing moves.
    await dispatcher.handle(closeS1);
    await new StepDispatcher({
      js,
      topology,
      logger: silentLogger,
      gate: new TenantGate(kv, { defaultMax: 0, perTenant: { [TENANT]: 2 } }, silentLogger),
    }).handle(closeS1);
    expect(assigned(published).slice(2)).toEqual(['h1-SessionOpened']);

    await dispatcher.handle(event('s2', 'SessionClosed'));
    await dispatcher.handle(event('h1', 'SessionClosed'));
    expect(assigned(published).slice(2)).toEqual([
      'h1-SessionOpened',
      'n1-SessionOpened',
      'n2-SessionOpened',
    ]);
    expect(await gate.admitted(TENANT, 'n2')).toBe(true);
    expect(await gate.admitted(TENANT, 'l1')).toBe(false);
  });

  it('leaves tenants without a cap alone', async () => {
    const { js, published } = recordingJs();
    const gate = new TenantGate(memoryKv(), { defaultMax: 0, perTenant: { other: 1 } }, silentLogger);
    const dispatcher = new StepDispatcher({ js, topology, logger: silentLogger, gate });
    for (const id of ['a1', 'a2', 'a3']) await dispatcher.handle(event(id, 'SessionOpened'));
    expect(assigned(published)).toHaveLength(3);
  });
});

describe('parseTenantLimits', () => {
  it('reads tenant=limit pairs and names a bad entry', () => {
    expect(parseTenantLimits('acme=2, beta=10')).toEqual({ acme: 2, beta: 10 });
    expect(parseTenantLimits('')).toEqual({});
    expect(() => parseTenantLimits('acme=two')).toThrow(/acme=two/);
  });
});
