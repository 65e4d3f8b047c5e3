import { createPublicKey, type KeyObject } from 'node:crypto';
import { createRemoteJWKSet, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { ConfigError } from '../errors.js';
import { Scope, type AuthContext } from './auth.js';

/** Asymmetric algorithms only: with a public key configured, an HS* token (signed with that key as a secret) is refused. */
export const JWT_ALGORITHMS = ['RS256', 'ES256'] as const;
export type JwtAlgorithm = (typeof JWT_ALGORITHMS)[number];

/** Tokens longer than this are refused unread. */
const MAX_TOKEN_LENGTH = 8 * 1024;
const TENANT = /^[A-Za-z0-9_-]{1,64}$/;

export interface JwtVerifierOptions {
  /** Where the issuer publishes its signing keys; fetched on first use, cached, refetched for an unknown `kid`. */
  jwksUrl?: string;
  /** Or one public key: PEM (SPKI) text or a KeyObject, RSA (RS256) or EC P-256 (ES256). */
  publicKey?: string | KeyObject;
  /** The `iss` every token must carry, when set. */
  issuer?: string;
  /** The `aud` every token must carry (one of), when set. */
  audience?: string | string[];
  /** The claim holding the caller's tenant; default `tenant`. */
  tenantClaim?: string;
  /** Leeway for `exp` and `nbf` between clocks, in seconds; default 30. */
  clockToleranceSec?: number;
}

/**
 * A verified token's caller, or why the token was refused (a jose error code or ours; never token content).
 * `unavailable`: the token could not be checked because the issuer's key set could not be fetched (unreachable,
 * timed out, not a 200, not a key set); that says nothing about the token, and the caller may try again.
 */
export type JwtOutcome = { ok: true; auth: AuthContext } | { ok: false; reason: string; unavailable?: true };

/** jose's codes for a key set that could not be fetched or read (a token's own faults have other codes). */
const KEY_SET_FAILURES: ReadonlySet<string> = new Set([
  'ERR_JWKS_TIMEOUT',
  'ERR_JOSE_GENERIC',
  'ERR_JWKS_INVALID',
]);

/** The algorithm a configured public key verifies, from its type; other key types are a configuration error. */
function algorithmOf(key: KeyObject): JwtAlgorithm {
  if (key.type !== 'public') throw new ConfigError('JWT_PUBLIC_KEY: must be a public key');
  if (key.asymmetricKeyType === 'rsa') return 'RS256';
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  throw new ConfigError('JWT_PUBLIC_KEY: must be an RSA key (RS256) or an EC P-256 key (ES256)');
}

function parsePublicKey(pem: string): KeyObject {
  try {
    return createPublicKey({ key: pem, format: 'pem' });
  } catch {
    throw new ConfigError('JWT_PUBLIC_KEY: is not a PEM public key');
  }
}

/** The scopes a token grants, from `scope` (space-separated, RFC 8693) or `scp` (a list or a string); unknown ones are ignored. */
function scopesOf(payload: JWTPayload): Scope[] {
  const raw: unknown[] = [];
  for (const claim of [payload.scope, payload.scp]) {
    if (typeof claim === 'string') raw.push(...claim.split(' '));
    else if (Array.isArray(claim)) raw.push(...(claim as unknown[]));
  }
  return [...new Set(raw.filter((s): s is Scope => Scope.safeParse(s).success))];
}

/**
 * Verifies bearer JWTs signed with RS256 or ES256 by a configured JWKS or public key, enforcing `exp` and `nbf`
 * (with a small tolerance), and `iss`/`aud` when configured; `alg: none` and HMAC tokens are refused by the
 * algorithm allow-list. The caller is the token's `sub`, its tenant the configured claim, its scopes `scope`/`scp`.
 */
export class JwtVerifier {
  private readonly key: KeyObject | JWTVerifyGetKey;
  private readonly algorithms: JwtAlgorithm[];
  private readonly tenantClaim: string;

  constructor(private readonly options: JwtVerifierOptions) {
    if (options.jwksUrl && options.publicKey)
      throw new ConfigError('JWT_JWKS_URL and JWT_PUBLIC_KEY: set one of them, not both');
    this.tenantClaim = options.tenantClaim ?? 'tenant';
    if (options.jwksUrl) {
      let url: URL;
      try {
        url = new URL(options.jwksUrl);
      } catch {
        throw new ConfigError('JWT_JWKS_URL: is not a URL');
      }
      if (url.protocol !== 'https:' && url.protocol !== 'http:')
        throw new ConfigError('JWT_JWKS_URL: must be an http(s) URL');
      this.key = createRemoteJWKSet(url, { timeoutDuration: 5_000, cooldownDuration: 30_000 });
      this.algorithms = [...JWT_ALGORITHMS];
    } else if (options.publicKey) {
      const key =
        typeof options.publicKey === 'string' ? parsePublicKey(options.publicKey) : options.publicKey;
      this.key = key;
      this.algorithms = [algorithmOf(key)];
    } else {
      throw new ConfigError('JWT: needs JWT_JWKS_URL or JWT_PUBLIC_KEY');
    }
  }

  /** Where the keys come from, for the start-up log line. */
  describe(): string {
    return this.options.jwksUrl ? `JWKS ${this.options.jwksUrl}` : `public key (${this.algorithms[0]})`;
  }

  async verify(token: string): Promise<JwtOutcome> {
    if (token.length > MAX_TOKEN_LENGTH) return { ok: false, reason: 'TOKEN_TOO_LONG' };
    let payload: JWTPayload;
    try {
      ({ payload } = await jwtVerify(token, this.key, {
        algorithms: this.algorithms,
        clockTolerance: this.options.clockToleranceSec ?? 30,
        requiredClaims: ['exp', 'sub'],
        ...(this.options.issuer ? { issuer: this.options.issuer } : {}),
        ...(this.options.audience ? { audience: this.options.audience } : {}),
      }));
    } catch (error) {
      const code = (error as { code?: unknown }).code;
      if (this.options.jwksUrl) {
        // Without a jose code, the fetch itself failed (refused, reset, DNS): the error is fetch's own.
        if (typeof code !== 'string' || !code.startsWith('ERR_'))
          return { ok: false, reason: 'JWKS_UNREACHABLE', unavailable: true };
        if (KEY_SET_FAILURES.has(code)) return { ok: false, reason: code, unavailable: true };
      }
      return { ok: false, reason: typeof code === 'string' ? code : 'JWT_INVALID' };
    }
    const sub = payload.sub;
    if (typeof sub !== 'string' || sub.length === 0 || sub.length > 200)
      return { ok: false, reason: 'JWT_SUBJECT_INVALID' };
    const tenant = payload[this.tenantClaim];
    if (typeof tenant !== 'string' || !TENANT.test(tenant))
      return { ok: false, reason: 'JWT_TENANT_INVALID' };
    return {
      ok: true,
      auth: { tenantId: tenant, actor: { kind: 'jwt', id: sub }, scopes: scopesOf(payload) },
    };
  }
}
