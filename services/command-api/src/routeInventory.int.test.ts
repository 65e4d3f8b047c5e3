import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  authenticatorFromConfig,
  connectNats,
  JetStreamEventStore,
  Registry,
  SessionCommandHandler,
  sessionStreamId,
  silentLogger,
  Topology,
  type Authenticator,
  type EventStore,
  type NatsConnection,
} from '@rpa/shared';
import {
  auditRoutes,
  fillParams,
  startNatsServer,
  startTestIssuer,
  testApiKey,
  uniquePrefix,
  type NatsServerHandle,
  type RouterRoute,
  type TestIssuer,
} from '@rpa/shared/testing';
import { buildApp } from './app.js';

/** The only routes served without credentials. */
const OPS = ['/healthz', '/readyz', '/metrics', '/openapi.json'];

const A = 'tenant-a';
const B = 'tenant-b';
const aWriter = testApiKey('a-writer', A, ['sessions:write', 'sessions:read']);
const aReader = testApiKey('a-reader', A, ['sessions:read']);
const aAdmin = testApiKey('a-admin', A, ['admin']);
const bWriter = testApiKey('b-writer', B, ['sessions:write', 'sessions:read']);

/** Bodies that pass validation, so that a cross-tenant call reaches the tenant check. Default `{}`. */
const VALID_BODIES: Record<string, unknown> = {
  'POST /v1/sessions/:id/steps': { steps: [{ action: 'click', selector: '#x' }] },
  'POST /v1/sessions:batch': { items: [{}] },
};

const bearer = (credential: string) => ({ authorization: `Bearer ${credential}` });

let server: NatsServerHandle;
let nc: NatsConnection;
let store: EventStore;
let issuer: TestIssuer;
let authenticator: Authenticator;
const apps: FastifyInstance[] = [];

async function commandApi(): Promise<FastifyInstance> {
  const app = await buildApp({
    handler: new SessionCommandHandler({ store }),
    authenticator,
    logger: silentLogger,
    registry: new Registry(),
    readiness: [],
  });
  apps.push(app);
  await app.ready();
  return app;
}

beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectNats(server.url, 'command-api-auth');
  store = await JetStreamEventStore.create(nc, new Topology(uniquePrefix()), { logger: silentLogger });
  issuer = await startTestIssuer();
  ({ authenticator } = authenticatorFromConfig({
    AUTH_MODE: 'credentials',
    API_KEYS: JSON.stringify([aWriter.entry, aReader.entry, aAdmin.entry, bWriter.entry]),
    JWT_JWKS_URL: issuer.jwksUrl,
    JWT_ISSUER: issuer.issuer,
    JWT_AUDIENCE: issuer.audience,
    JWT_TENANT_CLAIM: 'tenant',
    DEFAULT_TENANT: 'default',
  }));
});

afterAll(async () => {
  for (const app of apps) await app.close();
  await issuer?.close();
  await store?.close();
  await nc?.drain();
  await server?.stop();
});

describe('command API route inventory', () => {
  let app: FastifyInstance;
  let guarded: RouterRoute[];
  let sessionId: string;
  let stepId: string;

  beforeAll(async () => {
    app = await commandApi();
    const audit = auditRoutes(app, OPS);
    expect(audit.problems).toEqual([]);
    guarded = audit.guarded;
    const opened = await app.inject({
      method: 'POST',
      url: '/v1/sessions',
      headers: bearer(aWriter.key),
      payload: {},
    });
    expect(opened.statusCode).toBe(201);
    sessionId = opened.json().sessionId;
    const submitted = await app.inject({
      method: 'POST',
      url: `/v1/sessions/${sessionId}/steps`,
      headers: bearer(aWriter.key),
      payload: { steps: [{ action: 'click', selector: '#a' }] },
    });
    expect(submitted.statusCode).toBe(202);
    stepId = submitted.json().steps[0].stepId;
  });

  const urlOf = (route: RouterRoute) => fillParams(route.url, { id: sessionId, stepId });
  const call = (route: RouterRoute, headers: Record<string, string>, payload: unknown = {}) =>
    app.inject({
      method: route.method as 'POST',
      url: urlOf(route),
      headers,
      ...(route.method === 'GET' || route.method === 'HEAD' ? {} : { payload: payload as object }),
    });

  it('finds every command route in the router, each behind sessions:write, and only the ops routes open', () => {
    // The list comes from fastify's router, not from this file: a route added later is checked below unasked.
    expect(guarded.length).toBeGreaterThanOrEqual(8);
    expect(guarded.map((r) => `${r.method} ${r.url}`)).toContain('POST /v1/sessions/:id/steps/:stepId/retry');
  });

  it('refuses every guarded route with 401 for missing or invalid credentials, before reading the body', async () => {
    const claims = { sub: 'alice', tenant: A, scope: 'sessions:write sessions:read admin' };
    const bad: Record<string, Record<string, string>> = {
      none: {},
      'wrong key': bearer(`rpa_${randomBytes(32).toString('base64url')}`),
      'wrong key (X-API-Key)': { 'x-api-key': `rpa_${randomBytes(32).toString('base64url')}` },
      'key and another key': { ...bearer(aWriter.key), 'x-api-key': bWriter.key },
      'basic scheme': { authorization: `Basic ${Buffer.from(`a-writer:${aWriter.key}`).toString('base64')}` },
      'expired JWT': bearer(await issuer.expired(claims)),
      'not yet valid JWT': bearer(await issuer.notYetValid(claims)),
      'alg:none JWT': bearer(issuer.unsigned(claims)),
      'HS256 JWT signed with the public key': bearer(await issuer.hs256(claims)),
      'JWT signed by another key': bearer(await issuer.foreignSigned(claims)),
      'JWT without a tenant': bearer(await issuer.token({ sub: 'alice', scope: claims.scope })),
    };
    let checked = 0;
    for (const route of guarded) {
      for (const [name, headers] of Object.entries(bad)) {
        // A body the route could never parse: a 401 proves auth ran before parsing.
        const res = await app.inject({
          method: route.method as 'POST',
          url: urlOf(route),
          headers: { ...headers, 'content-type': 'application/json' },
          ...(route.method === 'GET' || route.method === 'HEAD' ? {} : { payload: '{not json' }),
        });
        expect(res.statusCode, `${route.method} ${route.url} with ${name}`).toBe(401);
        expect(res.headers['www-authenticate']).toBe('Bearer');
        if (route.method !== 'HEAD') expect(res.json().error.code).toBe('UNAUTHENTICATED');
        for (const secret of Object.values(headers)) expect(res.body).not.toContain(secret);
        checked += 1;
      }
    }
    expect(checked).toBe(guarded.length * Object.keys(bad).length);
  });

  it('answers 403 to a valid caller without sessions:write', async () => {
    const readOnlyJwt = await issuer.token(
      { sub: 'reader', tenant: A, scope: 'sessions:read' },
      { alg: 'ES256' },
    );
    for (const route of guarded) {
      for (const headers of [bearer(aReader.key), { 'x-api-key': aAdmin.key }, bearer(readOnlyJwt)]) {
        const res = await call(route, headers, VALID_BODIES[`${route.method} ${route.url}`] ?? {});
        expect(res.statusCode, `${route.method} ${route.url}`).toBe(403);
        expect(res.json().error.code).toBe('FORBIDDEN');
      }
    }
  });

  it('answers 404 to another tenant on every route of a real session, and appends nothing to it', async () => {
    const before = (await store.readStream(sessionStreamId(sessionId))).length;
    const bJwt = await issuer.token({ sub: 'bob', tenant: B, scope: 'sessions:write' });
    let probed = 0;
    for (const route of guarded) {
      if (!route.url.includes('/:id')) continue;
      for (const headers of [bearer(bWriter.key), bearer(bJwt)]) {
        const res = await call(route, headers, VALID_BODIES[`${route.method} ${route.url}`] ?? {});
        expect(res.statusCode, `${route.method} ${route.url}`).toBe(404);
        expect(res.json().error.code).toBe('SESSION_NOT_FOUND');
        probed += 1;
      }
    }
    expect(probed).toBeGreaterThanOrEqual(12);
    expect((await store.readStream(sessionStreamId(sessionId))).length).toBe(before);
  });

  it('serves every guarded route to its own tenant, by key and by JWT (RS256 and ES256)', async () => {
    const tokens = [
      bearer(aWriter.key),
      bearer(await issuer.token({ sub: 'alice', tenant: A, scope: 'sessions:write' })),
      bearer(await issuer.token({ sub: 'alice', tenant: A, scp: ['sessions:write'] }, { alg: 'ES256' })),
    ];
    for (const route of guarded) {
      for (const headers of tokens) {
        // A fresh session each time, so that closing or cancelling one does not change the next answer.
        const own = await app.inject({
          method: 'POST',
          url: '/v1/sessions',
          headers: bearer(aWriter.key),
          payload: {},
        });
        const ownId = own.json().sessionId;
        const ownSteps = await app.inject({
          method: 'POST',
          url: `/v1/sessions/${ownId}/steps`,
          headers: bearer(aWriter.key),
          payload: { steps: [{ action: 'click', selector: '#a' }] },
        });
        const res = await app.inject({
          method: route.method as 'POST',
          url: fillParams(route.url, { id: ownId, stepId: ownSteps.json().steps[0].stepId }),
          headers,
          payload: (VALID_BODIES[`${route.method} ${route.url}`] ?? {}) as object,
        });
        expect([401, 403, 404], `${route.method} ${route.url}: ${res.body}`).not.toContain(res.statusCode);
        expect(res.statusCode).toBeLessThan(500);
      }
    }
  });

  it('records the caller (key id or JWT subject, never the credential) in every event it causes', async () => {
    const jwt = await issuer.token({ sub: 'carol@tenant-a', tenant: A, scope: 'sessions:write' });
    const opened = await app.inject({
      method: 'POST',
      url: '/v1/sessions',
      headers: bearer(aWriter.key),
      payload: {},
    });
    const id = opened.json().sessionId;
    await app.inject({ method: 'POST', url: `/v1/sessions/${id}/pause`, headers: bearer(jwt), payload: {} });
    const events = await store.readStream(sessionStreamId(id));
    const actors = events.map((e) => (e.metadata as { actor: unknown }).actor);
    expect(actors[0]).toEqual({ kind: 'api-key', id: 'a-writer' });
    expect(actors.at(-1)).toEqual({ kind: 'jwt', id: 'carol@tenant-a' });
    const stored = JSON.stringify(events);
    expect(stored).not.toContain(aWriter.key);
    expect(stored).not.toContain(jwt);
  });

  it('fails the audit when a route is served without credentials outside the ops list', async () => {
    const rogue = await buildApp({
      handler: new SessionCommandHandler({ store }),
      authenticator,
      logger: silentLogger,
      registry: new Registry(),
      readiness: [],
    });
    apps.push(rogue);
    rogue.get('/v1/debug', { config: { ops: true } }, async () => ({ ok: true }));
    await rogue.ready();
    expect(auditRoutes(rogue, OPS).problems).toEqual([
      'GET /v1/debug: served without credentials but not an allowed operational route',
      'HEAD /v1/debug: served without credentials but not an allowed operational route',
    ]);
  });
});
