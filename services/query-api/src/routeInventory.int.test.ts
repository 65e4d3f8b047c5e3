import { randomBytes, randomUUID } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  authenticatorFromConfig,
  connectNats,
  BEARER_SUBPROTOCOL_PREFIX,
  createMetricsRegistry,
  FEED_SUBPROTOCOL,
  openEventStore,
  SessionCommandHandler,
  silentLogger,
  Topology,
  type EventStore,
  type NatsConnection,
  type SessionDocument,
} from '@rpa/shared';
import {
  auditRoutes,
  fillParams,
  startNatsServer,
  startTestIssuer,
  testApiKey,
  uniquePrefix,
  waitFor,
  type NatsServerHandle,
  type RouterRoute,
  type TestIssuer,
} from '@rpa/shared/testing';
import { buildApp } from './app.js';
import { RobotIndex } from './index/robotIndex.js';
import { SessionIndex } from './index/sessionIndex.js';
import { heartbeat, putHeartbeat } from './testing/robotFixtures.js';
import { putDocument, sessionDocument } from './testing/sessionFixtures.js';

/** The only routes served without credentials. */
const OPS = ['/healthz', '/readyz', '/metrics', '/openapi.json'];
const FEED = '/v1/feed';

const A = 'tenant-a';
const B = 'tenant-b';
const aReader = testApiKey('a-reader', A, ['sessions:read']);
const aWriterOnly = testApiKey('a-writer-only', A, ['sessions:write']);
const aAdmin = testApiKey('a-admin', A, ['admin']);
const bReader = testApiKey('b-reader', B, ['sessions:read', 'sessions:write']);

const bearer = (credential: string) => ({ authorization: `Bearer ${credential}` });

/**
 * Opens a WebSocket upgrade by hand and reports how the server answered: `upgraded` only if it switched
 * protocols (101); otherwise the status it answered with instead.
 */
function upgrade(
  port: number,
  headers: Record<string, string>,
): Promise<{ upgraded: boolean; status: number }> {
  return new Promise((resolve, reject) => {
    // A fresh connection each time: the server closes one whose upgrade it refused.
    const req = httpRequest({
      agent: false,
      host: '127.0.0.1',
      port,
      path: FEED,
      headers: {
        ...headers,
        connection: 'Upgrade',
        upgrade: 'websocket',
        'sec-websocket-version': '13',
        'sec-websocket-key': randomBytes(16).toString('base64'),
      },
    });
    req.once('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ upgraded: true, status: res.statusCode ?? 0 });
    });
    req.once('response', (res) => {
      res.resume();
      resolve({ upgraded: false, status: res.statusCode ?? 0 });
    });
    req.once('error', reject);
    req.end();
  });
}

/** A feed connection that keeps every frame; `protocols` are offered as a browser offers them. */
async function openFeed(port: number, headers: Record<string, string>, protocols: string[] = []) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}${FEED}`, protocols, { headers });
  const frames: Array<{ type: string; document?: SessionDocument; [k: string]: unknown }> = [];
  ws.on('message', (data) => frames.push(JSON.parse(String(data))));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  return {
    frames,
    /** The subprotocol the server selected ('' for none). */
    protocol: ws.protocol,
    send: (message: unknown) => ws.send(JSON.stringify(message)),
    close: () =>
      new Promise<void>((resolve) => {
        ws.once('close', () => resolve());
        ws.close(1000);
      }),
  };
}

describe('query API route inventory', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let topology: Topology;
  let kv: KV;
  let artifacts: ObjectStore;
  let eventStore: EventStore;
  let index: SessionIndex;
  let robots: RobotIndex;
  let issuer: TestIssuer;
  let app: FastifyInstance;
  let port: number;
  let guarded: RouterRoute[];
  const sessionId = `sa-${randomUUID()}`;
  const artifactKey = `${sessionId}.step-1.png`;
  const robotId = 'robot-1';

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'query-api-auth');
    topology = new Topology(uniquePrefix());
    kv = await new Kvm(nc).create(topology.sessionsBucket);
    artifacts = await new Objm(nc).create(topology.artifactsBucket);
    eventStore = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
    issuer = await startTestIssuer();

    // A real session of tenant A: its events in the store, its document in the index, an artifact, a robot
    // holding it and a dead-lettered step.
    const commands = new SessionCommandHandler({ store: eventStore });
    await commands.handle({
      type: 'OpenSession',
      commandId: randomUUID(),
      sessionId,
      tenantId: A,
      actor: { kind: 'api-key', id: 'a-writer' },
      at: new Date().toISOString(),
      labels: {},
      browser: {},
      idleTimeoutMs: null,
    });
    const doc = sessionDocument({ sessionId, tenantId: A, position: 1 });
    await putDocument(kv, topology, {
      ...doc,
      steps: [
        {
          ...doc.steps[0]!,
          status: 'failed',
          attempts: 1,
          error: { code: 'SELECTOR_NOT_FOUND', message: 'no #x' },
          deadLetter: { reason: 'not_retryable', attempts: 1, at: '2030-01-01T00:01:00.000Z' },
        } as SessionDocument['steps'][number],
      ],
    });
    await artifacts.putBlob({ name: artifactKey }, new Uint8Array([0x89, 0x50, 0x4e, 0x47]));
    index = new SessionIndex({ kv, logger: silentLogger });
    index.start();
    await index.ready;
    const robotsKv = await new Kvm(nc).create(topology.robotsBucket, topology.robotsBucketOptions());
    await putHeartbeat(
      robotsKv,
      topology,
      heartbeat({
        robotId,
        at: new Date().toISOString(),
        capacity: { maxSessions: 4, sessionsHeld: 1 },
        sessions: [{ sessionId, tenantId: A, epoch: 1 }],
      }),
    );
    robots = new RobotIndex({ kv: robotsKv, logger: silentLogger });
    robots.start();
    await robots.ready;

    const { authenticator } = authenticatorFromConfig({
      AUTH_MODE: 'credentials',
      API_KEYS: JSON.stringify([aReader.entry, aWriterOnly.entry, aAdmin.entry, bReader.entry]),
      JWT_JWKS_URL: issuer.jwksUrl,
      JWT_ISSUER: issuer.issuer,
      JWT_AUDIENCE: issuer.audience,
      JWT_TENANT_CLAIM: 'tenant',
      DEFAULT_TENANT: 'default',
    });
    app = await buildApp({
      index,
      robots,
      eventStore,
      artifacts,
      authenticator,
      logger: silentLogger,
      registry: createMetricsRegistry('query-api-auth'),
      readiness: [],
      commands,
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as AddressInfo).port;
    const audit = auditRoutes(app, OPS);
    expect(audit.problems).toEqual([]);
    guarded = audit.guarded;
  });

  afterAll(async () => {
    await app?.close();
    await index?.stop();
    await robots?.stop();
    await issuer?.close();
    await eventStore?.close();
    await nc?.drain();
    await server?.stop();
  });

  /** Route parameters: A's session, its artifact, and for the fleet routes the robot holding the session. */
  const params = (route: RouterRoute): Record<string, string> =>
    route.url.startsWith('/v1/robots/') ? { id: robotId } : { id: sessionId, key: artifactKey };
  /** The feed's routes (GET and its HEAD) only serve WebSocket upgrades; their own tests cover them. */
  const isFeed = (route: RouterRoute) => route.url === FEED;
  const call = (route: RouterRoute, headers: Record<string, string>) =>
    app.inject({ method: route.method as 'GET', url: fillParams(route.url, params(route)), headers });

  /** Every credential that must be refused with 401, whatever the route. */
  async function invalidCredentials(): Promise<Record<string, Record<string, string>>> {
    const claims = { sub: 'alice', tenant: A, scope: 'sessions:read sessions:write admin' };
    return {
      none: {},
      'wrong key': bearer(`rpa_${randomBytes(32).toString('base64url')}`),
      'wrong key (X-API-Key)': { 'x-api-key': `rpa_${randomBytes(32).toString('base64url')}` },
      'basic scheme': { authorization: `Basic ${Buffer.from(`a:${aReader.key}`).toString('base64')}` },
      'expired JWT': bearer(await issuer.expired(claims)),
      'not yet valid JWT': bearer(await issuer.notYetValid(claims)),
      'alg:none JWT': bearer(issuer.unsigned(claims)),
      'HS256 JWT signed with the public key': bearer(await issuer.hs256(claims)),
      'JWT signed by another key': bearer(await issuer.foreignSigned(claims)),
    };
  }

  it('finds every query route and the WebSocket endpoint in the router', () => {
    const names = guarded.map((r) => `${r.method} ${r.url}`);
    expect(names).toEqual(
      expect.arrayContaining([
        'GET /v1/sessions/:id',
        'GET /v1/artifacts/:key',
        'GET /v1/robots',
        `GET ${FEED}`,
      ]),
    );
  });

  it('refuses every guarded route with 401 for missing or invalid credentials', async () => {
    const bad = await invalidCredentials();
    let checked = 0;
    for (const route of guarded) {
      for (const [name, headers] of Object.entries(bad)) {
        const res = await call(route, headers);
        expect(res.statusCode, `${route.method} ${route.url} with ${name}`).toBe(401);
        if (route.method !== 'HEAD') expect(res.json().error.code).toBe('UNAUTHENTICATED');
        for (const secret of Object.values(headers)) expect(res.body).not.toContain(secret);
        checked += 1;
      }
    }
    expect(checked).toBe(guarded.length * Object.keys(bad).length);
  });

  it('refuses the WebSocket upgrade with 401 before switching protocols', async () => {
    for (const [name, headers] of Object.entries(await invalidCredentials())) {
      expect(await upgrade(port, headers), name).toEqual({ upgraded: false, status: 401 });
    }
    // A caller without sessions:read is refused with 403, also before the 101.
    expect(await upgrade(port, bearer(aWriterOnly.key))).toEqual({ upgraded: false, status: 403 });
    expect(await upgrade(port, bearer(aReader.key))).toEqual({ upgraded: true, status: 101 });
  });

  it("takes a browser's credential from the rpa.bearer. subprotocol, refusing bad ones the same way", async () => {
    const offering = (...credentials: string[]) => ({
      'sec-websocket-protocol': [
        FEED_SUBPROTOCOL,
        ...credentials.map((c) => `${BEARER_SUBPROTOCOL_PREFIX}${c}`),
      ].join(', '),
    });
    let checked = 0;
    for (const [name, headers] of Object.entries(await invalidCredentials())) {
      const credential = headers['x-api-key'] ?? /^Bearer (.+)$/.exec(headers.authorization ?? '')?.[1];
      if (credential === undefined) continue;
      expect(await upgrade(port, offering(credential)), name).toEqual({ upgraded: false, status: 401 });
      checked += 1;
    }
    expect(checked).toBe(7);
    // Two credentials, or one that differs from the header's, are refused rather than chosen between; so is none.
    expect(await upgrade(port, offering(aReader.key, aAdmin.key))).toEqual({ upgraded: false, status: 401 });
    expect(await upgrade(port, { ...bearer(aAdmin.key), ...offering(aReader.key) })).toEqual({
      upgraded: false,
      status: 401,
    });
    expect(await upgrade(port, offering(''))).toEqual({ upgraded: false, status: 401 });
    expect(await upgrade(port, offering(aWriterOnly.key))).toEqual({ upgraded: false, status: 403 });
    expect(await upgrade(port, offering(aReader.key))).toEqual({ upgraded: true, status: 101 });
    // Only on an upgrade: an HTTP route does not read it.
    const plain = await app.inject({ url: '/v1/sessions', headers: offering(aReader.key) });
    expect(plain.statusCode).toBe(401);
  });

  it('answers 403 to a valid caller without the scope; the fleet view also admits admin', async () => {
    const writeJwt = await issuer.token(
      { sub: 'writer', tenant: A, scope: 'sessions:write' },
      { alg: 'ES256' },
    );
    for (const route of guarded) {
      if (isFeed(route)) continue;
      for (const headers of [bearer(aWriterOnly.key), bearer(writeJwt)]) {
        const res = await call(route, headers);
        expect(res.statusCode, `${route.method} ${route.url}`).toBe(403);
      }
      const admin = await call(route, bearer(aAdmin.key));
      const fleet = route.url.startsWith('/v1/robots');
      expect(admin.statusCode, `${route.method} ${route.url} as admin`).toBe(fleet ? 200 : 403);
    }
  });

  it("never shows tenant A's session to tenant B: 404 on its routes, absent from every listing", async () => {
    const bJwt = await issuer.token({ sub: 'bob', tenant: B, scope: 'sessions:read' });
    let probed = 0;
    for (const route of guarded) {
      if (isFeed(route)) continue;
      for (const headers of [bearer(bReader.key), bearer(bJwt)]) {
        const res = await call(route, headers);
        const naming = /\/:(id|key)\b/.test(route.url);
        if (naming && !route.url.startsWith('/v1/robots')) expect(res.statusCode, route.url).toBe(404);
        else expect(res.statusCode, `${route.method} ${route.url}`).toBeLessThan(500);
        // The id B asked for may be echoed back; nothing of A's (every document and robot entry names its tenant).
        expect(res.body, `${route.method} ${route.url}`).not.toContain(A);
        probed += 1;
      }
      // The owner sees it, so the routes and ids above were real.
      const own = await call(route, bearer(aReader.key));
      expect(own.statusCode, `${route.method} ${route.url} as A`).toBe(200);
    }
    expect(probed).toBe(guarded.filter((r) => !isFeed(r)).length * 2);
  });

  it("never sends tenant A's documents to tenant B's feed, even when B names A's session", async () => {
    // B connects as a browser does: its credential in a subprotocol, the feed's own selected in answer.
    const b = await openFeed(port, {}, [FEED_SUBPROTOCOL, `${BEARER_SUBPROTOCOL_PREFIX}${bReader.key}`]);
    expect(b.protocol).toBe(FEED_SUBPROTOCOL);
    const a = await openFeed(port, bearer(aReader.key));
    try {
      b.send({ subscribe: { all: true } });
      b.send({ subscribe: { session: sessionId } });
      a.send({ subscribe: { session: sessionId } });
      await waitFor(() => a.frames.some((f) => f.type === 'session'), {
        timeoutMs: 5_000,
        description: 'A doc',
      });
      await waitFor(() => b.frames.filter((f) => f.type === 'subscribed').length === 2, {
        timeoutMs: 5_000,
        description: "B's subscriptions",
      });
      // A change of A's session reaches A; B's connection, in order after its subscriptions, stays silent.
      await putDocument(
        kv,
        topology,
        sessionDocument({ sessionId, tenantId: A, status: 'closing', position: 2 }),
      );
      await waitFor(() => a.frames.some((f) => f.document?.status === 'closing'), {
        timeoutMs: 5_000,
        description: "A's change",
      });
      const marker = `sb-${randomUUID()}`;
      await putDocument(kv, topology, sessionDocument({ sessionId: marker, tenantId: B, position: 3 }));
      await waitFor(() => b.frames.some((f) => f.document?.sessionId === marker), {
        timeoutMs: 5_000,
        description: "B's own document",
      });
      expect(b.frames.filter((f) => f.type === 'session').map((f) => f.document?.tenantId)).toEqual([B]);
      expect(JSON.stringify(b.frames)).not.toContain(A);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('lets a feed connection steer sessions only with sessions:write, recording its caller', async () => {
    const reader = await openFeed(port, bearer(aReader.key));
    const operatorJwt = await issuer.token({
      sub: 'op@tenant-a',
      tenant: A,
      scope: 'sessions:read sessions:write',
    });
    const operator = await openFeed(port, bearer(operatorJwt));
    try {
      reader.send({ type: 'pause', sessionId, requestId: 'r1' });
      await waitFor(() => reader.frames.some((f) => f.type === 'control-result'), {
        timeoutMs: 5_000,
        description: 'the refusal',
      });
      expect(reader.frames.find((f) => f.type === 'control-result')).toMatchObject({
        ok: false,
        error: { code: 'FORBIDDEN' },
      });
      operator.send({ type: 'pause', sessionId, requestId: 'r2' });
      await waitFor(() => operator.frames.some((f) => f.type === 'control-result'), {
        timeoutMs: 5_000,
        description: 'the pause',
      });
      expect(operator.frames.find((f) => f.type === 'control-result')).toMatchObject({ ok: true });
      const events = (
        await app.inject({
          method: 'GET',
          url: `/v1/sessions/${sessionId}/events`,
          headers: bearer(aReader.key),
        })
      ).json().events as Array<{ type: string; metadata: { actor: unknown } }>;
      expect(events.map((e) => [e.type, e.metadata.actor])).toEqual([
        ['SessionOpened', { kind: 'api-key', id: 'a-writer' }],
        ['SessionPaused', { kind: 'jwt', id: 'op@tenant-a' }],
      ]);
      expect(JSON.stringify(events)).not.toContain(operatorJwt);
    } finally {
      await reader.close();
      await operator.close();
    }
  });
});
