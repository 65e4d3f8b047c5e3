import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connectNats,
  JetStreamEventStore,
  Registry,
  SessionCommandHandler,
  sessionStreamId,
  silentLogger,
  singleTenantAuthenticator,
  Topology,
  type EventStore,
  type NatsConnection,
} from '@rpa/shared';
import { startNatsServer, uniquePrefix, type NatsServerHandle } from '@rpa/shared/testing';
import { randomUUID } from 'node:crypto';
import { buildApp } from './app.js';
import { ObservedStore } from './testing/observedStore.js';

let server: NatsServerHandle;
let nc: NatsConnection;
let store: EventStore;
const apps: FastifyInstance[] = [];

/** One command API replica over the shared store: its own handler, cache and per-session lanes. */
async function replica(tenant = 'acme') {
  const observed = new ObservedStore(store);
  const app = await buildApp({
    handler: new SessionCommandHandler({ store: observed }),
    authenticator: singleTenantAuthenticator(tenant),
    logger: silentLogger,
    registry: new Registry(),
    readiness: [{ name: 'eventStore', check: () => store.ping() }],
  });
  apps.push(app);
  const post = (url: string, payload?: object, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url, headers, ...(payload ? { payload } : {}) });
  return { app, post, observed };
}

const clicks = (n: number, tag = 'b') =>
  Array.from({ length: n }, (_, i) => ({ action: 'click', selector: `#${tag}${i}` }));
const eventsOf = (sessionId: string) => store.readStream(sessionStreamId(sessionId));

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectNats(server.url, 'command-api-int');
  store = await JetStreamEventStore.create(nc, new Topology(uniquePrefix()), { logger: silentLogger });
});

afterAll(async () => {
  for (const app of apps) await app.close();
  await store?.close();
  await nc?.drain();
  await server?.stop();
});

describe('command API on the JetStream event store', () => {
  it('opens, submits and closes a session end to end', async () => {
    const { post, app } = await replica();
    const opened = await post('/v1/sessions', { labels: { suite: 'int' } });
    expect(opened.statusCode).toBe(201);
    const { sessionId } = opened.json();

    const submitted = await post(`/v1/sessions/${sessionId}/steps`, {
      steps: [{ action: 'navigate', url: 'https://example.com/' }, ...clicks(2)],
    });
    expect(submitted.statusCode).toBe(202);
    expect(submitted.json().steps.map((s: { seq: number }) => s.seq)).toEqual([1, 2, 3]);

    const closed = await post(`/v1/sessions/${sessionId}/close`);
    expect(closed.statusCode).toBe(202);
    expect(closed.json()).toEqual({ sessionId, status: 'closing' });
    const late = await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1) });
    expect(late.statusCode).toBe(409);

    const events = await eventsOf(sessionId);
    expect(events.map((e) => [e.revision, e.type])).toEqual([
      [0, 'SessionOpened'],
      [1, 'StepSubmitted'],
      [2, 'StepSubmitted'],
      [3, 'StepSubmitted'],
      [4, 'SessionCloseRequested'],
    ]);
    expect(events[0]?.metadata).toMatchObject({ tenantId: 'acme', sessionId, commandType: 'OpenSession' });
    expect((await app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(200);
  });

  it('50 concurrent submissions over two replicas all land, with distinct contiguous seqs', async () => {
    const a = await replica();
    const b = await replica();
    const { sessionId } = (await a.post('/v1/sessions')).json();
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        (i % 2 === 0 ? a : b).post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(2, `r${i}-`) }),
      ),
    );
    expect(responses.map((r) => r.statusCode)).toEqual(Array(50).fill(202));
    const answered = responses.flatMap((r) => r.json().steps as Array<{ stepId: string; seq: number }>);
    expect(answered.map((s) => s.seq).sort((x, y) => x - y)).toEqual(
      Array.from({ length: 100 }, (_, i) => i + 1),
    );

    const stored = (await eventsOf(sessionId)).slice(1).map((e) => e.data as { stepId: string; seq: number });
    expect(stored.map((s) => s.seq)).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(new Map(stored.map((s) => [s.stepId, s.seq]))).toEqual(
      new Map(answered.map((s) => [s.stepId, s.seq])),
    );
  });

  it('a version conflict reported by JetStream is retried: the command decides again and lands after the other write', async () => {
    const a = await replica();
    const b = await replica();
    const { sessionId } = (await a.post('/v1/sessions')).json();
    // Warm b's cache, then make a write land between b's read and b's append.
    await b.post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1, 'b') });
    b.observed.beforeAppend = async () => {
      b.observed.beforeAppend = null;
      expect((await a.post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1, 'a') })).statusCode).toBe(
        202,
      );
    };
    const res = await b.post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1, 'late') });
    expect(res.statusCode).toBe(202);
    expect(res.json().steps[0].seq).toBe(3);
    expect(b.observed.conflicts).toBe(1);
    expect((await eventsOf(sessionId)).map((e) => (e.data as { seq?: number }).seq)).toEqual([
      undefined,
      1,
      2,
      3,
    ]);
  });

  it('idempotent retries: the same keyed open and submission, even on another replica, append nothing new', async () => {
    const a = await replica();
    const b = await replica();
    const openKey = { 'idempotency-key': `open-${uniquePrefix()}` };
    const first = await a.post('/v1/sessions', { labels: { run: '1' } }, openKey);
    const retried = await b.post('/v1/sessions', { labels: { run: '1' } }, openKey);
    const changed = await b.post('/v1/sessions', { labels: { run: '2' } }, openKey);
    expect([first.statusCode, retried.statusCode, changed.statusCode]).toEqual([201, 201, 422]);
    expect(retried.json()).toEqual(first.json());
    const { sessionId } = first.json();

    const stepsKey = { 'idempotency-key': 'batch-1' };
    const body = { steps: clicks(3) };
    const submitted = await a.post(`/v1/sessions/${sessionId}/steps`, body, stepsKey);
    const again = await b.post(`/v1/sessions/${sessionId}/steps`, body, stepsKey);
    const concurrent = await Promise.all([
      a.post(`/v1/sessions/${sessionId}/steps`, body, stepsKey),
      b.post(`/v1/sessions/${sessionId}/steps`, body, stepsKey),
    ]);
    expect(submitted.statusCode).toBe(202);
    for (const r of [again, ...concurrent]) expect(r.json()).toEqual(submitted.json());

    await a.post(`/v1/sessions/${sessionId}/close`);
    await b.post(`/v1/sessions/${sessionId}/close`);
    expect((await eventsOf(sessionId)).map((e) => e.type)).toEqual([
      'SessionOpened',
      'StepSubmitted',
      'StepSubmitted',
      'StepSubmitted',
      'SessionCloseRequested',
    ]);
  });

  it('a keyed open raced on two replicas opens one session', async () => {
    const a = await replica();
    const b = await replica();
    const key = { 'idempotency-key': `race-${uniquePrefix()}` };
    const [x, y] = await Promise.all([a.post('/v1/sessions', {}, key), b.post('/v1/sessions', {}, key)]);
    expect([x.statusCode, y.statusCode]).toEqual([201, 201]);
    expect(x.json()).toEqual(y.json());
    expect(await eventsOf(x.json().sessionId)).toHaveLength(1);
  });

  it('another tenant cannot touch the session', async () => {
    const acme = await replica('acme');
    const globex = await replica('globex');
    const { sessionId } = (await acme.post('/v1/sessions')).json();
    const steps = await globex.post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1) });
    const close = await globex.post(`/v1/sessions/${sessionId}/close`);
    expect([steps.statusCode, close.statusCode]).toEqual([404, 404]);
    expect(await eventsOf(sessionId)).toHaveLength(1);
  });
});

/** A robot of the fleet, reporting through its own command handler on the same store. */
function robotReporter(tenantId = 'acme', robotId = 'robot-int-1') {
  const handler = new SessionCommandHandler({ store });
  const base = (sessionId: string) => ({
    commandId: randomUUID(),
    sessionId,
    tenantId,
    at: new Date().toISOString(),
    actor: { kind: 'robot' as const, id: robotId },
    robotId,
  });
  return {
    /** Claims the session and stops it for an operator, as a robot does before an unsafe replay. */
    async flag(sessionId: string, stepIds: string[]) {
      const claimed = await handler.handle({ ...base(sessionId), type: 'ClaimSession' });
      const epoch = claimed.state.status === 'none' ? 0 : claimed.state.epoch;
      return handler.handle({
        ...base(sessionId),
        type: 'FlagAttention',
        epoch,
        code: 'UNSAFE_REPLAY',
        reason: 'a step that must not run twice is in the tail',
        stepIds,
      });
    },
  };
}

describe('resuming and cancelling sessions', () => {
  it('resumes a session that needs attention: 202 open, SessionResumed names the steps it skips', async () => {
    const { post } = await replica();
    const { sessionId } = (await post('/v1/sessions')).json();
    const submitted = await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(2) });
    const stepIds = submitted.json().steps.map((s: { stepId: string }) => s.stepId) as string[];
    await robotReporter().flag(sessionId, [stepIds[1]!]);

    // Steps still queue while an operator looks, but the session cannot be closed around them.
    const close = await post(`/v1/sessions/${sessionId}/close`);
    expect(close.statusCode).toBe(409);
    expect(close.json().error.code).toBe('ILLEGAL_TRANSITION');

    const resumed = await post(`/v1/sessions/${sessionId}/resume`, {});
    expect(resumed.statusCode).toBe(202);
    expect(resumed.json()).toEqual({ sessionId, status: 'open' });
    // Resumed already: a second resume is an illegal transition, not a silent success.
    const again = await post(`/v1/sessions/${sessionId}/resume`);
    expect(again.statusCode).toBe(409);
    expect(again.json().error.code).toBe('ILLEGAL_TRANSITION');

    const events = await eventsOf(sessionId);
    expect(events.map((e) => e.type)).toEqual([
      'SessionOpened',
      'StepSubmitted',
      'StepSubmitted',
      'SessionClaimed',
      'SessionNeedsAttention',
      'SessionResumed',
    ]);
    expect(events.at(-1)).toMatchObject({
      data: { skipReplay: [stepIds[1]] },
      metadata: { tenantId: 'acme', sessionId, commandType: 'ResumeSession' },
    });
  });

  it('resumes a session that was closing back to closing', async () => {
    const { post } = await replica();
    const { sessionId } = (await post('/v1/sessions')).json();
    await post(`/v1/sessions/${sessionId}/close`);
    await robotReporter().flag(sessionId, []);
    const resumed = await post(`/v1/sessions/${sessionId}/resume`);
    expect(resumed.statusCode).toBe(202);
    expect(resumed.json()).toEqual({ sessionId, status: 'closing' });
  });

  it('refuses to resume a session that does not need attention with 409, appending nothing', async () => {
    const { post } = await replica();
    const { sessionId } = (await post('/v1/sessions')).json();
    const res = await post(`/v1/sessions/${sessionId}/resume`);
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe('ILLEGAL_TRANSITION');
    expect((await eventsOf(sessionId)).map((e) => e.type)).toEqual(['SessionOpened']);
  });

  it('cancels a session: 202 cancelled, then steps, resume and close are refused and a second cancel is harmless', async () => {
    const { post } = await replica();
    const { sessionId } = (await post('/v1/sessions')).json();
    await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1) });

    const cancelled = await post(`/v1/sessions/${sessionId}/cancel`, { reason: 'wrong customer' });
    expect(cancelled.statusCode).toBe(202);
    expect(cancelled.json()).toEqual({ sessionId, status: 'cancelled' });

    const steps = await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1, 'late') });
    expect(steps.statusCode).toBe(409);
    expect(steps.json().error.code).toBe('ILLEGAL_TRANSITION');
    expect((await post(`/v1/sessions/${sessionId}/resume`)).statusCode).toBe(409);
    // Cancelled is over: closing it is a no-op, and cancelling again answers the same.
    expect((await post(`/v1/sessions/${sessionId}/close`)).json()).toEqual({
      sessionId,
      status: 'cancelled',
    });
    const again = await post(`/v1/sessions/${sessionId}/cancel`);
    expect(again.statusCode).toBe(202);
    expect(again.json()).toEqual({ sessionId, status: 'cancelled' });

    const events = await eventsOf(sessionId);
    expect(events.map((e) => e.type)).toEqual(['SessionOpened', 'StepSubmitted', 'SessionCancelled']);
    expect(events.at(-1)).toMatchObject({
      data: { reason: 'wrong customer' },
      metadata: { commandType: 'CancelSession' },
    });
  });

  it('cancels a session that needs attention', async () => {
    const { post } = await replica();
    const { sessionId } = (await post('/v1/sessions')).json();
    await robotReporter().flag(sessionId, []);
    const res = await post(`/v1/sessions/${sessionId}/cancel`);
    expect(res.statusCode).toBe(202);
    expect(res.json()).toEqual({ sessionId, status: 'cancelled' });
    expect((await eventsOf(sessionId)).at(-1)).toMatchObject({
      type: 'SessionCancelled',
      data: { reason: null },
    });
  });

  it('refuses to cancel a closed session with 409, appending nothing', async () => {
    const { post } = await replica();
    const { sessionId } = (await post('/v1/sessions')).json();
    await post(`/v1/sessions/${sessionId}/close`);
    const handler = new SessionCommandHandler({ store });
    const robot = {
      commandId: randomUUID(),
      sessionId,
      tenantId: 'acme',
      at: new Date().toISOString(),
      actor: { kind: 'robot' as const, id: 'robot-int-1' },
      robotId: 'robot-int-1',
    };
    await handler.handle({ ...robot, type: 'ClaimSession' });
    await handler.handle({ ...robot, commandId: randomUUID(), type: 'ConfirmClose', epoch: 1 });
    const before = await eventsOf(sessionId);
    expect(before.at(-1)?.type).toBe('SessionClosed');

    const res = await post(`/v1/sessions/${sessionId}/cancel`, { reason: 'too late' });
    expect(res.statusCode).toBe(409);
    expect(res.json().error.code).toBe('ILLEGAL_TRANSITION');
    expect(await eventsOf(sessionId)).toHaveLength(before.length);
  });

  it('answers 404 for an unknown session and another tenant’s, and 400 naming the field, appending nothing', async () => {
    const acme = await replica('acme');
    const globex = await replica('globex');
    const { sessionId } = (await acme.post('/v1/sessions')).json();
    await robotReporter().flag(sessionId, []);
    const unknown = randomUUID();
    for (const action of ['resume', 'cancel']) {
      const missing = await acme.post(`/v1/sessions/${unknown}/${action}`);
      expect(missing.statusCode).toBe(404);
      expect(missing.json().error.code).toBe('SESSION_NOT_FOUND');
      expect((await globex.post(`/v1/sessions/${sessionId}/${action}`)).statusCode).toBe(404);
      const badId = await acme.post(`/v1/sessions/not-a-uuid/${action}`);
      expect(badId.statusCode).toBe(400);
      expect(badId.json().error.details[0].field).toBe('params.id');
    }
    const longReason = await acme.post(`/v1/sessions/${sessionId}/cancel`, { reason: 'x'.repeat(501) });
    expect(longReason.statusCode).toBe(400);
    expect(longReason.json().error.details[0].field).toBe('body.reason');
    const wrongType = await acme.post(`/v1/sessions/${sessionId}/cancel`, { reason: 42 });
    expect(wrongType.statusCode).toBe(400);
    expect(wrongType.json().error.details[0].field).toBe('body.reason');
    const extra = await acme.post(`/v1/sessions/${sessionId}/resume`, { force: true });
    expect(extra.statusCode).toBe(400);
    expect(extra.json().error.message).toContain('body');

    expect(await eventsOf(unknown)).toEqual([]);
    expect((await eventsOf(sessionId)).map((e) => e.type)).toEqual([
      'SessionOpened',
      'SessionClaimed',
      'SessionNeedsAttention',
    ]);
  });
});

describe('pausing sessions and retrying steps', () => {
  /** Claims the session, runs its step and fails it for good, as a robot reports an error no retry fixes. */
  async function failForGood(sessionId: string, stepId: string) {
    const handler = new SessionCommandHandler({ store });
    const robot = () => ({
      commandId: randomUUID(),
      sessionId,
      tenantId: 'acme',
      at: new Date().toISOString(),
      actor: { kind: 'robot' as const, id: 'robot-int-1' },
      robotId: 'robot-int-1',
    });
    const claimed = await handler.handle({ ...robot(), type: 'ClaimSession' });
    const epoch = claimed.state.status === 'none' ? 0 : claimed.state.epoch;
    await handler.handle({ ...robot(), type: 'StartStep', epoch, stepId, attempt: 1 });
    await handler.handle({
      ...robot(),
      type: 'CompleteStep',
      epoch,
      stepId,
      attempt: 1,
      durationMs: 3,
      outcome: { status: 'failed', error: { code: 'SELECTOR_NOT_FOUND', message: 'no #b0' } },
    });
  }

  it('pauses and resumes an opened session with priority and requirements', async () => {
    const { post } = await replica();
    const opened = await post('/v1/sessions', { priority: 'high', requires: { region: 'eu' } });
    const { sessionId } = opened.json();
    const paused = await post(`/v1/sessions/${sessionId}/pause`);
    expect(paused.statusCode).toBe(202);
    expect(paused.json()).toEqual({ sessionId, status: 'paused' });
    expect((await post(`/v1/sessions/${sessionId}/pause`)).json()).toEqual({ sessionId, status: 'paused' });
    // A paused session still queues steps, but cannot be closed around them.
    expect((await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1) })).statusCode).toBe(202);
    expect((await post(`/v1/sessions/${sessionId}/close`)).statusCode).toBe(409);
    const resumed = await post(`/v1/sessions/${sessionId}/resume`);
    expect(resumed.json()).toEqual({ sessionId, status: 'open' });

    const events = await eventsOf(sessionId);
    expect(events.map((e) => e.type)).toEqual([
      'SessionOpened',
      'SessionPaused',
      'StepSubmitted',
      'SessionResumed',
    ]);
    expect(events[0]?.data).toMatchObject({
      priority: 'high',
      onStepFailure: 'pause',
      requires: { region: 'eu' },
    });
    expect(events[1]?.metadata).toMatchObject({ commandType: 'PauseSession' });
  });

  it('retries a step that failed for good: the session paused for it goes on; a second retry is 409', async () => {
    const { post } = await replica();
    const { sessionId } = (await post('/v1/sessions')).json();
    const submitted = await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(2) });
    const [first] = submitted.json().steps.map((s: { stepId: string }) => s.stepId) as string[];
    const early = await post(`/v1/sessions/${sessionId}/steps/${first}/retry`);
    expect(early.statusCode).toBe(409);

    await failForGood(sessionId, first!);
    const retried = await post(`/v1/sessions/${sessionId}/steps/${first}/retry`);
    expect(retried.statusCode).toBe(202);
    expect(retried.json()).toEqual({ sessionId, stepId: first, status: 'open' });
    const again = await post(`/v1/sessions/${sessionId}/steps/${first}/retry`);
    expect(again.statusCode).toBe(409);
    const missing = await post(`/v1/sessions/${sessionId}/steps/${randomUUID()}/retry`);
    expect(missing.statusCode).toBe(404);
    expect(missing.json().error.code).toBe('STEP_NOT_FOUND');

    const types = (await eventsOf(sessionId)).map((e) => e.type);
    expect(types.slice(-5)).toEqual([
      'StepFailed',
      'StepDeadLettered',
      'SessionPaused',
      'StepRetried',
      'SessionResumed',
    ]);
  });
});
