import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Fastify, { type FastifyInstance } from 'fastify';
import { exportSPKI, generateKeyPair, SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestIssuer, testApiKey, type TestIssuer } from '../testing/credentials.js';
import { freePort } from '../testing/natsServer.js';
import { ConfigError } from '../errors.js';
import { ApiKeyVerifier, generateApiKey, hashApiKey, parseApiKeys } from './apiKeys.js';
import { registerAuth, singleTenantAuthenticator } from './auth.js';
import { authenticatorFromConfig, type AuthConfig } from './authConfig.js';
import { JwtVerifier } from './jwt.js';

const base: AuthConfig = { AUTH_MODE: 'credentials', JWT_TENANT_CLAIM: 'tenant', DEFAULT_TENANT: 'default' };

describe('API keys', () => {
  it('hashes keys as sha256:<hex> and resolves a presented key to its tenant, id and scopes', () => {
    const { key, entry } = generateApiKey({ id: 'ci', tenant: 'acme', scopes: ['sessions:write'] });
    expect(key).toMatch(/^rpa_[A-Za-z0-9_-]{43}$/);
    expect(entry.hash).toBe(hashApiKey(key));
    expect(entry.hash).toMatch(/^sha256:[0-9a-f]{64}$/);
    const other = generateApiKey({ id: 'ro', tenant: 'globex', scopes: ['sessions:read'] });
    const verifier = new ApiKeyVerifier([entry, other.entry]);
    expect(verifier.verify(key)).toEqual({
      tenantId: 'acme',
      actor: { kind: 'api-key', id: 'ci' },
      scopes: ['sessions:write'],
    });
    expect(verifier.verify(other.key)?.tenantId).toBe('globex');
    expect(verifier.verify(`${key}x`)).toBeNull();
    expect(verifier.verify('')).toBeNull();
    expect(verifier.verify(entry.hash)).toBeNull();
  });

  it('names the source, index and field of a bad entry, never quoting the text', () => {
    const attempt = () =>
      parseApiKeys('[{"id":"ok","tenant":"a.b","scopes":["root"],"hash":"rpa_secret"}]', 'API_KEYS_FILE');
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(
      /API_KEYS_FILE\[0\.tenant\][\s\S]*API_KEYS_FILE\[0\.scopes\.0\][\s\S]*API_KEYS_FILE\[0\.hash\]/,
    );
    expect(attempt).not.toThrow(/rpa_secret/);
    expect(() => parseApiKeys('rpa_oops', 'API_KEYS')).toThrow(/API_KEYS: is not JSON/);
    expect(() => parseApiKeys('rpa_oops', 'API_KEYS')).not.toThrow(/rpa_oops/);
  });

  it('refuses one id or one key configured twice', () => {
    const a = testApiKey('dup', 'acme', ['admin']);
    const b = testApiKey('dup', 'globex', ['admin']);
    expect(() => new ApiKeyVerifier([a.entry, b.entry])).toThrow(/id dup is configured twice/);
    expect(() => new ApiKeyVerifier([a.entry, { ...b.entry, id: 'other', hash: a.entry.hash }])).toThrow(
      /also configured under another id/,
    );
  });
});

describe('JWT', () => {
  let issuer: TestIssuer;
  let verifier: JwtVerifier;
  beforeAll(async () => {
    issuer = await startTestIssuer();
    verifier = new JwtVerifier({ jwksUrl: issuer.jwksUrl, issuer: issuer.issuer, audience: issuer.audience });
  });
  afterAll(async () => issuer?.close());

  it('accepts RS256 and ES256 tokens from the JWKS, reading tenant, subject and scopes', async () => {
    expect(
      await verifier.verify(await issuer.token({ sub: 'u1', tenant: 'acme', scope: 'sessions:read bogus' })),
    ).toEqual({
      ok: true,
      auth: { tenantId: 'acme', actor: { kind: 'jwt', id: 'u1' }, scopes: ['sessions:read'] },
    });
    const es = await issuer.token(
      { sub: 'u2', tenant: 'acme', scp: ['admin', 'sessions:write'] },
      { alg: 'ES256' },
    );
    expect(await verifier.verify(es)).toMatchObject({
      ok: true,
      auth: { scopes: ['admin', 'sessions:write'] },
    });
  });

  it('refuses alg none, HS256, expired, not yet valid, foreign, tenantless and subjectless tokens', async () => {
    const claims = { sub: 'u1', tenant: 'acme', scope: 'admin' };
    const reasons = await Promise.all(
      [
        issuer.unsigned(claims),
        await issuer.hs256(claims),
        await issuer.expired(claims),
        await issuer.notYetValid(claims),
        await issuer.foreignSigned(claims),
        await issuer.token({ sub: 'u1', scope: 'admin' }),
        await issuer.token({ tenant: 'acme' } as never),
        await issuer.token({ sub: 'u1', tenant: '../etc' }),
      ].map(async (t) => verifier.verify(t)),
    );
    expect(reasons.map((r) => (r.ok ? 'accepted' : r.reason))).toEqual([
      'ERR_JOSE_ALG_NOT_ALLOWED',
      'ERR_JOSE_ALG_NOT_ALLOWED',
      'ERR_JWT_EXPIRED',
      'ERR_JWT_CLAIM_VALIDATION_FAILED',
      'ERR_JWS_SIGNATURE_VERIFICATION_FAILED',
      'JWT_TENANT_INVALID',
      'ERR_JWT_CLAIM_VALIDATION_FAILED',
      'JWT_TENANT_INVALID',
    ]);
  });

  it('enforces the configured issuer and audience', async () => {
    const strict = new JwtVerifier({
      jwksUrl: issuer.jwksUrl,
      issuer: 'https://elsewhere/',
      audience: issuer.audience,
    });
    expect(await strict.verify(await issuer.token({ sub: 'u', tenant: 'acme' }))).toMatchObject({
      ok: false,
    });
    const aud = new JwtVerifier({ jwksUrl: issuer.jwksUrl, audience: 'another-api' });
    expect(await aud.verify(await issuer.token({ sub: 'u', tenant: 'acme' }))).toMatchObject({ ok: false });
  });

  it('verifies with a configured PEM public key (text or file), its type fixing the algorithm', async () => {
    const fromPem = authenticatorFromConfig({ ...base, JWT_PUBLIC_KEY: issuer.rsaPublicPem });
    expect(fromPem.summary).toEqual({ mode: 'credentials', apiKeys: 0, jwt: 'public key (RS256)' });
    const dir = mkdtempSync(join(tmpdir(), 'jwt-'));
    const ec = await generateKeyPair('ES256');
    writeFileSync(join(dir, 'ec.pem'), await exportSPKI(ec.publicKey));
    const fromFile = new JwtVerifier({ publicKey: readFileSync(join(dir, 'ec.pem'), 'utf8') });
    const token = await new SignJWT({ tenant: 'acme', sub: 'svc' })
      .setProtectedHeader({ alg: 'ES256' })
      .setExpirationTime('5m')
      .sign(ec.privateKey);
    expect(await fromFile.verify(token)).toMatchObject({ ok: true, auth: { tenantId: 'acme' } });
    expect(authenticatorFromConfig({ ...base, JWT_PUBLIC_KEY: join(dir, 'ec.pem') }).summary.jwt).toBe(
      'public key (ES256)',
    );
    // An RS256 token against the EC key: refused by the algorithm, not tried.
    const rs = await issuer.token({ sub: 'u', tenant: 'acme' });
    expect(await fromFile.verify(rs)).toEqual({ ok: false, reason: 'ERR_JOSE_ALG_NOT_ALLOWED' });
  });
});

describe('authentication configuration', () => {
  it('refuses to run with no credentials configured unless AUTH_MODE=none says so', () => {
    expect(() => authenticatorFromConfig(base)).toThrow(/no credentials configured[\s\S]*AUTH_MODE=none/);
    expect(() => authenticatorFromConfig({ ...base, API_KEYS: '[]' })).toThrow(/no credentials configured/);
    expect(authenticatorFromConfig({ ...base, AUTH_MODE: 'none' }).summary).toEqual({
      mode: 'none',
      apiKeys: 0,
      jwt: null,
      tenant: 'default',
    });
    const key = testApiKey('k', 'acme', ['admin']);
    expect(() =>
      authenticatorFromConfig({ ...base, AUTH_MODE: 'none', API_KEYS: JSON.stringify([key.entry]) }),
    ).toThrow(/contradicts/);
    expect(() => authenticatorFromConfig({ ...base, API_KEYS_FILE: '/no/such/file' })).toThrow(
      /API_KEYS_FILE: cannot read \/no\/such\/file \(ENOENT\)/,
    );
    expect(() =>
      authenticatorFromConfig({ ...base, JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nxx' }),
    ).toThrow(/JWT_PUBLIC_KEY: is not a PEM public key/);
    expect(() => authenticatorFromConfig({ ...base, JWT_ISSUER: 'https://i/' })).toThrow(/need JWT_JWKS_URL/);
  });

  it('merges keys from API_KEYS and API_KEYS_FILE', () => {
    const dir = mkdtempSync(join(tmpdir(), 'keys-'));
    const one = testApiKey('one', 'acme', ['admin']);
    const two = testApiKey('two', 'acme', ['admin']);
    writeFileSync(join(dir, 'keys.json'), JSON.stringify([two.entry]));
    const { summary } = authenticatorFromConfig({
      ...base,
      API_KEYS: JSON.stringify([one.entry]),
      API_KEYS_FILE: join(dir, 'keys.json'),
    });
    expect(summary.apiKeys).toBe(2);
  });
});

describe('registerAuth', () => {
  const key = testApiKey('reader', 'acme', ['sessions:read']);
  let app: FastifyInstance;
  const failures: string[] = [];
  beforeAll(async () => {
    app = Fastify();
    const { authenticator } = authenticatorFromConfig(
      { ...base, API_KEYS: JSON.stringify([key.entry]) },
      (_request, reason) => failures.push(reason),
    );
    registerAuth(app, authenticator, {
      scopes: ({ url }) => (url === '/write' ? ['sessions:write'] : ['sessions:read']),
    });
    app.get('/healthz', { config: { ops: true } }, async () => ({ ok: true }));
    app.get('/read', async (request) => ({ tenant: request.auth.tenantId, actor: request.auth.actor }));
    app.post('/write', async () => ({ ok: true }));
    await app.ready();
  });
  afterAll(async () => app?.close());

  it('serves ops routes without credentials, refuses others with 401, and checks scopes (403)', async () => {
    expect((await app.inject({ url: '/healthz' })).statusCode).toBe(200);
    const anonymous = await app.inject({ url: '/read' });
    expect(anonymous.statusCode).toBe(401);
    expect(anonymous.headers['www-authenticate']).toBe('Bearer');
    const read = await app.inject({ url: '/read', headers: { 'x-api-key': key.key } });
    expect(read.json()).toEqual({ tenant: 'acme', actor: { kind: 'api-key', id: 'reader' } });
    const write = await app.inject({
      method: 'POST',
      url: '/write',
      headers: { authorization: `bearer ${key.key}` },
    });
    expect(write.statusCode).toBe(403);
    expect(write.json().error).toEqual({
      code: 'FORBIDDEN',
      message: 'this call needs the scope sessions:write',
    });
    expect((await app.inject({ url: '/nowhere', headers: { 'x-api-key': key.key } })).statusCode).toBe(404);
    expect((await app.inject({ url: '/nowhere' })).statusCode).toBe(401);
    expect(failures).toContain('NO_CREDENTIALS');
  });

  it('refuses two different credentials in one request, and a JWT when none is configured', async () => {
    const other = generateApiKey({ id: 'x', tenant: 'acme', scopes: ['admin'] }).key;
    const both = await app.inject({
      url: '/read',
      headers: { 'x-api-key': key.key, authorization: `Bearer ${other}` },
    });
    expect(both.statusCode).toBe(401);
    const jwtShaped = await app.inject({ url: '/read', headers: { authorization: 'Bearer a.b.c' } });
    expect(jwtShaped.statusCode).toBe(401);
    expect(failures).toEqual(expect.arrayContaining(['MALFORMED_CREDENTIALS', 'JWT_NOT_CONFIGURED']));
  });

  it('gives the single-tenant development authenticator every scope', async () => {
    expect(await singleTenantAuthenticator('t')({} as never)).toMatchObject({
      tenantId: 't',
      scopes: ['sessions:write', 'sessions:read', 'admin'],
    });
  });
});

describe('JWKS outage', () => {
  let issuer: TestIssuer;
  let app: FastifyInstance;
  beforeAll(async () => {
    issuer = await startTestIssuer();
    issuer.setJwksAnswer('unavailable');
    app = Fastify();
    const { authenticator } = authenticatorFromConfig({ ...base, JWT_JWKS_URL: issuer.jwksUrl });
    registerAuth(app, authenticator, { scopes: () => ['sessions:read'] });
    app.get('/read', async (request) => ({ tenant: request.auth.tenantId }));
    await app.ready();
  });
  afterAll(async () => {
    await app?.close();
    await issuer?.close();
  });

  const read = (token: string) => app.inject({ url: '/read', headers: { authorization: `Bearer ${token}` } });

  it('answers 503 with Retry-After while the key set cannot be fetched, then serves once it can', async () => {
    const token = await issuer.token({ sub: 'u1', tenant: 'acme', scope: 'sessions:read' });
    for (const answer of ['unavailable', 'not-a-key-set'] as const) {
      issuer.setJwksAnswer(answer);
      const hits = issuer.jwksHits();
      const refused = await read(token);
      expect(refused.statusCode, answer).toBe(503);
      expect(refused.headers['retry-after']).toBe('5');
      expect(refused.json().error.code).toBe('AUTH_UNAVAILABLE');
      expect(issuer.jwksHits()).toBe(hits + 1);
    }
    issuer.setJwksAnswer('keys');
    const served = await read(token);
    expect(served.statusCode).toBe(200);
    expect(served.json()).toEqual({ tenant: 'acme' });

    // With the keys cached, an outage changes nothing: good tokens pass, bad ones are 401, and nothing is fetched.
    issuer.setJwksAnswer('unavailable');
    const hits = issuer.jwksHits();
    expect((await read(token)).statusCode).toBe(200);
    expect((await read(await issuer.expired({ sub: 'u1', tenant: 'acme' }))).statusCode).toBe(401);
    expect((await read(issuer.unsigned({ sub: 'u1', tenant: 'acme' }))).statusCode).toBe(401);
    expect(issuer.jwksHits()).toBe(hits);
  });

  it('reports an unreachable key set as unavailable, not as a bad token', async () => {
    const nowhere = new JwtVerifier({ jwksUrl: `http://127.0.0.1:${await freePort()}/jwks.json` });
    const token = await issuer.token({ sub: 'u1', tenant: 'acme' });
    expect(await nowhere.verify(token)).toEqual({ ok: false, reason: 'JWKS_UNREACHABLE', unavailable: true });
    // A token that is not even well formed is refused before any key is fetched.
    expect(await nowhere.verify('a.b.c')).toMatchObject({ ok: false, reason: 'ERR_JWS_INVALID' });
    expect(await nowhere.verify('a.b.c')).not.toHaveProperty('unavailable');
  });
});
