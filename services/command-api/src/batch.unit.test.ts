import type { FastifyInstance } from 'fastify';
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
import { MAX_BATCH_ITEMS } from './http/schemas.js';
import { ObservedStore } from './testing/observedStore.js';

const headerTenant: Authenticator = async (request) => {
  const tenant = request.headers['x-test-tenant'];
  return typeof tenant === 'string'
    ? { tenantId: tenant, actor: { kind: 'api-key', id: `key-${tenant}` }, scopes: ['sessions:write'] }
    : null;
};

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function setup(limits: Partial<CommandApiLimits> = {}) {
  const memory = new InMemoryEventStore();
  const store = new ObservedStore(memory);
  const registry = new Registry();
  app = await buildApp({
    handler: new SessionCommandHandler({ store }),
    authenticator: headerTenant,
    logger: silentLogger,
    registry,
    readiness: [],
    limits,
  });
  const built = app;
  const post = (url: string, body?: unknown, headers: Record<string, string> = { 'x-test-tenant': 'acme' }) =>
    built.inject({
      method: 'POST',
      url,
      headers,
      ...(body === undefined ? {} : { payload: body as object }),
    });
  const stream = (sessionId: string) => memory.readStream(sessionStreamId(sessionId));
  return { store, registry, post, stream, inject: built.inject.bind(built) };
}

const clicks = (n: number) => Array.from({ length: n }, (_, i) => ({ action: 'click', selector: `#b${i}` }));

describe('POST /v1/sessions:batch routing', () => {
  it('reaches the batch route, and leaves the /v1/sessions/:id/... routes and unknown verbs alone', async () => {
    const { post } = await setup();
    const batch = await post('/v1/sessions:batch', { items: [{ steps: clicks(1) }] });
    expect(batch.statusCode).toBe(200);
    const [item] = batch.json().items;
    expect(item).toMatchObject({ index: 0, status: 201, opened: true, version: 1 });

    const steps = await post(`/v1/sessions/${item.sessionId}/steps`, { steps: clicks(1) });
    expect(steps.statusCode).toBe(202);
    expect(steps.json().steps[0].seq).toBe(2);
    expect((await post(`/v1/sessions/${item.sessionId}/close`)).statusCode).toBe(202);
    expect((await post('/v1/sessions', {})).statusCode).toBe(201);
    const other = await post('/v1/sessions:purge', { items: [{}] });
    expect(other.statusCode).toBe(404);
    expect(other.json().error.code).toBe('ROUTE_NOT_FOUND');
    // "batch" is not a session id: the colon verb is not a path parameter.
    expect((await post('/v1/sessions/batch/steps', { steps: clicks(1) })).statusCode).toBe(400);
  });

  it('is in the OpenAPI document with the item schema, its limits and the 200 answer', async () => {
    const { inject } = await setup();
    const doc = (await inject({ method: 'GET', url: '/openapi.json' })).json();
    const route = doc.paths['/v1/sessions:batch'].post;
    expect(route.tags).toEqual(['sessions']);
    expect(route.description).toContain('200');
    const items = route.requestBody.content['application/json'].schema.properties.items;
    expect([items.minItems, items.maxItems]).toEqual([1, MAX_BATCH_ITEMS]);
    expect(Object.keys(items.items.properties)).toEqual(
      expect.arrayContaining(['labels', 'browser', 'idleTimeoutMs', 'steps', 'clientRef']),
    );
    expect(items.items.properties.steps.maxItems).toBe(500);
    expect(items.items.properties.clientRef.maxLength).toBe(200);
    expect(Object.keys(route.responses)).toEqual(expect.arrayContaining(['200', '400', '413', '422']));
    expect(route.parameters.map((p: { name: string }) => p.name)).toContain('idempotency-key');
  });
});

describe('POST /v1/sessions:batch whole-request refusals', () => {
  it.each([
    ['no body', undefined, 'body'],
    ['an empty object', {}, 'body.items'],
    ['items that are not an array', { items: 'all of them' }, 'body.items'],
    ['no items', { items: [] }, 'body.items'],
    [`${MAX_BATCH_ITEMS + 1} items`, { items: Array(MAX_BATCH_ITEMS + 1).fill({}) }, 'body.items'],
  ])('refuses %s with 400 naming %s, appending nothing', async (_name, body, field) => {
    const { post, store } = await setup();
    const res = await post('/v1/sessions:batch', body);
    expect(res.statusCode).toBe(400);
    expect(res.json().error.details.map((d: { field: string }) => d.field)).toContain(field);
    expect(store.appended).toBe(0);
  });

  it('refuses an unknown top-level field and an unauthenticated call, appending nothing', async () => {
    const { post, store } = await setup();
    const extra = await post('/v1/sessions:batch', { items: [{}], dryRun: true });
    expect(extra.statusCode).toBe(400);
    expect(extra.json().error.message).toContain('dryRun');
    const anonymous = await post('/v1/sessions:batch', { items: [{}] }, {});
    expect(anonymous.statusCode).toBe(401);
    expect(store.appended).toBe(0);
  });

  it('refuses a batch whose every item is invalid with 400, naming each item’s field, and appends nothing', async () => {
    const { post, store } = await setup();
    const res = await post('/v1/sessions:batch', {
      items: [{ priority: 'urgent' }, { steps: [{ action: 'navigate', url: 'file:///etc/passwd' }] }],
    });
    expect(res.statusCode).toBe(400);
    const { error } = res.json();
    expect(error.code).toBe('VALIDATION_FAILED');
    expect(error.message).toContain('items.0');
    expect(error.details.items.map((i: { status: number; opened: boolean }) => [i.status, i.opened])).toEqual(
      [
        [400, false],
        [400, false],
      ],
    );
    expect(JSON.stringify(error.details.items[1].error)).toContain('url');
    expect(store.appended).toBe(0);
    // One valid item is enough for the batch to be taken, the invalid one answered in its place.
    const mixed = await post('/v1/sessions:batch', { items: [{ priority: 'urgent' }, {}] });
    expect(mixed.statusCode).toBe(200);
    expect(mixed.json().items.map((i: { status: number }) => i.status)).toEqual([400, 201]);
  });

  it('takes a batch larger than a single request may be, and refuses one over its own limit with 413', async () => {
    const { post, store } = await setup({ batchBodyLimitBytes: 512 * 1024 });
    const fill = { action: 'fill', selector: '#a', value: 'x'.repeat(1_000) };
    // About 300 kB: over the 256 KiB of the single routes, under the batch's own limit.
    const big = { items: Array.from({ length: 10 }, () => ({ steps: Array(30).fill(fill) })) };
    const ok = await post('/v1/sessions:batch', big);
    expect(ok.statusCode).toBe(200);
    expect(ok.json().items.map((i: { status: number }) => i.status)).toEqual(Array(10).fill(201));
    const appended = store.appended;
    expect(appended).toBe(10 * 31);

    const tooBig = await post('/v1/sessions:batch', { items: [...big.items, ...big.items] });
    expect(tooBig.statusCode).toBe(413);
    expect(tooBig.json().error.code).toBe('FST_ERR_CTP_BODY_TOO_LARGE');
    expect(store.appended).toBe(appended);
  });
});

describe('POST /v1/sessions:batch items', () => {
  it('reports a session that opened but did not take its steps, with its id and the error', async () => {
    const { post, store, stream } = await setup();
    store.beforeAppend = async (events) => {
      if (events[0]?.type === 'StepSubmitted')
        throw new EventStoreUnavailableError('nats timeout at 10.0.0.7');
    };
    const res = await post('/v1/sessions:batch', { items: [{ steps: clicks(2), clientRef: 'c1' }, {}] });
    expect(res.statusCode).toBe(200);
    const [partial, empty] = res.json().items;
    expect(partial).toMatchObject({
      index: 0,
      clientRef: 'c1',
      status: 503,
      opened: true,
      version: 0,
      error: { code: 'UNAVAILABLE' },
    });
    expect(partial.error.message).toContain(`session ${partial.sessionId} was opened`);
    expect(res.body).not.toContain('10.0.0.7');
    expect((await stream(partial.sessionId)).map((e) => e.type)).toEqual(['SessionOpened']);
    expect(empty).toMatchObject({ index: 1, status: 201, opened: true, version: 0, steps: [] });
  });

  it('with an Idempotency-Key: retrying a batch whose steps failed submits them to the session it opened', async () => {
    const { post, store, stream } = await setup();
    const headers = { 'x-test-tenant': 'acme', 'idempotency-key': 'retry-1' };
    const body = { items: [{ steps: clicks(2) }] };
    store.beforeAppend = async (events) => {
      if (events[0]?.type === 'StepSubmitted') throw new EventStoreUnavailableError('down');
    };
    const [failed] = (await post('/v1/sessions:batch', body, headers)).json().items;
    expect(failed).toMatchObject({ status: 503, opened: true });
    store.beforeAppend = null;
    const [retried] = (await post('/v1/sessions:batch', body, headers)).json().items;
    expect(retried).toMatchObject({ status: 201, opened: true, sessionId: failed.sessionId, version: 2 });
    expect((await stream(failed.sessionId)).map((e) => e.type)).toEqual([
      'SessionOpened',
      'StepSubmitted',
      'StepSubmitted',
    ]);
  });

  it('reports an item whose session could not be opened, without a session id', async () => {
    const { post, store } = await setup();
    store.beforeAppend = async () => {
      throw new TypeError('secret internals');
    };
    const res = await post('/v1/sessions:batch', { items: [{}] });
    expect(res.statusCode).toBe(200);
    expect(res.json().items).toEqual([
      { index: 0, status: 500, opened: false, error: { code: 'INTERNAL', message: 'internal error' } },
    ]);
  });

  it('runs at most batchConcurrency items at once', async () => {
    const { post, store } = await setup({ batchConcurrency: 3 });
    let inFlight = 0;
    let most = 0;
    store.beforeAppend = async () => {
      most = Math.max(most, ++inFlight);
      // Let every other worker reach its append before this one lands.
      await new Promise((resolve) => setImmediate(resolve));
      inFlight--;
    };
    const res = await post('/v1/sessions:batch', { items: Array.from({ length: 20 }, () => ({})) });
    expect(res.json().items).toHaveLength(20);
    expect(most).toBe(3);
  });

  it('counts items by outcome', async () => {
    const { post, registry } = await setup();
    const headers = { 'x-test-tenant': 'acme', 'idempotency-key': 'count-1' };
    const body = { items: [{ steps: clicks(1) }, {}, { idleTimeoutMs: 1 }] };
    await post('/v1/sessions:batch', body, headers);
    await post('/v1/sessions:batch', body, headers);
    const text = await registry.metrics();
    expect(text).toContain('rpa_batch_items_total{outcome="accepted"} 2');
    expect(text).toContain('rpa_batch_items_total{outcome="duplicate"} 2');
    expect(text).toContain('rpa_batch_items_total{outcome="invalid"} 2');
    // The commands the items issue are counted like any other.
    expect(text).toContain('rpa_commands_total{type="OpenSession",outcome="accepted"} 2');
    expect(text).toContain('rpa_commands_total{type="SubmitSteps",outcome="duplicate"} 1');
  });
});
