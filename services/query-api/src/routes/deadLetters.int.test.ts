import { Kvm, type KV } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connectNats,
  createMetricsRegistry,
  openEventStore,
  silentLogger,
  singleTenantAuthenticator,
  Topology,
  type EventStore,
  type NatsConnection,
  type SessionDocument,
} from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';
import { buildApp } from '../app.js';
import { RobotIndex } from '../index/robotIndex.js';
import { SessionIndex } from '../index/sessionIndex.js';
import { putDocument, sessionDocument } from '../testing/sessionFixtures.js';

interface DeadLetterPage {
  items: Array<{ sessionId: string; stepId: string; seq: number; reason: string; at: string }>;
  nextCursor: string | null;
}

/** A failed-for-good step, as the projector writes it once the step is dead-lettered. */
function deadStep(seq: number, at: string, reason = 'attempts_exhausted') {
  return {
    stepId: `step-${seq}`,
    seq,
    action: 'navigate',
    replay: 'safe',
    status: 'failed',
    attempts: 3,
    output: null,
    error: { code: 'TIMEOUT', message: 'navigation timed out' },
    submittedAt: '2030-01-01T00:00:00.000Z',
    startedAt: '2030-01-01T00:00:01.000Z',
    finishedAt: at,
    durationMs: 1000,
    nextAttemptAt: null,
    deadLetter: { reason, attempts: 3, at },
  };
}

const withSteps = (steps: unknown[]) => steps as SessionDocument['steps'];

describe('dead letters and the new session statuses over real NATS', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let kv: KV;
  let topology: Topology;
  let eventStore: EventStore;
  let index: SessionIndex;
  let acme: FastifyInstance;
  let other: FastifyInstance;

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'dead-letters-test');
    topology = new Topology(uniquePrefix());
    kv = await new Kvm(nc).create(topology.sessionsBucket);
    const artifacts = await new Objm(nc).create(topology.artifactsBucket);
    eventStore = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
    const docs = [
      sessionDocument({
        sessionId: 'paused-1',
        status: 'paused',
        pause: { reason: 'step_failed', stepId: 'step-1', at: '2030-01-01T00:02:00.000Z' },
        steps: withSteps([deadStep(1, '2030-01-01T00:02:00.000Z')]),
        position: 1,
      }),
      sessionDocument({
        sessionId: 'failed-1',
        status: 'failed',
        steps: withSteps([
          deadStep(1, '2030-01-01T00:05:00.000Z', 'not_retryable'),
          deadStep(2, '2030-01-01T00:04:00.000Z', 'max_deliveries'),
        ]),
        position: 2,
      }),
      sessionDocument({ sessionId: 'queued-1', status: 'queued', position: 3 }),
      sessionDocument({ sessionId: 'open-1', status: 'open', position: 4 }),
      sessionDocument({
        sessionId: 'theirs',
        tenantId: 'other',
        status: 'paused',
        steps: withSteps([deadStep(1, '2030-01-01T00:09:00.000Z')]),
        position: 5,
      }),
    ];
    for (const doc of docs) await putDocument(kv, topology, doc);
    index = new SessionIndex({ kv, logger: silentLogger });
    index.start();
    await index.ready;
    const robots = new RobotIndex({
      kv: await new Kvm(nc).create(topology.robotsBucket, topology.robotsBucketOptions()),
      logger: silentLogger,
    });
    const app = (tenant: string) =>
      buildApp({
        index,
        robots,
        eventStore,
        artifacts,
        authenticator: singleTenantAuthenticator(tenant),
        logger: silentLogger,
        registry: createMetricsRegistry('dead-letters-test'),
        readiness: [],
      });
    acme = await app('acme');
    other = await app('other');
  });

  afterAll(async () => {
    await acme?.close();
    await other?.close();
    await index?.stop();
    await eventStore?.close();
    await nc?.close();
    await server?.stop();
  });

  const get = (app: FastifyInstance, url: string) => app.inject({ method: 'GET', url });

  it("lists the tenant's dead-lettered steps across sessions, newest first, and none of another tenant's", async () => {
    const res = await get(acme, '/v1/dead-letters');
    expect(res.statusCode).toBe(200);
    const page = res.json<DeadLetterPage>();
    expect(page.items.map((i) => [i.sessionId, i.seq, i.reason])).toEqual([
      ['failed-1', 1, 'not_retryable'],
      ['failed-1', 2, 'max_deliveries'],
      ['paused-1', 1, 'attempts_exhausted'],
    ]);
    expect(page.items[0]).toEqual({
      sessionId: 'failed-1',
      stepId: 'step-1',
      seq: 1,
      action: 'navigate',
      reason: 'not_retryable',
      attempts: 3,
      error: { code: 'TIMEOUT', message: 'navigation timed out' },
      at: '2030-01-01T00:05:00.000Z',
    });
    expect(page.nextCursor).toBeNull();
    const theirs = (await get(other, '/v1/dead-letters')).json<DeadLetterPage>();
    expect(theirs.items.map((i) => i.sessionId)).toEqual(['theirs']);
  });

  it('pages with a cursor and filters by session and reason', async () => {
    const first = (await get(acme, '/v1/dead-letters?limit=2')).json<DeadLetterPage>();
    expect(first.items).toHaveLength(2);
    expect(first.nextCursor).not.toBeNull();
    const second = (
      await get(acme, `/v1/dead-letters?limit=2&cursor=${first.nextCursor}`)
    ).json<DeadLetterPage>();
    expect(second.items.map((i) => i.sessionId)).toEqual(['paused-1']);
    expect(second.nextCursor).toBeNull();

    const ofSession = (await get(acme, '/v1/dead-letters?sessionId=paused-1')).json<DeadLetterPage>();
    expect(ofSession.items.map((i) => i.stepId)).toEqual(['step-1']);
    const ofReason = (await get(acme, '/v1/dead-letters?reason=max_deliveries')).json<DeadLetterPage>();
    expect(ofReason.items.map((i) => [i.sessionId, i.seq])).toEqual([['failed-1', 2]]);
    // Another tenant's session is invisible even by id.
    expect((await get(acme, '/v1/dead-letters?sessionId=theirs')).json<DeadLetterPage>().items).toEqual([]);
  });

  it('drops a step from the list once it is retried (its dead letter cleared)', async () => {
    await putDocument(
      kv,
      topology,
      sessionDocument({
        sessionId: 'paused-1',
        status: 'open',
        steps: withSteps([
          { ...deadStep(1, '2030-01-01T00:02:00.000Z'), status: 'queued', deadLetter: null },
        ]),
        position: 6,
      }),
    );
    await waitFor(async () => index.get('acme', 'paused-1')?.position === 6, { timeoutMs: 5_000 });
    const page = (await get(acme, '/v1/dead-letters')).json<DeadLetterPage>();
    expect(page.items.map((i) => i.sessionId)).toEqual(['failed-1', 'failed-1']);
  });

  it.each([
    ['reason=lost', 'querystring.reason'],
    ['limit=0', 'querystring.limit'],
    ['cursor=forged', 'querystring.cursor'],
    ['sessionId=has%20space', 'querystring.sessionId'],
  ])('refuses ?%s with 400 naming %s', async (query, field) => {
    const res = await get(acme, `/v1/dead-letters?${query}`);
    expect(res.statusCode).toBe(400);
    expect(res.json().error.details[0].field).toBe(field);
  });

  it.each([
    ['queued', ['queued-1']],
    ['failed', ['failed-1']],
  ])('filters the session listing by the status %s', async (status, ids) => {
    const res = await get(acme, `/v1/sessions?status=${status}`);
    expect(res.statusCode).toBe(200);
    expect(res.json<{ items: SessionDocument[] }>().items.map((d) => d.sessionId)).toEqual(ids);
  });

  it('filters the session listing by paused', async () => {
    await putDocument(
      kv,
      topology,
      sessionDocument({
        sessionId: 'paused-2',
        status: 'paused',
        pause: { reason: 'operator', stepId: null, at: '2030-01-01T00:06:00.000Z' },
        position: 7,
      }),
    );
    await waitFor(async () => index.get('acme', 'paused-2') !== undefined, { timeoutMs: 5_000 });
    const res = await get(acme, '/v1/sessions?status=paused');
    expect(res.json<{ items: SessionDocument[] }>().items.map((d) => d.sessionId)).toEqual(['paused-2']);
    expect((await get(acme, '/v1/sessions?status=sleeping')).statusCode).toBe(400);
  });

  it('shows the dead-letter route and the new statuses in the OpenAPI document', async () => {
    const doc = (await get(acme, '/openapi.json')).json();
    const route = doc.paths['/v1/dead-letters'].get;
    expect(route.parameters.map((p: { name: string }) => p.name)).toEqual(
      expect.arrayContaining(['sessionId', 'reason', 'limit', 'cursor']),
    );
    const status = doc.paths['/v1/sessions'].get.parameters.find(
      (p: { name: string }) => p.name === 'status',
    );
    expect(status.schema.enum).toEqual(expect.arrayContaining(['queued', 'paused', 'failed']));
  });
});
