import type { FastifyInstance, InjectOptions } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import {
  EventStoreUnavailableError,
  InMemoryEventStore,
  Registry,
  SessionCommandHandler,
  sessionStreamId,
  silentLogger,
  type Authenticator,
} from '@rpa/shared';
import { buildApp, type CommandApiLimits } from './app.js';
import { ObservedStore } from './testing/observedStore.js';

/** Tests name the tenant in a header; no header means no credentials. */
const headerTenant: Authenticator = async (request) => {
  const tenant = request.headers['x-test-tenant'];
  return typeof tenant === 'string'
    ? { tenantId: tenant, actor: { kind: 'api-key', id: `key-${tenant}` }, scopes: ['sessions:write'] }
    : null;
};

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const NOW = new Date('2026-03-01T12:00:00.000Z');

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function setup(limits: Partial<CommandApiLimits> = {}) {
  const memory = new InMemoryEventStore(() => NOW);
  const store = new ObservedStore(memory);
  const handler = new SessionCommandHandler({ store, maxAttempts: 3 });
  const registry = new Registry();
  app = await buildApp({
    handler,
    authenticator: headerTenant,
    logger: silentLogger,
    registry,
    readiness: [{ name: 'eventStore', check: () => store.ping() }],
    clock: () => NOW,
    limits,
  });
  const inject = (options: InjectOptions & { tenant?: string | null }) => {
    const { tenant = 'acme', ...rest } = options;
    return app!.inject({
      ...rest,
      headers: { ...(tenant === null ? {} : { 'x-test-tenant': tenant }), ...rest.headers },
    });
  };
  const post = (url: string, body?: unknown, headers: Record<string, string> = {}, tenant?: string | null) =>
    inject({
      method: 'POST',
      url,
      headers,
      tenant,
      ...(body === undefined ? {} : { payload: body as object }),
    });
  const open = async (body?: unknown, headers?: Record<string, string>) => {
    const res = await post('/v1/sessions', body, headers);
    expect(res.statusCode).toBe(201);
    return res.json<{ sessionId: string; version: number }>().sessionId;
  };
  const stream = (sessionId: string) => memory.readStream(sessionStreamId(sessionId));
  return { app, store, memory, registry, inject, post, open, stream };
}

const clicks = (n: number) => Array.from({ length: n }, (_, i) => ({ action: 'click', selector: `#b${i}` }));
const errorOf = (res: { json: <T>() => T }) =>
  res.json<{
    error: { code: string; message: string; details?: Array<{ field: string; message: string }> };
  }>().error;

describe('POST /v1/sessions', () => {
  it('opens a session for the caller’s tenant: 201 with a UUID v7 id and version 0', async () => {
    const { post, stream } = await setup();
    const body = {
      labels: { team: 'billing' },
      browser: { viewport: { width: 1280, height: 720 } },
      idleTimeoutMs: 60_000,
    };
    const res = await post('/v1/sessions', body);
    expect(res.statusCode).toBe(201);
    const { sessionId, version } = res.json();
    expect(sessionId).toMatch(UUID);
    expect(sessionId[14]).toBe('7');
    expect(version).toBe(0);
    const [opened, ...rest] = await stream(sessionId);
    expect(rest).toEqual([]);
    expect(opened).toMatchObject({
      type: 'SessionOpened',
      data: { ...body, priority: 'normal', onStepFailure: 'pause', requires: {} },
      metadata: {
        tenantId: 'acme',
        sessionId,
        occurredAt: NOW.toISOString(),
        actor: { kind: 'api-key', id: 'key-acme' },
      },
    });
  });

  it('takes no body at all and fills the defaults', async () => {
    const { open, stream } = await setup();
    const sessionId = await open();
    expect((await stream(sessionId))[0]?.data).toEqual({
      labels: {},
      browser: {},
      idleTimeoutMs: null,
      priority: 'normal',
      onStepFailure: 'pause',
      requires: {},
    });
  });

  it('with an Idempotency-Key: the same key and body answer the same 201 and append nothing', async () => {
    const { post, store } = await setup();
    const headers = { 'idempotency-key': 'order-42:open' };
    const first = await post('/v1/sessions', { labels: { a: '1', b: '2' }, idleTimeoutMs: null }, headers);
    // The same body with its keys in another order and an explicit default is the same request.
    const again = await post(
      '/v1/sessions',
      { idleTimeoutMs: null, labels: { b: '2', a: '1' }, browser: {} },
      headers,
    );
    expect(first.statusCode).toBe(201);
    expect(again.statusCode).toBe(201);
    expect(again.json()).toEqual(first.json());
    expect(first.json().sessionId).toMatch(UUID);
    expect(store.appended).toBe(1);
  });

  it('with an Idempotency-Key: the same key with another body is 422 IDEMPOTENCY_MISMATCH and appends nothing', async () => {
    const { post, store } = await setup();
    const headers = { 'idempotency-key': 'k-1' };
    await post('/v1/sessions', { labels: { a: '1' } }, headers);
    const res = await post('/v1/sessions', { labels: { a: '2' } }, headers);
    expect(res.statusCode).toBe(422);
    expect(errorOf(res).code).toBe('IDEMPOTENCY_MISMATCH');
    expect(store.appended).toBe(1);
  });

  it('with an Idempotency-Key: another tenant’s same key opens its own session', async () => {
    const { post } = await setup();
    const headers = { 'idempotency-key': 'shared-key' };
    const a = await post('/v1/sessions', {}, headers, 'acme');
    const b = await post('/v1/sessions', {}, headers, 'globex');
    expect([a.statusCode, b.statusCode]).toEqual([201, 201]);
    expect(a.json().sessionId).not.toBe(b.json().sessionId);
  });

  it.each([
    [{ labels: { 'bad label!': 'x' } }, 'body.labels.bad label!'],
    [{ browser: { viewport: { width: 10, height: 720 } } }, 'body.browser.viewport.width'],
    [{ browser: { locale: 'not a locale' } }, 'body.browser.locale'],
    [{ idleTimeoutMs: 0 }, 'body.idleTimeoutMs'],
    [{ idleTimeoutMs: 'soon' }, 'body.idleTimeoutMs'],
  ])('refuses %j with 400 naming %s, appending nothing', async (body, field) => {
    const { post, store } = await setup();
    const res = await post('/v1/sessions', body);
    expect(res.statusCode).toBe(400);
    const error = errorOf(res);
    expect(error.code).toBe('VALIDATION_FAILED');
    expect(error.details?.map((d) => d.field)).toContain(field);
    expect(error.message).toContain(`${field}: `);
    expect(store.appended).toBe(0);
  });
});

describe('POST /v1/sessions/:id/steps', () => {
  it('submits steps in order: 202 with their ids and seqs, continuing across submissions', async () => {
    const { open, post, stream } = await setup();
    const sessionId = await open();
    const first = await post(`/v1/sessions/${sessionId}/steps`, {
      steps: [
        { action: 'navigate', url: 'https://example.com/login' },
        { action: 'fill', selector: '#user', value: 'alice' },
      ],
    });
    const second = await post(`/v1/sessions/${sessionId}/steps`, {
      steps: [{ action: 'press', selector: '#user', key: 'Enter' }],
    });
    expect([first.statusCode, second.statusCode]).toEqual([202, 202]);
    const steps = [...first.json().steps, ...second.json().steps];
    expect(steps.map((s: { seq: number }) => s.seq)).toEqual([1, 2, 3]);
    expect(new Set(steps.map((s: { stepId: string }) => s.stepId)).size).toBe(3);
    for (const s of steps) expect(s.stepId).toMatch(UUID);
    const events = await stream(sessionId);
    expect(events.slice(1).map((e) => e.data)).toEqual([
      { stepId: steps[0].stepId, seq: 1, step: { action: 'navigate', url: 'https://example.com/login' } },
      { stepId: steps[1].stepId, seq: 2, step: { action: 'fill', selector: '#user', value: 'alice' } },
      { stepId: steps[2].stepId, seq: 3, step: { action: 'press', selector: '#user', key: 'Enter' } },
    ]);
  });

  it('with an Idempotency-Key: a repeat answers the first response and appends nothing; another body is 422', async () => {
    const { open, post, store } = await setup();
    const sessionId = await open();
    const url = `/v1/sessions/${sessionId}/steps`;
    const headers = { 'idempotency-key': 'batch-7' };
    const first = await post(url, { steps: clicks(3) }, headers);
    // Another submission in between moves the session on; the repeat still answers what the first call got.
    await post(url, { steps: clicks(1) });
    const appended = store.appended;
    const again = await post(url, { steps: clicks(3) }, headers);
    const other = await post(url, { steps: clicks(2) }, headers);
    expect(first.statusCode).toBe(202);
    expect(again.statusCode).toBe(202);
    expect(again.json()).toEqual(first.json());
    expect(other.statusCode).toBe(422);
    expect(errorOf(other).code).toBe('IDEMPOTENCY_MISMATCH');
    expect(store.appended).toBe(appended);
  });

  it('without a key, a repeated body is a new submission', async () => {
    const { open, post } = await setup();
    const sessionId = await open();
    await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1) });
    const again = await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1) });
    expect(again.json().steps[0].seq).toBe(2);
  });

  it('accepts 500 steps in one request and refuses 501 with 400 naming body.steps', async () => {
    const { open, post, store } = await setup();
    const sessionId = await open();
    const ok = await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(500) });
    expect(ok.statusCode).toBe(202);
    expect(ok.json().steps.map((s: { seq: number }) => s.seq)).toEqual(
      Array.from({ length: 500 }, (_, i) => i + 1),
    );
    expect(store.appended).toBe(501);

    const tooMany = await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(501) });
    expect(tooMany.statusCode).toBe(400);
    expect(errorOf(tooMany).details?.[0]?.field).toBe('body.steps');
    expect(store.appended).toBe(501);
  });

  it('refuses a step with a non-http URL, naming the step and field', async () => {
    const { open, post, store } = await setup();
    const sessionId = await open();
    const steps = [...clicks(3), { action: 'navigate', url: 'file:///etc/passwd' }];
    const res = await post(`/v1/sessions/${sessionId}/steps`, { steps });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).message).toBe('body.steps.3.url: must be an absolute http:// or https:// URL');
    expect(store.appended).toBe(1);
  });

  it.each([
    [{ steps: [], extra: true }, 'extra'],
    [{ steps: [{ action: 'click', selector: '#a', script: 'alert(1)' }] }, 'script'],
  ])('refuses an unknown field with 400 naming it (%j)', async (body, name) => {
    const { open, post, store } = await setup();
    const sessionId = await open();
    const res = await post(`/v1/sessions/${sessionId}/steps`, body);
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).message).toContain(`"${name}"`);
    expect(store.appended).toBe(1);
  });

  it('refuses an empty step list and an unknown action', async () => {
    const { open, post } = await setup();
    const sessionId = await open();
    const empty = await post(`/v1/sessions/${sessionId}/steps`, { steps: [] });
    const unknown = await post(`/v1/sessions/${sessionId}/steps`, {
      steps: [{ action: 'evaluate', code: '1' }],
    });
    expect(errorOf(empty).message).toMatch(/^body\.steps: /);
    expect(errorOf(unknown).message).toMatch(/^body\.steps\.0\.action: /);
  });

  it('refuses malformed JSON with 400, appending nothing', async () => {
    const { open, inject, store } = await setup();
    const sessionId = await open();
    const res = await inject({
      method: 'POST',
      url: `/v1/sessions/${sessionId}/steps`,
      headers: { 'content-type': 'application/json' },
      payload: '{"steps": [',
    });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).code).toMatch(/JSON/);
    expect(store.appended).toBe(1);
  });

  it('refuses a body over 256 KiB with 413, appending nothing', async () => {
    const { open, post, store } = await setup();
    const sessionId = await open();
    const big = { steps: [{ action: 'fill', selector: '#a', value: 'x'.repeat(9_000) }] };
    const res = await post(`/v1/sessions/${sessionId}/steps`, { steps: Array(30).fill(big.steps[0]) });
    expect(res.statusCode).toBe(413);
    expect(errorOf(res).code).toBe('FST_ERR_CTP_BODY_TOO_LARGE');
    expect(store.appended).toBe(1);
  });

  it('answers 404 for an unknown session and for another tenant’s session', async () => {
    const { open, post, store } = await setup();
    const sessionId = await open();
    const unknown = await post(`/v1/sessions/0195f2a0-1111-7000-8000-000000000000/steps`, {
      steps: clicks(1),
    });
    const foreign = await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1) }, {}, 'globex');
    expect([unknown.statusCode, foreign.statusCode]).toEqual([404, 404]);
    expect(errorOf(foreign)).toEqual({
      code: 'SESSION_NOT_FOUND',
      message: `session ${sessionId} not found`,
    });
    expect(store.appended).toBe(1);
  });

  it('refuses a session id that is not a UUID with 400 naming params.id', async () => {
    const { post } = await setup();
    const res = await post('/v1/sessions/not.a.uuid/steps', { steps: clicks(1) });
    expect(res.statusCode).toBe(400);
    expect(errorOf(res).details?.[0]?.field).toBe('params.id');
  });

  it('answers 409 ILLEGAL_TRANSITION to steps for a closing session, appending nothing', async () => {
    const { open, post, store } = await setup();
    const sessionId = await open();
    await post(`/v1/sessions/${sessionId}/close`);
    const res = await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1) });
    expect(res.statusCode).toBe(409);
    expect(errorOf(res).code).toBe('ILLEGAL_TRANSITION');
    expect(store.appended).toBe(2);
  });

  it.each(['', 'has space', 'x'.repeat(201), 'slash/no', 'ümlaut'])(
    'refuses the Idempotency-Key %j with 400 naming the header',
    async (key) => {
      const { open, post, store } = await setup();
      const sessionId = await open();
      const res = await post(
        `/v1/sessions/${sessionId}/steps`,
        { steps: clicks(1) },
        { 'idempotency-key': key },
      );
      expect(res.statusCode).toBe(400);
      expect(errorOf(res).details?.[0]?.field).toBe('headers.idempotency-key');
      expect(store.appended).toBe(1);
    },
  );

  it('runs concurrent submissions to one session one after another: distinct contiguous seqs, no conflict', async () => {
    const { open, post, store } = await setup();
    const sessionId = await open();
    const responses = await Promise.all(
      Array.from({ length: 30 }, () => post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(2) })),
    );
    expect(responses.map((r) => r.statusCode)).toEqual(Array(30).fill(202));
    const seqs = responses
      .flatMap((r) => r.json().steps.map((s: { seq: number }) => s.seq))
      .sort((a, b) => a - b);
    expect(seqs).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(store.conflicts).toBe(0);
  });

  it('decides again when another writer appended in between: still 202, never a 500', async () => {
    const { open, post, store, memory, stream } = await setup();
    const sessionId = await open();
    const other = new SessionCommandHandler({ store: memory });
    store.beforeAppend = async () => {
      store.beforeAppend = null;
      await other.handle({
        type: 'SubmitSteps',
        commandId: '0195f2a0-2222-7000-8000-000000000000',
        sessionId,
        tenantId: 'acme',
        at: NOW.toISOString(),
        actor: { kind: 'robot', id: 'other' },
        steps: [{ stepId: 'theirs', step: { action: 'click', selector: '#t' } }],
      });
    };
    const res = await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1) });
    expect(res.statusCode).toBe(202);
    expect(res.json().steps[0].seq).toBe(2);
    expect(store.conflicts).toBe(1);
    expect((await stream(sessionId)).map((e) => (e.data as { seq?: number }).seq)).toEqual([undefined, 1, 2]);
  });

  it('answers 503 with Retry-After when the session never stops changing, appending nothing of its own', async () => {
    const { open, post, store, memory } = await setup({ exhaustedRetries: 1 });
    const sessionId = await open();
    const other = new SessionCommandHandler({ store: memory });
    let n = 0;
    store.beforeAppend = async () => {
      await other.handle({
        type: 'SubmitSteps',
        commandId: `0195f2a0-3333-7000-8000-${String(++n).padStart(12, '0')}`,
        sessionId,
        tenantId: 'acme',
        at: NOW.toISOString(),
        actor: { kind: 'robot', id: 'other' },
        steps: [{ stepId: `theirs-${n}`, step: { action: 'click', selector: '#t' } }],
      });
    };
    const res = await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1) });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('1');
    expect(errorOf(res).code).toBe('CONCURRENCY_EXHAUSTED');
    // 2 rounds of 3 attempts each, every one beaten by the other writer.
    expect(store.conflicts).toBe(6);
    expect(store.appended).toBe(1);
  });

  it('answers 503 when the event store is unavailable and 500 with a hidden message on a bug', async () => {
    const { open, post, store } = await setup();
    const sessionId = await open();
    store.failAppend = new EventStoreUnavailableError('nats timeout at 10.0.0.7');
    const unavailable = await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1) });
    store.failAppend = new TypeError('secret internals');
    const bug = await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1) });
    expect(unavailable.statusCode).toBe(503);
    expect(unavailable.body).not.toContain('10.0.0.7');
    expect(bug.statusCode).toBe(500);
    expect(errorOf(bug)).toEqual({ code: 'INTERNAL', message: 'internal error' });
  });
});

describe('POST /v1/sessions/:id/close', () => {
  it('asks the session to close: 202 closing; a second close is 202 and appends nothing', async () => {
    const { open, post, store, stream } = await setup();
    const sessionId = await open();
    const first = await post(`/v1/sessions/${sessionId}/close`, { reason: 'done for today' });
    const second = await post(`/v1/sessions/${sessionId}/close`);
    expect([first.statusCode, second.statusCode]).toEqual([202, 202]);
    expect(first.json()).toEqual({ sessionId, status: 'closing' });
    expect(second.json()).toEqual({ sessionId, status: 'closing' });
    expect(store.appended).toBe(2);
    expect((await stream(sessionId))[1]).toMatchObject({
      type: 'SessionCloseRequested',
      data: { reason: 'done for today' },
    });
  });

  it('answers 404 for another tenant’s session', async () => {
    const { open, post, store } = await setup();
    const sessionId = await open();
    const res = await post(`/v1/sessions/${sessionId}/close`, undefined, {}, 'globex');
    expect(res.statusCode).toBe(404);
    expect(store.appended).toBe(1);
  });
});

describe('the rest of the surface', () => {
  it('refuses a request without credentials with 401 before reading its body', async () => {
    const { post, store } = await setup();
    const res = await post('/v1/sessions', { labels: {} }, {}, null);
    expect(res.statusCode).toBe(401);
    expect(errorOf(res).code).toBe('UNAUTHENTICATED');
    expect(store.appended).toBe(0);
  });

  it('serves the OpenAPI document and the probes without credentials', async () => {
    const { inject } = await setup();
    const doc = await inject({ method: 'GET', url: '/openapi.json', tenant: null });
    expect(doc.statusCode).toBe(200);
    const paths = Object.keys(doc.json().paths);
    expect(paths).toEqual(
      expect.arrayContaining([
        '/v1/sessions',
        '/v1/sessions/{id}/steps',
        '/v1/sessions/{id}/close',
        '/v1/sessions/{id}/resume',
        '/v1/sessions/{id}/cancel',
      ]),
    );
    for (const action of ['resume', 'cancel']) {
      const route = doc.json().paths[`/v1/sessions/{id}/${action}`].post;
      expect(route.tags).toEqual(['sessions']);
      expect(Object.keys(route.responses)).toEqual(expect.arrayContaining(['202', '404', '409']));
    }
    expect(paths).not.toContain('/openapi.json');
    // Both credentials are described; every operation needs one, with its scopes, and the probes need none.
    const described = doc.json();
    expect(Object.keys(described.components.securitySchemes)).toEqual(['apiKey', 'bearer']);
    expect(described.components.securitySchemes.apiKey).toMatchObject({ in: 'header', name: 'X-API-Key' });
    expect(described.components.securitySchemes.bearer).toMatchObject({ type: 'http', scheme: 'bearer' });
    expect(described.security).toEqual([{ apiKey: [] }, { bearer: [] }]);
    expect(described.paths['/healthz'].get.security).toEqual([]);
    expect(described.paths['/v1/sessions'].post.security).toBeUndefined();
    expect(described.paths['/v1/sessions'].post['x-scopes']).toEqual(['sessions:write']);
    const steps = doc.json().paths['/v1/sessions/{id}/steps'].post;
    expect(steps.requestBody.content['application/json'].schema.properties.steps.maxItems).toBe(500);
    expect((await inject({ method: 'GET', url: '/healthz', tenant: null })).statusCode).toBe(200);
    expect((await inject({ method: 'GET', url: '/readyz', tenant: null })).json()).toMatchObject({
      status: 'ready',
    });
  });

  it('counts commands by type and outcome', async () => {
    const { open, post, registry } = await setup();
    const sessionId = await open();
    await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1) });
    await post(`/v1/sessions/${sessionId}/steps`, { steps: [] });
    await post(`/v1/sessions/${sessionId}/close`);
    await post(`/v1/sessions/${sessionId}/close`);
    await post(`/v1/sessions/${sessionId}/steps`, { steps: clicks(1) });
    await post(`/v1/sessions/${sessionId}/resume`);
    await post(`/v1/sessions/${sessionId}/cancel`, { reason: 7 });
    await post(`/v1/sessions/${sessionId}/cancel`);
    const text = await registry.metrics();
    expect(text).toContain('rpa_commands_total{type="OpenSession",outcome="accepted"} 1');
    expect(text).toContain('rpa_commands_total{type="SubmitSteps",outcome="accepted"} 1');
    expect(text).toContain('rpa_commands_total{type="SubmitSteps",outcome="invalid"} 1');
    expect(text).toContain('rpa_commands_total{type="SubmitSteps",outcome="rejected"} 1');
    expect(text).toContain('rpa_commands_total{type="RequestClose",outcome="duplicate"} 1');
    expect(text).toContain('rpa_commands_total{type="ResumeSession",outcome="rejected"} 1');
    expect(text).toContain('rpa_commands_total{type="CancelSession",outcome="invalid"} 1');
    expect(text).toContain('rpa_commands_total{type="CancelSession",outcome="accepted"} 1');
    expect(text).toMatch(/rpa_command_duration_seconds_count\{type="SubmitSteps",outcome="accepted"\} 1/);
  });
});
