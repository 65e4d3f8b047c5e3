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
import { buildApp } from './app.js';
import { MAX_BATCH_ITEMS } from './http/schemas.js';
import { keyedBatchSessionId } from './ids.js';
import { ObservedStore } from './testing/observedStore.js';

interface ItemResult {
  index: number;
  clientRef?: string;
  status: number;
  opened: boolean;
  sessionId?: string;
  version?: number;
  steps?: Array<{ stepId: string; seq: number }>;
  error?: { code: string; message: string; details?: Array<{ field: string; message: string }> };
}

let server: NatsServerHandle;
let nc: NatsConnection;
let store: EventStore;
const apps: FastifyInstance[] = [];

/** One command API replica over the shared store: its own handler, cache and lanes. */
async function replica(tenant = 'acme') {
  const counted = new ObservedStore(store);
  const app = await buildApp({
    handler: new SessionCommandHandler({ store: counted }),
    authenticator: singleTenantAuthenticator(tenant),
    logger: silentLogger,
    registry: new Registry(),
    readiness: [],
  });
  apps.push(app);
  const batch = (body: unknown, headers: Record<string, string> = {}) =>
    app.inject({ method: 'POST', url: '/v1/sessions:batch', headers, payload: body as object });
  return { batch, counted };
}

const navigate = (url: string) => ({ action: 'navigate', url });
const clicks = (n: number, tag = 'b') =>
  Array.from({ length: n }, (_, i) => ({ action: 'click', selector: `#${tag}${i}` }));
const eventsOf = (sessionId: string) => store.readStream(sessionStreamId(sessionId));
/** A session as a fresh command handler folds it from the store, with nothing cached. */
const loadFresh = (sessionId: string) => new SessionCommandHandler({ store }).load(sessionId);
const itemsOf = (res: { json: <T>() => T }) => res.json<{ items: ItemResult[] }>().items;

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectNats(server.url, 'command-api-batch-int');
  store = await JetStreamEventStore.create(nc, new Topology(uniquePrefix()), { logger: silentLogger });
});

afterAll(async () => {
  for (const app of apps) await app.close();
  await store?.close();
  await nc?.drain();
  await server?.stop();
});

describe('POST /v1/sessions:batch on the JetStream event store', () => {
  it('opens every item of a valid batch with its steps, in request order', async () => {
    const { batch, counted } = await replica();
    const items: Array<{
      labels?: Record<string, string>;
      browser?: object;
      idleTimeoutMs?: number;
      steps?: object[];
      clientRef?: string;
    }> = [
      { labels: { row: '0' }, steps: [navigate('https://example.com/a'), ...clicks(2)], clientRef: 'r0' },
      { browser: { locale: 'de-DE' }, idleTimeoutMs: 60_000, steps: clicks(1) },
      { clientRef: 'r2' },
      ...Array.from({ length: 9 }, (_, i) => ({ labels: { row: String(i + 3) }, steps: clicks(3, `x${i}`) })),
    ];
    const res = await batch({ items });
    expect(res.statusCode).toBe(200);
    const results = itemsOf(res);
    expect(results.map((r) => [r.index, r.status, r.opened])).toEqual(items.map((_, i) => [i, 201, true]));
    expect(results.map((r) => r.clientRef)).toEqual(['r0', undefined, 'r2', ...Array(9).fill(undefined)]);
    expect(new Set(results.map((r) => r.sessionId)).size).toBe(items.length);

    for (const [i, item] of items.entries()) {
      const result = results[i]!;
      const sessionId = result.sessionId!;
      const n = item.steps?.length ?? 0;
      expect(result.version).toBe(n);
      expect(result.steps!.map((s) => s.seq)).toEqual(Array.from({ length: n }, (_, k) => k + 1));
      const events = await eventsOf(sessionId);
      expect(events.map((e) => e.type)).toEqual(['SessionOpened', ...Array(n).fill('StepSubmitted')]);
      expect(events[0]).toMatchObject({
        data: {
          labels: item.labels ?? {},
          browser: item.browser ?? {},
          idleTimeoutMs: item.idleTimeoutMs ?? null,
        },
        metadata: { tenantId: 'acme', sessionId, commandType: 'OpenSession' },
      });
      expect(events.slice(1).map((e) => e.data)).toEqual(
        (item.steps ?? []).map((step, k) => ({ stepId: result.steps![k]!.stepId, seq: k + 1, step })),
      );
      const { state, version } = await loadFresh(sessionId);
      expect(version).toBe(n);
      if (state.status !== 'open') throw new TypeError(`session ${sessionId} is ${state.status}`);
      expect(state.order).toEqual(result.steps!.map((s) => s.stepId));
    }
    expect(counted.appended).toBe(items.reduce((sum, item) => sum + 1 + (item.steps?.length ?? 0), 0));
  });

  it('answers a mixed batch item by item: the valid ones open, each invalid one names its fields and appends nothing', async () => {
    const { batch, counted } = await replica();
    const key = `mixed-${uniquePrefix()}`;
    const items = [
      { steps: clicks(2), clientRef: 'ok-0' },
      { steps: [...clicks(1), navigate('file:///etc/passwd')], clientRef: 'bad-url' },
      { idleTimeoutMs: 10, labels: { 'bad label!': 'x' } },
      { steps: clicks(1), script: 'alert(1)' },
      {},
      { steps: [{ action: 'evaluate', code: '1' }] },
    ];
    const res = await batch({ items }, { 'idempotency-key': key });
    expect(res.statusCode).toBe(200);
    const results = itemsOf(res);
    const [ok0, badUrl, badFields, unknownField, ok4, badAction] = results;
    expect(ok0).toMatchObject({ index: 0, clientRef: 'ok-0', status: 201, opened: true, version: 2 });
    expect(ok4).toMatchObject({ index: 4, status: 201, opened: true, version: 0, steps: [] });
    expect(badUrl).toEqual({
      index: 1,
      clientRef: 'bad-url',
      status: 400,
      opened: false,
      error: {
        code: 'VALIDATION_FAILED',
        message: 'items.1.steps.1.url: must be an absolute http:// or https:// URL',
        details: [{ field: 'items.1.steps.1.url', message: 'must be an absolute http:// or https:// URL' }],
      },
    });
    expect(badFields?.error?.details?.map((d) => d.field).sort()).toEqual([
      'items.2.idleTimeoutMs',
      'items.2.labels.bad label!',
    ]);
    expect(unknownField?.error?.details?.[0]?.field).toBe('items.3');
    expect(unknownField?.error?.message).toContain('"script"');
    expect(badAction?.error?.details?.[0]?.field).toBe('items.5.steps.0.action');
    for (const refused of [badUrl, badFields, unknownField, badAction]) {
      expect(refused).toMatchObject({ status: 400, opened: false });
      expect(refused).not.toHaveProperty('sessionId');
      // The session a refused keyed item would have opened does not exist.
      expect(await eventsOf(keyedBatchSessionId('acme', key, refused!.index))).toEqual([]);
    }
    expect(counted.appended).toBe(1 + 2 + 1);
    expect((await eventsOf(ok0!.sessionId!)).map((e) => e.type)).toEqual([
      'SessionOpened',
      'StepSubmitted',
      'StepSubmitted',
    ]);
    expect((await loadFresh(ok4!.sessionId!)).state.status).toBe('open');
  });

  it(`refuses ${MAX_BATCH_ITEMS + 1} items with 400, appending nothing`, async () => {
    const { batch, counted } = await replica();
    const res = await batch({
      items: Array.from({ length: MAX_BATCH_ITEMS + 1 }, () => ({ steps: clicks(1) })),
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().error).toMatchObject({
      code: 'VALIDATION_FAILED',
      details: [expect.objectContaining({ field: 'body.items' })],
    });
    expect(counted.appended).toBe(0);
  });

  it('opens exactly the maximum', async () => {
    const { batch, counted } = await replica();
    const res = await batch({ items: Array.from({ length: MAX_BATCH_ITEMS }, () => ({})) });
    expect(res.statusCode).toBe(200);
    expect(itemsOf(res).map((r) => r.status)).toEqual(Array(MAX_BATCH_ITEMS).fill(201));
    expect(counted.appended).toBe(MAX_BATCH_ITEMS);
  });

  it('with an Idempotency-Key: a repeat, even on another replica, answers the first response and appends nothing; another body is 422', async () => {
    const a = await replica();
    const b = await replica();
    const headers = { 'idempotency-key': `batch-${uniquePrefix()}` };
    const body = {
      items: [
        { labels: { a: '1' }, steps: clicks(3), clientRef: 'first' },
        { steps: [navigate('ftp://example.com/')] },
        { steps: [navigate('https://example.com/')] },
      ],
    };
    const first = await a.batch(body, headers);
    expect(first.statusCode).toBe(200);
    expect(itemsOf(first).map((r) => r.status)).toEqual([201, 400, 201]);
    expect(a.counted.appended).toBe(4 + 2);

    // The same batch with keys reordered and a default spelled out is the same request.
    const same = {
      items: [
        { clientRef: 'first', steps: clicks(3), idleTimeoutMs: null, labels: { a: '1' } },
        body.items[1],
        { browser: {}, steps: [navigate('https://example.com/')] },
      ],
    };
    const [again, concurrent1, concurrent2] = await Promise.all([
      b.batch(same, headers),
      a.batch(body, headers),
      b.batch(body, headers),
    ]);
    for (const r of [again, concurrent1, concurrent2]) {
      expect(r.statusCode).toBe(200);
      expect(r.json()).toEqual(first.json());
    }

    const changed = await b.batch({ items: [body.items[0], body.items[2]] }, headers);
    expect(changed.statusCode).toBe(422);
    expect(changed.json().error.code).toBe('IDEMPOTENCY_MISMATCH');
    const changedRef = await a.batch(
      { items: [{ ...body.items[0], clientRef: 'other' }, body.items[1], body.items[2]] },
      headers,
    );
    expect(changedRef.statusCode).toBe(422);

    expect(a.counted.appended + b.counted.appended).toBe(6);
    const [opened0, , opened2] = itemsOf(first);
    expect((await eventsOf(opened0!.sessionId!)).map((e) => e.type)).toEqual([
      'SessionOpened',
      'StepSubmitted',
      'StepSubmitted',
      'StepSubmitted',
    ]);
    expect(await eventsOf(opened2!.sessionId!)).toHaveLength(2);
    expect(opened0!.sessionId).toBe(keyedBatchSessionId('acme', headers['idempotency-key'], 0));
  });

  it('with an Idempotency-Key: another tenant’s same key opens its own sessions', async () => {
    const acme = await replica('acme');
    const globex = await replica('globex');
    const headers = { 'idempotency-key': `shared-${uniquePrefix()}` };
    const body = { items: [{ steps: clicks(1) }] };
    const [x] = itemsOf(await acme.batch(body, headers));
    const [y] = itemsOf(await globex.batch({ items: [{ steps: clicks(2) }] }, headers));
    expect([x?.status, y?.status]).toEqual([201, 201]);
    expect(x?.sessionId).not.toBe(y?.sessionId);
    expect((await eventsOf(y!.sessionId!))[0]?.metadata).toMatchObject({ tenantId: 'globex' });
  });
});
