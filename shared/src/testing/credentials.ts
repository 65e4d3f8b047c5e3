import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  exportJWK,
  exportSPKI,
  generateKeyPair,
  SignJWT,
  UnsecuredJWT,
  type CryptoKey,
  type JWTPayload,
} from 'jose';
import { generateApiKey, type ApiKeyEntry } from '../http/apiKeys.js';
import type { Scope } from '../http/auth.js';

/** Claims a test token carries; `tenant` and `sub` are what the APIs read. */
export interface TestClaims extends JWTPayload {
  sub: string;
  tenant?: string;
  scope?: string;
}

/**
 * A token issuer for tests: an RSA and an EC P-256 key pair generated with jose, their public halves served as
 * a JWKS from a local HTTP server, and functions that mint valid and deliberately bad tokens.
 */
export interface TestIssuer {
  jwksUrl: string;
  issuer: string;
  audience: string;
  /** The RSA public key as PEM, for JWT_PUBLIC_KEY and for the HS256 key-confusion token. */
  rsaPublicPem: string;
  /** Requests the JWKS server answered. */
  jwksHits(): number;
  /** What the JWKS endpoint answers from now on: the keys (the default), a 503, or a body that is not a key set. */
  setJwksAnswer(answer: 'keys' | 'unavailable' | 'not-a-key-set'): void;
  /** A valid token (RS256 by default) for `claims`, expiring in an hour unless `exp` is given. */
  token(
    claims: TestClaims,
    options?: { alg?: 'RS256' | 'ES256'; header?: Record<string, unknown> },
  ): Promise<string>;
  /** The same, expired an hour ago. */
  expired(claims: TestClaims): Promise<string>;
  /** Valid from an hour from now (`nbf`). */
  notYetValid(claims: TestClaims): Promise<string>;
  /** `alg: none`, no signature. */
  unsigned(claims: TestClaims): string;
  /** HS256 with the RSA public key's PEM as the secret: the classic algorithm-confusion forgery. */
  hs256(claims: TestClaims): Promise<string>;
  /** Signed by a key the JWKS does not hold (same kid as the real one). */
  foreignSigned(claims: TestClaims): Promise<string>;
  close(): Promise<void>;
}

export async function startTestIssuer(): Promise<TestIssuer> {
  const rsa = await generateKeyPair('RS256', { modulusLength: 2048 });
  const ec = await generateKeyPair('ES256');
  const foreign = await generateKeyPair('RS256', { modulusLength: 2048 });
  const jwks = {
    keys: [
      { ...(await exportJWK(rsa.publicKey)), kid: 'rsa-1', alg: 'RS256', use: 'sig' },
      { ...(await exportJWK(ec.publicKey)), kid: 'ec-1', alg: 'ES256', use: 'sig' },
    ],
  };
  const rsaPublicPem = await exportSPKI(rsa.publicKey);
  let hits = 0;
  let answer: 'keys' | 'unavailable' | 'not-a-key-set' = 'keys';
  const server: Server = createServer((request, response) => {
    hits += 1;
    if (request.url !== '/.well-known/jwks.json') {
      response.writeHead(404).end();
      return;
    }
    if (answer === 'unavailable') {
      response.writeHead(503, { 'content-type': 'text/plain' }).end('down for maintenance');
      return;
    }
    const body = answer === 'keys' ? jwks : { keys: 'none today' };
    response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const issuer = 'https://issuer.test/';
  const audience = 'rpa-api';
  const now = () => Math.floor(Date.now() / 1000);

  const sign = (claims: TestClaims, key: CryptoKey | Uint8Array, header: Record<string, unknown>) =>
    new SignJWT({ exp: now() + 3600, ...claims })
      .setProtectedHeader({ ...header, alg: header.alg as string })
      .setIssuer(issuer)
      .setAudience(audience)
      .setIssuedAt()
      .sign(key);

  return {
    jwksUrl: `http://127.0.0.1:${port}/.well-known/jwks.json`,
    issuer,
    audience,
    rsaPublicPem,
    jwksHits: () => hits,
    setJwksAnswer: (next) => {
      answer = next;
    },
    token: (claims, options = {}) => {
      const alg = options.alg ?? 'RS256';
      return sign(claims, alg === 'RS256' ? rsa.privateKey : ec.privateKey, {
        alg,
        kid: alg === 'RS256' ? 'rsa-1' : 'ec-1',
        ...options.header,
      });
    },
    expired: (claims) =>
      sign({ ...claims, exp: now() - 3600, iat: now() - 7200 }, rsa.privateKey, {
        alg: 'RS256',
        kid: 'rsa-1',
      }),
    notYetValid: (claims) =>
      sign({ ...claims, nbf: now() + 3600, exp: now() + 7200 }, rsa.privateKey, {
        alg: 'RS256',
        kid: 'rsa-1',
      }),
    unsigned: (claims) =>
      new UnsecuredJWT({ exp: now() + 3600, ...claims }).setIssuer(issuer).setAudience(audience).encode(),
    hs256: (claims) => sign(claims, new TextEncoder().encode(rsaPublicPem), { alg: 'HS256', kid: 'rsa-1' }),
    foreignSigned: (claims) => sign(claims, foreign.privateKey, { alg: 'RS256', kid: 'rsa-1' }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** A generated API key for a test, with its configuration entry. */
export function testApiKey(id: string, tenant: string, scopes: Scope[]): { key: string; entry: ApiKeyEntry } {
  return generateApiKey({ id, tenant, scopes });
}
