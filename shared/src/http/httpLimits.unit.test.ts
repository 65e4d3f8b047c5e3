import { connect, type AddressInfo, type Socket } from 'node:net';
import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { parseEnv } from '../config/env.js';
import { silentLogger } from '../logging/logger.js';
import { createMetricsRegistry } from '../metrics/metrics.js';
import { createApiServer } from './apiServer.js';
import { ALL_SCOPES, registerAuth, type Authenticator } from './auth.js';
import { DEFAULT_HTTP_LIMITS, HttpLimitsEnv, httpLimitsFromConfig, type HttpLimits } from './httpLimits.js';
import { registerOpsRoutes } from './ops.js';

/** `x-test-key: <id>` authenticates as that API key of tenant acme; `x-test-anonymous` as the anonymous caller. */
const testAuthenticator: Authenticator = async (request) => {
  const key = request.headers['x-test-key'];
  if (typeof key === 'string')
    return { tenantId: 'acme', actor: { kind: 'api-key', id: key }, scopes: ALL_SCOPES };
  if (request.headers['x-test-anonymous'] !== undefined)
    return { tenantId: 'acme', actor: { kind: 'anonymous', id: 'anonymous' }, scopes: ALL_SCOPES };
  return null;
};

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function build(limits: Partial<HttpLimits> = {}): Promise<FastifyInstance> {
  app = await createApiServer({
    logger: silentLogger,
    limits,
    openapi: { title: 'test', description: 'test API' },
  });
  registerAuth(app, testAuthenticator, { scopes: () => ['sessions:read'] });
  registerOpsRoutes(app, { registry: createMetricsRegistry('limits-test'), checks: [] });
  app.get('/v1/things', async () => ({ things: [] }));
  app.post('/v1/things', async (request) => ({ size: JSON.stringify(request.body).length }));
  return app;
}

const asKey = (id: string) => ({ 'x-test-key': id });

describe('security headers', () => {
  it('sends API-fit security headers and no-store on answers, errors and the OpenAPI document', async () => {
    const api = await build();
    const answers = await Promise.all([
      api.inject({ method: 'GET', url: '/v1/things', headers: asKey('a') }),
      api.inject({ method: 'GET', url: '/v1/things' }),
      api.inject({ method: 'GET', url: '/v1/nothing', headers: asKey('a') }),
      api.inject({ method: 'GET', url: '/openapi.json' }),
      api.inject({ method: 'GET', url: '/healthz' }),
    ]);
    expect(answers.map((r) => r.statusCode)).toEqual([200, 401, 404, 200, 200]);
    for (const res of answers) {
      const csp = String(res.headers['content-security-policy']);
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("frame-ancestors 'none'");
      expect(res.headers['x-content-type-options']).toBe('nosniff');
      expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
      expect(res.headers['referrer-policy']).toBe('no-referrer');
      expect(res.headers['strict-transport-security']).toMatch(/max-age=\d+/);
      expect(res.headers['cache-control']).toBe('no-store');
      expect(res.headers['x-powered-by']).toBeUndefined();
    }
    // The JSON answers are unchanged by the headers.
    expect(answers[0]!.json()).toEqual({ things: [] });
    expect(answers[3]!.headers['content-type']).toMatch(/^application\/json/);
    expect(answers[3]!.json()).toMatchObject({ openapi: expect.any(String) });
  });
});

describe('rate limits', () => {
  it('counts each key on its own and answers 429 with Retry-After past the limit', async () => {
    const api = await build({ rateLimitMax: 3, rateLimitWindowMs: 60_000 });
    const a = [];
    for (let i = 0; i < 4; i++)
      a.push(await api.inject({ method: 'GET', url: '/v1/things', headers: asKey('a') }));
    expect(a.map((r) => r.statusCode)).toEqual([200, 200, 200, 429]);
    expect(a[0]!.headers['x-ratelimit-limit']).toBe('3');
    expect(a[2]!.headers['x-ratelimit-remaining']).toBe('0');
    const limited = a[3]!;
    const retryAfter = Number(limited.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect(limited.json()).toEqual({
      error: { code: 'RATE_LIMITED', message: expect.stringContaining('at most 3 requests per 60 s') },
    });
    expect(limited.headers['content-security-policy']).toContain("default-src 'none'");

    // Another key of the same tenant, from the same address, has its own allowance.
    const b = await api.inject({ method: 'GET', url: '/v1/things', headers: asKey('b') });
    expect(b.statusCode).toBe(200);
  });

  it('counts before the body is read, so a limited caller’s body is never parsed', async () => {
    const api = await build({ rateLimitMax: 1 });
    expect((await api.inject({ method: 'GET', url: '/v1/things', headers: asKey('a') })).statusCode).toBe(
      200,
    );
    const res = await api.inject({
      method: 'POST',
      url: '/v1/things',
      headers: { ...asKey('a'), 'content-type': 'application/json' },
      payload: '{"not json',
    });
    expect(res.statusCode).toBe(429);
  });

  it('keys the anonymous caller by address, and never limits health, metrics or the OpenAPI document', async () => {
    const api = await build({ rateLimitMax: 2 });
    const from = (remoteAddress: string) =>
      api.inject({ method: 'GET', url: '/v1/things', headers: { 'x-test-anonymous': '1' }, remoteAddress });
    expect([(await from('10.0.0.1')).statusCode, (await from('10.0.0.1')).statusCode]).toEqual([200, 200]);
    expect((await from('10.0.0.1')).statusCode).toBe(429);
    expect((await from('10.0.0.2')).statusCode).toBe(200);

    for (let i = 0; i < 10; i++) {
      for (const url of ['/healthz', '/readyz', '/metrics', '/openapi.json']) {
        const res = await api.inject({ method: 'GET', url, remoteAddress: '10.0.0.1' });
        expect(res.statusCode, url).toBe(200);
        expect(res.headers['x-ratelimit-limit'], url).toBeUndefined();
      }
    }
  });

  it('refuses missing credentials with 401 before counting, and is off with RATE_LIMIT_MAX=0', async () => {
    const api = await build({ rateLimitMax: 1 });
    for (let i = 0; i < 3; i++)
      expect((await api.inject({ method: 'GET', url: '/v1/things' })).statusCode).toBe(401);
    expect((await api.inject({ method: 'GET', url: '/v1/things', headers: asKey('a') })).statusCode).toBe(
      200,
    );
    await api.close();

    const unlimited = await build({ rateLimitMax: 0 });
    for (let i = 0; i < 20; i++) {
      const res = await unlimited.inject({ method: 'GET', url: '/v1/things', headers: asKey('a') });
      expect(res.statusCode).toBe(200);
      expect(res.headers['x-ratelimit-limit']).toBeUndefined();
    }
  });
});

describe('body limit', () => {
  it('refuses a body over 256 KiB by default with 413 and takes one under it', async () => {
    const api = await build();
    const post = (bytes: number) =>
      api.inject({
        method: 'POST',
        url: '/v1/things',
        headers: { ...asKey('a'), 'content-type': 'application/json' },
        payload: JSON.stringify({ pad: 'x'.repeat(bytes) }),
      });
    expect((await post(200 * 1024)).statusCode).toBe(200);
    const tooBig = await post(256 * 1024);
    expect(tooBig.statusCode).toBe(413);
    expect(tooBig.json()).toMatchObject({ error: { code: 'FST_ERR_CTP_BODY_TOO_LARGE' } });
  });

  it('takes its limit from the configuration', async () => {
    const api = await build({ bodyLimitBytes: 2_048 });
    const res = await api.inject({
      method: 'POST',
      url: '/v1/things',
      headers: { ...asKey('a'), 'content-type': 'application/json' },
      payload: JSON.stringify({ pad: 'x'.repeat(3_000) }),
    });
    expect(res.statusCode).toBe(413);
  });
});

describe('timeouts', () => {
  async function listen(limits: Partial<HttpLimits>): Promise<number> {
    const api = await build(limits);
    await api.listen({ port: 0, host: '127.0.0.1' });
    return (api.server.address() as AddressInfo).port;
  }

  /** A raw connection, what the server sent on it, and when it was closed. */
  function rawConnection(port: number): { socket: Socket; received: () => string; closed: Promise<void> } {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.on('data', (chunk) => (text += chunk.toString('latin1')));
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    return { socket, received: () => text, closed };
  }

  const within = <T>(promise: Promise<T>, ms: number, what: string) =>
    Promise.race([
      promise,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`${what} not within ${ms} ms`)), ms),
      ),
    ]);

  it('closes a connection that stays silent past the connection timeout', async () => {
    const port = await listen({ connectionTimeoutMs: 200, requestTimeoutMs: 0 });
    const conn = rawConnection(port);
    await within(conn.closed, 10_000, 'the close of a silent connection');
  });

  it('answers 408 and closes when a request is not complete within the request timeout', async () => {
    const port = await listen({ connectionTimeoutMs: 0, requestTimeoutMs: 200 });
    const conn = rawConnection(port);
    // Headers begun and never finished: a slow client holding the connection.
    conn.socket.write('GET /v1/things HTTP/1.1\r\nHost: localhost\r\nx-test-key: a\r\n');
    await within(conn.closed, 10_000, 'the close of an unfinished request');
    expect(conn.received()).toMatch(/^HTTP\/1\.1 408/);
  });
});

describe('configuration', () => {
  const Env = z.object(HttpLimitsEnv);

  it('defaults to a 256 KiB body, 30 s requests, 120 s idle connections and 6000 requests a minute per caller', () => {
    expect(httpLimitsFromConfig(parseEnv(Env, {}))).toEqual(DEFAULT_HTTP_LIMITS);
    expect(DEFAULT_HTTP_LIMITS).toEqual({
      bodyLimitBytes: 262_144,
      requestTimeoutMs: 30_000,
      connectionTimeoutMs: 120_000,
      rateLimitMax: 6_000,
      rateLimitWindowMs: 60_000,
    });
  });

  it('reads every variable, and names a bad one', () => {
    expect(
      httpLimitsFromConfig(
        parseEnv(Env, {
          HTTP_BODY_LIMIT_BYTES: '65536',
          HTTP_REQUEST_TIMEOUT_MS: '5000',
          HTTP_CONNECTION_TIMEOUT_MS: '0',
          RATE_LIMIT_MAX: '100',
          RATE_LIMIT_WINDOW_MS: '1000',
        }),
      ),
    ).toEqual({
      bodyLimitBytes: 65_536,
      requestTimeoutMs: 5_000,
      connectionTimeoutMs: 0,
      rateLimitMax: 100,
      rateLimitWindowMs: 1_000,
    });
    expect(() => parseEnv(Env, { RATE_LIMIT_MAX: '-1' })).toThrow(/RATE_LIMIT_MAX/);
    expect(() => parseEnv(Env, { HTTP_BODY_LIMIT_BYTES: 'lots' })).toThrow(/HTTP_BODY_LIMIT_BYTES/);
    expect(() => parseEnv(Env, { RATE_LIMIT_WINDOW_MS: '10' })).toThrow(/RATE_LIMIT_WINDOW_MS/);
  });
});
