import { randomBytes, randomUUID } from 'node:crypto';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connectNats,
  createMetricsRegistry,
  openEventStore,
  SessionCommandHandler,
  silentLogger,
  singleTenantAuthenticator,
  Topology,
  type Authenticator,
  type EventStore,
  type NatsConnection,
  type SessionDocument,
} from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';
import { buildApp } from './app.js';
import { RobotIndex } from './index/robotIndex.js';
import { SessionIndex } from './index/sessionIndex.js';
import { heartbeat, putHeartbeat } from './testing/robotFixtures.js';
import { putDocument, sessionDocument } from './testing/sessionFixtures.js';

const T0 = Date.parse('2030-01-01T00:00:00.000Z');

interface Page {
  items: SessionDocument[];
  nextCursor: string | null;
}

describe('query API over real NATS', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let topology: Topology;
  let kv: KV;
  let artifacts: ObjectStore;
  let eventStore: EventStore;
  let index: SessionIndex;
  let robotsKv: KV;
  let robots: RobotIndex;
  /** The robot index's clock, in epoch ms: tests move it. */
  const clock = { now: T0 };
  let acme: FastifyInstance;
  let other: FastifyInstance;
  const docs: SessionDocument[] = [];

  function app(
    authenticator: Authenticator,
    idx: SessionIndex = index,
    fleet: RobotIndex = robots,
  ): Promise<FastifyInstance> {
    return buildApp({
      index: idx,
      robots: fleet,
      eventStore,
      artifacts,
      authenticator,
      logger: silentLogger,
      registry: createMetricsRegistry('query-api-test'),
      readiness: [
        { name: 'nats', check: () => nc.flush() },
        {
          name: 'index',
          check: async () => {
            if (!idx.isReady()) throw new Error('session index still loading');
          },
        },
        {
          name: 'robots',
          check: async () => {
            if (!fleet.isReady()) throw new Error('robot index still loading');
          },
        },
        { name: 'eventStore', check: () => eventStore.ping() },
      ],
    });
  }

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'query-api-test');
    topology = new Topology(uniquePrefix());
    kv = await new Kvm(nc).create(topology.sessionsBucket);
    artifacts = await new Objm(nc).create(topology.artifactsBucket);
    eventStore = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
    for (let n = 0; n < 12; n++) {
      docs.push(
        sessionDocument({
          sessionId: `s${String(n).padStart(2, '0')}`,
          createdAt: new Date(Date.UTC(2030, 0, 1, 0, n % 4)).toISOString(),
          status: n % 3 === 0 ? 'closed' : 'open',
          position: n + 1,
        }),
      );
    }
    docs.push(sessionDocument({ sessionId: 'theirs', tenantId: 'other' }));
    // Sessions in the statuses and with the fields that recovery, attention and cancelling bring.
    docs.push(
      sessionDocument({
        sessionId: 'stuck',
        createdAt: '2030-01-02T00:00:00.000Z',
        status: 'needs_attention',
        robotId: 'robot-1',
        epoch: 2,
        attention: {
          code: 'UNSAFE_REPLAY',
          reason: 'step-1 must not run twice',
          stepIds: ['step-1'],
          resumeTo: 'open',
          at: '2030-01-02T00:05:00.000Z',
        },
        checkpoint: {
          afterStepSeq: 1,
          url: 'https://example.com/after-login',
          trigger: 'step',
          at: '2030-01-02T00:01:00.000Z',
        },
        recoveries: 1,
        lastRecovery: {
          robotId: 'robot-1',
          epoch: 2,
          fromCheckpointSeq: 1,
          replayedSteps: 0,
          skippedSteps: 0,
          durationMs: 850,
          at: '2030-01-02T00:04:00.000Z',
        },
        position: 20,
      }),
      sessionDocument({
        sessionId: 'dropped',
        createdAt: '2030-01-03T00:00:00.000Z',
        status: 'cancelled',
        closedAt: '2030-01-03T00:10:00.000Z',
        position: 21,
      }),
    );
    for (const doc of docs) await putDocument(kv, topology, doc);
    index = new SessionIndex({ kv, logger: silentLogger });
    index.start();
    await index.ready;
    robotsKv = await new Kvm(nc).create(topology.robotsBucket, topology.robotsBucketOptions());
    robots = new RobotIndex({ kv: robotsKv, logger: silentLogger, clock: () => new Date(clock.now) });
    robots.start();
    await robots.ready;
    acme = await app(singleTenantAuthenticator('acme'));
    other = await app(singleTenantAuthenticator('other'));
  });

  afterAll(async () => {
    await acme?.close();
    await other?.close();
    await index?.stop();
    await robots?.stop();
    await eventStore?.close();
    await nc?.close();
    await server?.stop();
  });

  async function walk(query: string, limit: number): Promise<string[]> {
    const seen: string[] = [];
    let cursor: string | null = null;
    for (let page = 0; page < 100; page++) {
      const url: string = `/v1/sessions?limit=${limit}${query}${cursor ? `&cursor=${cursor}` : ''}`;
      const res = await acme.inject({ method: 'GET', url });
      expect(res.statusCode).toBe(200);
      const body = res.json<Page>();
      expect(body.items.length).toBeLessThanOrEqual(limit);
      seen.push(...body.items.map((d) => d.sessionId));
      if (!body.nextCursor) return seen;
      cursor = body.nextCursor;
    }
    throw new Error('listing did not end');
  }

  function expectedIds(filter: (d: SessionDocument) => boolean): string[] {
    return docs
      .filter((d) => d.tenantId === 'acme' && filter(d))
      .sort((a, b) =>
        a.createdAt === b.createdAt
          ? a.sessionId.localeCompare(b.sessionId)
          : Date.parse(b.createdAt) - Date.parse(a.createdAt),
      )
      .map((d) => d.sessionId);
  }

  it("lists only the caller's sessions, pages through them with cursors, and filters by status", async () => {
    const first = await acme.inject({ method: 'GET', url: '/v1/sessions' });
    expect(first.statusCode).toBe(200);
    const body = first.json<Page>();
    expect(body.nextCursor).toBeNull();
    expect(body.items.map((d) => d.sessionId)).toEqual(expectedIds(() => true));
    expect(body.items[0]).toEqual(docs.find((d) => d.sessionId === body.items[0]!.sessionId));

    expect(await walk('', 5)).toEqual(expectedIds(() => true));
    expect(await walk('', 1)).toEqual(expectedIds(() => true));
    expect(await walk('&status=closed', 2)).toEqual(expectedIds((d) => d.status === 'closed'));
    expect(await walk('&status=needs_attention', 2)).toEqual(['stuck']);
    expect(await walk('&status=cancelled', 2)).toEqual(['dropped']);

    const theirs = await other.inject({ method: 'GET', url: '/v1/sessions' });
    expect(theirs.json<Page>().items.map((d) => d.sessionId)).toEqual(['theirs']);
  });

  it('answers 400 naming the field for bad query parameters and ids', async () => {
    const cases: Array<[string, string]> = [
      ['/v1/sessions?limit=0', 'querystring.limit'],
      ['/v1/sessions?limit=201', 'querystring.limit'],
      ['/v1/sessions?limit=many', 'querystring.limit'],
      ['/v1/sessions?status=running', 'querystring.status'],
      ['/v1/sessions?cursor=not-a-cursor', 'querystring.cursor'],
      [`/v1/sessions?cursor=${Buffer.from('{"v":2}').toString('base64url')}`, 'querystring.cursor'],
      ['/v1/sessions/bad%20id', 'params.id'],
      ['/v1/sessions/bad.id/events', 'params.id'],
      ['/v1/artifacts/no-extension', 'params.key'],
    ];
    for (const [url, field] of cases) {
      const res = await acme.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(400);
      const { error } = res.json<{ error: { code: string; message: string } }>();
      expect(error.code, url).toBe('VALIDATION_FAILED');
      expect(error.message, url).toContain(field);
    }
  });

  it("serves one session to its tenant and 404 to anyone else's", async () => {
    const mine = await acme.inject({ method: 'GET', url: '/v1/sessions/s03' });
    expect(mine.statusCode).toBe(200);
    expect(mine.json()).toEqual(docs.find((d) => d.sessionId === 's03'));
    for (const sessionId of ['stuck', 'dropped']) {
      const res = await acme.inject({ method: 'GET', url: `/v1/sessions/${sessionId}` });
      expect(res.statusCode).toBe(200);
      expect(res.json()).toEqual(docs.find((d) => d.sessionId === sessionId));
    }
    expect((await acme.inject({ method: 'GET', url: '/v1/sessions/stuck' })).json()).toMatchObject({
      status: 'needs_attention',
      attention: { code: 'UNSAFE_REPLAY', stepIds: ['step-1'], resumeTo: 'open' },
      checkpoint: { afterStepSeq: 1, url: 'https://example.com/after-login' },
      recoveries: 1,
      lastRecovery: { robotId: 'robot-1', fromCheckpointSeq: 1 },
    });

    for (const [who, url] of [
      [other, '/v1/sessions/s03'],
      [acme, '/v1/sessions/theirs'],
      [acme, '/v1/sessions/nope'],
    ] as const) {
      const res = await who.inject({ method: 'GET', url });
      expect(res.statusCode, url).toBe(404);
      expect(res.json().error.code).toBe('SESSION_NOT_FOUND');
    }
  });

  it("serves a session's events from the event store, to its tenant only", async () => {
    const handler = new SessionCommandHandler({ store: eventStore });
    const sessionId = `ev-${randomUUID()}`;
    const base = { sessionId, tenantId: 'acme', actor: { kind: 'anonymous' as const, id: 'anonymous' } };
    await handler.handle({
      ...base,
      type: 'OpenSession',
      commandId: randomUUID(),
      at: '2030-01-01T00:00:00.000Z',
      labels: { team: 'billing' },
      browser: {},
      idleTimeoutMs: null,
    });
    await handler.handle({
      ...base,
      type: 'SubmitSteps',
      commandId: randomUUID(),
      at: '2030-01-01T00:00:01.000Z',
      steps: [
        { stepId: 'one', step: { action: 'navigate', url: 'https://example.com/' } },
        { stepId: 'two', step: { action: 'screenshot' } },
      ],
    });

    const res = await acme.inject({ method: 'GET', url: `/v1/sessions/${sessionId}/events` });
    expect(res.statusCode).toBe(200);
    const { events } = res.json<{ events: Array<Record<string, unknown>> }>();
    expect(events.map((e) => e.type)).toEqual(['SessionOpened', 'StepSubmitted', 'StepSubmitted']);
    expect(events.map((e) => e.revision)).toEqual([0, 1, 2]);
    const positions = events.map((e) => e.position as number);
    expect([...positions].sort((a, b) => a - b)).toEqual(positions);
    expect(events[0]).toMatchObject({
      occurredAt: '2030-01-01T00:00:00.000Z',
      data: { labels: { team: 'billing' }, browser: {}, idleTimeoutMs: null },
      metadata: { tenantId: 'acme', sessionId, commandType: 'OpenSession', schemaVersion: 2 },
    });
    expect(events[2]).toMatchObject({ data: { stepId: 'two', seq: 2, step: { action: 'screenshot' } } });
    expect(typeof events[0]!.recordedAt).toBe('string');
    expect(typeof events[0]!.eventId).toBe('string');

    const theirs = await other.inject({ method: 'GET', url: `/v1/sessions/${sessionId}/events` });
    expect(theirs.statusCode).toBe(404);
    const none = await acme.inject({ method: 'GET', url: '/v1/sessions/never-opened/events' });
    expect(none.statusCode).toBe(404);
    expect(none.json().error.code).toBe('SESSION_NOT_FOUND');
  });

  it("streams an artifact's bytes to the session's tenant, and 404 to others or for a missing one", async () => {
    const bytes = new Uint8Array(randomBytes(300_000));
    const key = topology.artifactKey('s01', 'step-1');
    await artifacts.putBlob({ name: key }, bytes);

    const res = await acme.inject({ method: 'GET', url: `/v1/artifacts/${key}` });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('image/png');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(Buffer.compare(res.rawPayload, Buffer.from(bytes))).toBe(0);

    const again = await acme.inject({
      method: 'GET',
      url: `/v1/artifacts/${key}`,
      headers: { 'if-none-match': String(res.headers.etag) },
    });
    expect(again.statusCode).toBe(304);

    // A non-image is a download, never rendered in this origin.
    const report = topology.artifactKey('s01', 'step-2', 'json');
    await artifacts.putBlob({ name: report }, new TextEncoder().encode('{"ok":true}'));
    const download = await acme.inject({ method: 'GET', url: `/v1/artifacts/${report}` });
    expect(download.headers['content-disposition']).toBe(`attachment; filename="${report}"`);
    expect(download.body).toBe('{"ok":true}');

    for (const [who, url] of [
      [other, `/v1/artifacts/${key}`],
      [acme, `/v1/artifacts/${topology.artifactKey('s01', 'missing')}`],
      [acme, `/v1/artifacts/${topology.artifactKey('theirs', 'step-1')}`],
    ] as const) {
      const denied = await who.inject({ method: 'GET', url });
      expect(denied.statusCode, url).toBe(404);
      expect(denied.json().error.code).toBe('ARTIFACT_NOT_FOUND');
    }
  });

  it('never serves a restore point, even under a key shaped like an artifact of the caller’s session', async () => {
    const restorePoints = await new Objm(nc).create(topology.restorePointsBucket);
    const key = topology.restorePointKey('s01', 1, 1);
    await restorePoints.putBlob({ name: key }, new TextEncoder().encode('{"cookies":[{"name":"sid"}]}'));
    expect(await restorePoints.get(key)).not.toBeNull();

    const res = await acme.inject({ method: 'GET', url: `/v1/artifacts/${key}` });
    expect(res.statusCode).toBe(404);
    expect(res.json().error.code).toBe('ARTIFACT_NOT_FOUND');
    expect(res.body).not.toContain('cookies');
  });

  it('serves the fleet: every robot to every tenant, each robot with the caller’s sessions only', async () => {
    const at = new Date(clock.now).toISOString();
    await putHeartbeat(
      robotsKv,
      topology,
      heartbeat({
        robotId: 'robot-a',
        at,
        capacity: { maxSessions: 4, sessionsHeld: 2 },
        sessions: [
          { sessionId: 's01', tenantId: 'acme', epoch: 1 },
          { sessionId: 'theirs', tenantId: 'other', epoch: 1 },
        ],
      }),
    );
    await putHeartbeat(robotsKv, topology, heartbeat({ robotId: 'robot-b', at, status: 'stopped' }));
    await robotsKv.put('robot-c', JSON.stringify({ v: 1, robotId: 'robot-c', status: 'running' }));
    await waitFor(() => robots.list('acme').length === 2 && robots.stats().skipped === 1, {
      description: 'robots indexed',
    });

    const list = await acme.inject({ method: 'GET', url: '/v1/robots' });
    expect(list.statusCode).toBe(200);
    const items = list.json<{ items: Array<Record<string, unknown>> }>().items;
    expect(items.map((r) => [r.robotId, r.status])).toEqual([
      ['robot-a', 'online'],
      ['robot-b', 'stopped'],
    ]);
    expect(items[0]).toMatchObject({
      sessions: [{ sessionId: 's01', tenantId: 'acme', epoch: 1 }],
      capacity: { maxSessions: 4, sessionsHeld: 2 },
      lastSeenAt: at,
      reportedStatus: 'running',
    });
    expect(items[0]).not.toHaveProperty('v');

    const theirs = await other.inject({ method: 'GET', url: '/v1/robots/robot-a' });
    expect(theirs.statusCode).toBe(200);
    expect(theirs.json().sessions).toEqual([{ sessionId: 'theirs', tenantId: 'other', epoch: 1 }]);

    // Past its ttl without a new beat, the robot is offline; the clock is the index's, not the wall's.
    clock.now += 15_000;
    expect((await acme.inject({ method: 'GET', url: '/v1/robots/robot-a' })).json()).toMatchObject({
      status: 'offline',
      lastSeenAt: at,
    });
    const metrics = await acme.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/rpa_query_robots\{[^}]*status="offline"[^}]*\} 1/);
    expect(metrics.body).toMatch(/rpa_query_robots\{[^}]*status="stopped"[^}]*\} 1/);
    expect(metrics.body).toMatch(/rpa_query_robots\{[^}]*status="online"[^}]*\} 0/);
    expect(metrics.body).toMatch(/rpa_query_robot_index_skipped_entries\{[^}]*\} 1/);

    for (const id of ['robot-c', 'nobody']) {
      const missing = await acme.inject({ method: 'GET', url: `/v1/robots/${id}` });
      expect(missing.statusCode, id).toBe(404);
      expect(missing.json().error.code).toBe('ROBOT_NOT_FOUND');
    }
    const bad = await acme.inject({ method: 'GET', url: '/v1/robots/bad%20id' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.message).toContain('params.id');
  });

  it('reports ready only once the index has loaded, and serves health, metrics and the OpenAPI document', async () => {
    const ready = await acme.inject({ method: 'GET', url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().checks.map((c: { name: string; ok: boolean }) => [c.name, c.ok])).toEqual([
      ['nats', true],
      ['index', true],
      ['robots', true],
      ['eventStore', true],
    ]);

    const unstarted = new SessionIndex({ kv, logger: silentLogger });
    const loading = await app(singleTenantAuthenticator('acme'), unstarted);
    const fleetUnstarted = new RobotIndex({ kv: robotsKv, logger: silentLogger });
    const fleetLoading = await app(singleTenantAuthenticator('acme'), index, fleetUnstarted);
    try {
      const notReady = await loading.inject({ method: 'GET', url: '/readyz' });
      expect(notReady.statusCode).toBe(503);
      expect(notReady.json().checks).toContainEqual({
        name: 'index',
        ok: false,
        error: 'session index still loading',
      });
      const fleetNotReady = await fleetLoading.inject({ method: 'GET', url: '/readyz' });
      expect(fleetNotReady.statusCode).toBe(503);
      expect(fleetNotReady.json().checks).toContainEqual({
        name: 'robots',
        ok: false,
        error: 'robot index still loading',
      });
    } finally {
      await loading.close();
      await fleetLoading.close();
    }

    expect((await acme.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    const metrics = await acme.inject({ method: 'GET', url: '/metrics' });
    expect(metrics.body).toMatch(/rpa_query_index_sessions\{[^}]*\} 15/);
    const openapi = await acme.inject({ method: 'GET', url: '/openapi.json' });
    expect(openapi.statusCode).toBe(200);
    const paths = Object.keys(openapi.json().paths);
    expect(paths).toEqual(
      expect.arrayContaining([
        '/v1/sessions',
        '/v1/sessions/{id}',
        '/v1/sessions/{id}/events',
        '/v1/artifacts/{key}',
        '/v1/robots',
        '/v1/robots/{id}',
      ]),
    );
    const robotSchema = openapi.json().paths['/v1/robots/{id}'].get.responses['200'];
    expect(JSON.stringify(robotSchema)).toContain('lastSeenAt');
  });

  it('refuses a caller the authenticator does not accept', async () => {
    const closed = await app(async () => null);
    try {
      const res = await closed.inject({ method: 'GET', url: '/v1/sessions' });
      expect(res.statusCode).toBe(401);
      expect(res.json().error.code).toBe('UNAUTHENTICATED');
    } finally {
      await closed.close();
    }
  });
});
