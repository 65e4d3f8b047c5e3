import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import {
  InMemoryEventStore,
  Registry,
  SessionCommandHandler,
  sessionStreamId,
  silentLogger,
  type Authenticator,
  type SessionCommand,
} from '@rpa/shared';
import { buildApp } from './app.js';
import { ObservedStore } from './testing/observedStore.js';

/** Tests name the tenant in a header; no header means no credentials. */
const headerTenant: Authenticator = async (request) => {
  const tenant = request.headers['x-test-tenant'];
  return typeof tenant === 'string'
    ? { tenantId: tenant, actor: { kind: 'api-key', id: `key-${tenant}` }, scopes: ['sessions:write'] }
    : null;
};

const NOW = new Date('2026-03-01T12:00:00.000Z');
const UNKNOWN = '0195f2a0-1111-7000-8000-000000000000';

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function setup() {
  const memory = new InMemoryEventStore(() => NOW);
  const store = new ObservedStore(memory);
  const handler = new SessionCommandHandler({ store, maxAttempts: 3 });
  app = await buildApp({
    handler,
    authenticator: headerTenant,
    logger: silentLogger,
    registry: new Registry(),
    readiness: [],
    clock: () => NOW,
  });
  const post = (url: string, body?: unknown, tenant = 'acme') =>
    app!.inject({
      method: 'POST',
      url,
      headers: { 'x-test-tenant': tenant },
      ...(body === undefined ? {} : { payload: body as object }),
    });
  const open = async (body: unknown = {}) => {
    const res = await post('/v1/sessions', body);
    expect(res.statusCode).toBe(201);
    return res.json<{ sessionId: string }>().sessionId;
  };
  const submit = async (sessionId: string, steps: unknown[]) => {
    const res = await post(`/v1/sessions/${sessionId}/steps`, { steps });
    expect(res.statusCode).toBe(202);
    return res.json<{ steps: Array<{ stepId: string }> }>().steps.map((s) => s.stepId);
  };
  let n = 0;
  /** A robot's report, issued straight to the handler as the robot would. */
  const robot = (sessionId: string, command: Record<string, unknown>) =>
    handler.handle({
      commandId: `0195f2a0-4444-7000-8000-${String(++n).padStart(12, '0')}`,
      sessionId,
      tenantId: 'acme',
      at: NOW.toISOString(),
      actor: { kind: 'robot', id: 'robot-1' },
      robotId: 'robot-1',
      epoch: 1,
      ...command,
    } as SessionCommand);
  /** Claims the session and fails the step for good (an error no retry fixes). */
  const failForGood = async (sessionId: string, stepId: string) => {
    await robot(sessionId, { type: 'ClaimSession' });
    await robot(sessionId, { type: 'StartStep', stepId, attempt: 1 });
    await robot(sessionId, {
      type: 'CompleteStep',
      stepId,
      attempt: 1,
      durationMs: 5,
      outcome: { status: 'failed', error: { code: 'SELECTOR_NOT_FOUND', message: 'no #a' } },
    });
  };
  const stream = (sessionId: string) => memory.readStream(sessionStreamId(sessionId));
  return { store, post, open, submit, failForGood, stream };
}

const errorOf = (res: { json: <T>() => T }) =>
  res.json<{
    error: { code: string; message: string; details?: Array<{ field: string; message: string }> };
  }>().error;

describe('POST /v1/sessions/:id/pause', () => {
  it('pauses an open session: 202 paused; a second pause is 202 and appends nothing', async () => {
    const { open, post, store, stream } = await setup();
    const sessionId = await open();
    const first = await post(`/v1/sessions/${sessionId}/pause`);
    const second = await post(`/v1/sessions/${sessionId}/pause`, {});
    expect([first.statusCode, second.statusCode]).toEqual([202, 202]);
    expect(first.json()).toEqual({ sessionId, status: 'paused' });
    expect(second.json()).toEqual({ sessionId, status: 'paused' });
    expect(store.appended).toBe(2);
    expect((await stream(sessionId))[1]).toMatchObject({
      type: 'SessionPaused',
      data: { reason: 'operator', stepId: null },
      metadata: { actor: { kind: 'api-key', id: 'key-acme' } },
    });
  });

  it('resume lets a paused session go on: 202 open', async () => {
    const { open, post, stream } = await setup();
    const sessionId = await open();
    await post(`/v1/sessions/${sessionId}/pause`);
    const res = await post(`/v1/sessions/${sessionId}/resume`);
    expect(res.statusCode).toBe(202);
    expect(res.json()).toEqual({ sessionId, status: 'open' });
    expect((await stream(sessionId)).map((e) => e.type)).toEqual([
      'SessionOpened',
      'SessionPaused',
      'SessionResumed',
    ]);
  });

  it('answers 409 ILLEGAL_TRANSITION for a closing or cancelled session, appending nothing', async () => {
    const { open, post, store } = await setup();
    const closing = await open();
    await post(`/v1/sessions/${closing}/close`);
    const cancelled = await open();
    await post(`/v1/sessions/${cancelled}/cancel`);
    const appended = store.appended;
    for (const sessionId of [closing, cancelled]) {
      const res = await post(`/v1/sessions/${sessionId}/pause`);
      expect(res.statusCode).toBe(409);
      expect(errorOf(res).code).toBe('ILLEGAL_TRANSITION');
    }
    expect(store.appended).toBe(appended);
  });

  it('answers 404 for an unknown session and another tenant’s session', async () => {
    const { open, post, store } = await setup();
    const sessionId = await open();
    const unknown = await post(`/v1/sessions/${UNKNOWN}/pause`);
    const foreign = await post(`/v1/sessions/${sessionId}/pause`, undefined, 'globex');
    expect([unknown.statusCode, foreign.statusCode]).toEqual([404, 404]);
    expect(errorOf(foreign).code).toBe('SESSION_NOT_FOUND');
    expect(store.appended).toBe(1);
  });

  it('refuses a body with fields and a bad session id, naming the field', async () => {
    const { open, post, store } = await setup();
    const sessionId = await open();
    const extra = await post(`/v1/sessions/${sessionId}/pause`, { reason: 'x' });
    const badId = await post('/v1/sessions/nope/pause');
    expect([extra.statusCode, badId.statusCode]).toEqual([400, 400]);
    expect(errorOf(extra).message).toContain('"reason"');
    expect(errorOf(badId).details?.[0]?.field).toBe('params.id');
    expect(store.appended).toBe(1);
  });
});

describe('POST /v1/sessions/:id/steps/:stepId/retry', () => {
  it('retries a step that failed for good; the session paused for it goes on: 202 open', async () => {
    const { open, submit, post, failForGood, stream } = await setup();
    const sessionId = await open();
    const [stepId] = await submit(sessionId, [{ action: 'click', selector: '#a' }]);
    await failForGood(sessionId, stepId!);
    const before = (await stream(sessionId)).map((e) => e.type);
    expect(before.slice(-3)).toEqual(['StepFailed', 'StepDeadLettered', 'SessionPaused']);

    const res = await post(`/v1/sessions/${sessionId}/steps/${stepId}/retry`);
    expect(res.statusCode).toBe(202);
    expect(res.json()).toEqual({ sessionId, stepId, status: 'open' });
    const after = await stream(sessionId);
    expect(after.slice(before.length).map((e) => [e.type, e.data])).toEqual([
      ['StepRetried', { stepId, seq: 1 }],
      ['SessionResumed', { skipReplay: [] }],
    ]);
  });

  it('keeps a session with onStepFailure continue open and retries its step', async () => {
    const { open, submit, post, failForGood } = await setup();
    const sessionId = await open({ onStepFailure: 'continue' });
    const [stepId] = await submit(sessionId, [{ action: 'click', selector: '#a' }]);
    await failForGood(sessionId, stepId!);
    const res = await post(`/v1/sessions/${sessionId}/steps/${stepId}/retry`, {});
    expect(res.statusCode).toBe(202);
    expect(res.json()).toEqual({ sessionId, stepId, status: 'open' });
  });

  it('answers 409 for a step that has not failed for good, appending nothing', async () => {
    const { open, submit, post, store } = await setup();
    const sessionId = await open();
    const [stepId] = await submit(sessionId, [{ action: 'click', selector: '#a' }]);
    const appended = store.appended;
    const res = await post(`/v1/sessions/${sessionId}/steps/${stepId}/retry`);
    expect(res.statusCode).toBe(409);
    expect(errorOf(res)).toMatchObject({ code: 'ILLEGAL_TRANSITION' });
    expect(errorOf(res).message).toContain('queued');
    expect(store.appended).toBe(appended);
  });

  it('answers 409 when the session is over, appending nothing', async () => {
    const { open, submit, post, failForGood, store } = await setup();
    const sessionId = await open();
    const [stepId] = await submit(sessionId, [{ action: 'click', selector: '#a' }]);
    await failForGood(sessionId, stepId!);
    await post(`/v1/sessions/${sessionId}/cancel`);
    const appended = store.appended;
    const res = await post(`/v1/sessions/${sessionId}/steps/${stepId}/retry`);
    expect(res.statusCode).toBe(409);
    expect(errorOf(res).code).toBe('ILLEGAL_TRANSITION');
    expect(store.appended).toBe(appended);
  });

  it('answers 404 for an unknown step, an unknown session and another tenant’s session', async () => {
    const { open, submit, post, store } = await setup();
    const sessionId = await open();
    const [stepId] = await submit(sessionId, [{ action: 'click', selector: '#a' }]);
    const appended = store.appended;
    const unknownStep = await post(`/v1/sessions/${sessionId}/steps/no-such-step/retry`);
    const unknownSession = await post(`/v1/sessions/${UNKNOWN}/steps/${stepId}/retry`);
    const foreign = await post(`/v1/sessions/${sessionId}/steps/${stepId}/retry`, undefined, 'globex');
    expect([unknownStep.statusCode, unknownSession.statusCode, foreign.statusCode]).toEqual([404, 404, 404]);
    expect(errorOf(unknownStep).code).toBe('STEP_NOT_FOUND');
    expect(errorOf(unknownSession).code).toBe('SESSION_NOT_FOUND');
    expect(errorOf(foreign).code).toBe('SESSION_NOT_FOUND');
    expect(store.appended).toBe(appended);
  });

  it('refuses a body with fields and a bad session id, naming the field', async () => {
    const { open, post, store } = await setup();
    const sessionId = await open();
    const extra = await post(`/v1/sessions/${sessionId}/steps/s1/retry`, { force: true });
    const badId = await post('/v1/sessions/nope/steps/s1/retry');
    expect([extra.statusCode, badId.statusCode]).toEqual([400, 400]);
    expect(errorOf(extra).message).toContain('"force"');
    expect(errorOf(badId).details?.[0]?.field).toBe('params.id');
    expect(store.appended).toBe(1);
  });
});

describe('opening with priority, onStepFailure and requires', () => {
  it('records the fields on SessionOpened, and the defaults when they are left out', async () => {
    const { open, stream } = await setup();
    const chosen = await open({ priority: 'high', onStepFailure: 'fail', requires: { region: 'eu' } });
    const plain = await open();
    expect((await stream(chosen))[0]?.data).toMatchObject({
      priority: 'high',
      onStepFailure: 'fail',
      requires: { region: 'eu' },
    });
    expect((await stream(plain))[0]?.data).toMatchObject({
      priority: 'normal',
      onStepFailure: 'pause',
      requires: {},
    });
  });

  it('takes a step retry policy', async () => {
    const { open, submit, stream } = await setup();
    const sessionId = await open();
    const retry = { maxAttempts: 5, backoff: 'fixed', initialMs: 500, maxMs: 500 };
    await submit(sessionId, [{ action: 'navigate', url: 'https://example.com/', retry }]);
    expect((await stream(sessionId))[1]?.data).toMatchObject({ step: { retry } });
  });

  it.each([
    [{ priority: 'urgent' }, 'body.priority'],
    [{ onStepFailure: 'retry' }, 'body.onStepFailure'],
    [{ requires: { 'bad label!': 'x' } }, 'body.requires.bad label!'],
    [{ requires: { region: 7 } }, 'body.requires.region'],
  ])('refuses %j with 400 naming %s, appending nothing', async (body, field) => {
    const { post, store } = await setup();
    const res = await post('/v1/sessions', body);
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).details?.map((d) => d.field)).toContain(field);
    expect(store.appended).toBe(0);
  });

  it('refuses a step retry policy out of range, naming the field', async () => {
    const { open, post, store } = await setup();
    const sessionId = await open();
    const res = await post(`/v1/sessions/${sessionId}/steps`, {
      steps: [{ action: 'click', selector: '#a', retry: { maxAttempts: 11 } }],
    });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).details?.map((d) => d.field)).toContain('body.steps.0.retry.maxAttempts');
    expect(store.appended).toBe(1);
  });

  it('a batch item takes them too, and a bad one is answered in its place naming items.N.field', async () => {
    const { post, store, stream } = await setup();
    const res = await post('/v1/sessions:batch', {
      items: [
        { priority: 'low', onStepFailure: 'continue', requires: { gpu: 'yes' } },
        { priority: 'whenever' },
      ],
    });
    expect(res.statusCode).toBe(200);
    const [good, bad] = res.json<{ items: Array<Record<string, unknown>> }>().items;
    expect(good).toMatchObject({ status: 201, opened: true });
    expect(bad).toMatchObject({ status: 400, opened: false });
    expect((bad!.error as { details: Array<{ field: string }> }).details[0]?.field).toBe('items.1.priority');
    expect((await stream(good!.sessionId as string))[0]?.data).toMatchObject({
      priority: 'low',
      onStepFailure: 'continue',
      requires: { gpu: 'yes' },
    });
    expect(store.appended).toBe(1);
  });

  it('with an Idempotency-Key: another priority under the same key is 422', async () => {
    const { store } = await setup();
    const headers = { 'idempotency-key': 'k-prio' };
    const inject = (body: unknown) =>
      app!.inject({
        method: 'POST',
        url: '/v1/sessions',
        headers: { 'x-test-tenant': 'acme', ...headers },
        payload: body as object,
      });
    const first = await inject({ priority: 'high' });
    const same = await inject({ priority: 'high', onStepFailure: 'pause' });
    const other = await inject({ priority: 'low' });
    expect([first.statusCode, same.statusCode, other.statusCode]).toEqual([201, 201, 422]);
    expect(same.json()).toEqual(first.json());
    expect(store.appended).toBe(1);
  });
});

describe('the OpenAPI document', () => {
  it('shows the pause and retry routes, the open fields and the step retry policy', async () => {
    await setup();
    const doc = (await app!.inject({ method: 'GET', url: '/openapi.json' })).json();
    for (const path of ['/v1/sessions/{id}/pause', '/v1/sessions/{id}/steps/{stepId}/retry']) {
      const route = doc.paths[path].post;
      expect(route.tags).toEqual(['sessions']);
      expect(Object.keys(route.responses)).toEqual(expect.arrayContaining(['202', '400', '404', '409']));
    }
    const retryParams = doc.paths['/v1/sessions/{id}/steps/{stepId}/retry'].post.parameters.map(
      (p: { name: string }) => p.name,
    );
    expect(retryParams).toEqual(expect.arrayContaining(['id', 'stepId']));
    const open = doc.paths['/v1/sessions'].post.requestBody.content['application/json'].schema;
    expect(open.properties.priority.enum).toEqual(['high', 'normal', 'low']);
    expect(open.properties.onStepFailure.enum).toEqual(['pause', 'fail', 'continue']);
    expect(open.properties.requires).toBeDefined();
    const batch = doc.paths['/v1/sessions:batch'].post.requestBody.content['application/json'].schema;
    const item = batch.properties.items.items;
    expect(Object.keys(item.properties)).toEqual(
      expect.arrayContaining(['priority', 'onStepFailure', 'requires', 'steps']),
    );
    expect(JSON.stringify(doc.paths['/v1/sessions/{id}/steps'].post.requestBody)).toContain('maxAttempts');
    const resume = doc.paths['/v1/sessions/{id}/resume'].post;
    expect(resume.summary).toContain('paused');
  });
});
