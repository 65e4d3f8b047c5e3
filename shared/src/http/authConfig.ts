import { readFileSync } from 'node:fs';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { ApiKeyVerifier, parseApiKeys, type ApiKeyEntry } from './apiKeys.js';
import {
  AuthUnavailableError,
  singleTenantAuthenticator,
  type AuthContext,
  type Authenticator,
} from './auth.js';
import { JwtVerifier } from './jwt.js';

/**
 * The variables both APIs read to authenticate callers. With neither API keys nor a JWT key source configured,
 * a service refuses to start unless AUTH_MODE=none says, explicitly, that every caller is the DEFAULT_TENANT.
 */
export const AuthEnv = {
  /** `credentials` (default): API keys and/or JWTs. `none`: no authentication, local development only. */
  AUTH_MODE: z.enum(['credentials', 'none']).default('credentials'),
  /** A JSON array of {id, tenant, scopes, hash}; see ApiKeyEntry. */
  API_KEYS: z.string().optional(),
  /** A file (a mounted Secret, say) holding the same JSON array; read once at start. */
  API_KEYS_FILE: z.string().min(1).optional(),
  JWT_JWKS_URL: z.string().min(1).optional(),
  /** PEM text, or the path of a PEM file. */
  JWT_PUBLIC_KEY: z.string().min(1).optional(),
  JWT_ISSUER: z.string().min(1).optional(),
  /** One audience, or several separated by commas (a token must carry one of them). */
  JWT_AUDIENCE: z.string().min(1).optional(),
  JWT_TENANT_CLAIM: z
    .string()
    .regex(/^[A-Za-z0-9_:./-]{1,100}$/, 'must be a claim name (1-100 of A-Z a-z 0-9 _ : . / -)')
    .default('tenant'),
};

export interface AuthConfig {
  AUTH_MODE: 'credentials' | 'none';
  API_KEYS?: string | undefined;
  API_KEYS_FILE?: string | undefined;
  JWT_JWKS_URL?: string | undefined;
  JWT_PUBLIC_KEY?: string | undefined;
  JWT_ISSUER?: string | undefined;
  JWT_AUDIENCE?: string | undefined;
  JWT_TENANT_CLAIM: string;
  DEFAULT_TENANT: string;
}

/** How a service authenticates, for its start-up log line; names no key material. */
export interface AuthSummary {
  mode: 'credentials' | 'none';
  apiKeys: number;
  jwt: string | null;
  /** The tenant every request is served for, when AUTH_MODE=none. */
  tenant?: string;
}

/** Logs why credentials were refused (a code, never the credential). */
export type AuthFailureLog = (request: FastifyRequest, reason: string) => void;

const NOTHING_CONFIGURED =
  'no credentials configured: set API_KEYS or API_KEYS_FILE (API keys) and/or JWT_JWKS_URL or JWT_PUBLIC_KEY (JWT). ' +
  'For local development only, AUTH_MODE=none serves every request, unauthenticated, as the tenant DEFAULT_TENANT.';

function readText(path: string, variable: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(
      `${variable}: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
}

function loadKeys(config: AuthConfig): ApiKeyEntry[] {
  const entries: ApiKeyEntry[] = [];
  if (config.API_KEYS !== undefined && config.API_KEYS.trim() !== '')
    entries.push(...parseApiKeys(config.API_KEYS, 'API_KEYS'));
  if (config.API_KEYS_FILE)
    entries.push(...parseApiKeys(readText(config.API_KEYS_FILE, 'API_KEYS_FILE'), 'API_KEYS_FILE'));
  return entries;
}

function loadJwt(config: AuthConfig): JwtVerifier | null {
  if (!config.JWT_JWKS_URL && !config.JWT_PUBLIC_KEY) {
    if (config.JWT_ISSUER || config.JWT_AUDIENCE)
      throw new ConfigError('JWT_ISSUER/JWT_AUDIENCE: need JWT_JWKS_URL or JWT_PUBLIC_KEY');
    return null;
  }
  const publicKey = config.JWT_PUBLIC_KEY
    ? config.JWT_PUBLIC_KEY.trimStart().startsWith('-----BEGIN')
      ? config.JWT_PUBLIC_KEY
      : readText(config.JWT_PUBLIC_KEY, 'JWT_PUBLIC_KEY')
    : undefined;
  const audience = config.JWT_AUDIENCE?.split(',')
    .map((a) => a.trim())
    .filter(Boolean);
  return new JwtVerifier({
    ...(config.JWT_JWKS_URL ? { jwksUrl: config.JWT_JWKS_URL } : {}),
    ...(publicKey ? { publicKey } : {}),
    ...(config.JWT_ISSUER ? { issuer: config.JWT_ISSUER } : {}),
    ...(audience?.length ? { audience } : {}),
    tenantClaim: config.JWT_TENANT_CLAIM,
  });
}

/** Three base64url segments: a compact JWS. Generated API keys never contain a dot. */
/** Retry-After for a request refused because the JWKS could not be fetched: about one fetch timeout. */
const JWKS_RETRY_AFTER_SEC = 5;

const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*$/;

/**
 * The WebSocket subprotocol a feed client (a browser, which cannot set headers on a WebSocket) may carry its
 * credential in, as `rpa.bearer.<key or JWT>`, next to FEED_SUBPROTOCOL, the one the server selects. Unlike a query
 * string, it is not part of the URL that proxies and access logs record.
 */
export const BEARER_SUBPROTOCOL_PREFIX = 'rpa.bearer.';
/** The feed's own subprotocol: what the server answers with when a client offers it. */
export const FEED_SUBPROTOCOL = 'rpa.feed.v1';

/**
 * The credential a request presents: `Authorization: Bearer <key or JWT>`, `X-API-Key: <key>`, or on a WebSocket
 * upgrade a `rpa.bearer.<credential>` subprotocol. Two different credentials in one request, a repeated header or
 * another scheme are refused rather than guessed between.
 */
function presented(request: FastifyRequest): string | null | 'ambiguous' {
  const header = request.headers.authorization;
  const apiKey = request.headers['x-api-key'];
  if (Array.isArray(apiKey)) return 'ambiguous';
  let bearer: string | undefined;
  if (header !== undefined) {
    const match = /^Bearer +([^\s]+) *$/i.exec(header);
    if (!match) return 'ambiguous';
    bearer = match[1];
  }
  const offered = subprotocolCredential(request);
  if (offered === 'ambiguous') return offered;
  const given = [bearer, apiKey, offered].filter((c): c is string => c !== undefined);
  if (new Set(given).size > 1) return 'ambiguous';
  return given[0] ?? null;
}

/** The credential of a WebSocket upgrade's `rpa.bearer.` subprotocol, if it offers one (and only one). */
function subprotocolCredential(request: FastifyRequest): string | undefined | 'ambiguous' {
  if (request.headers.upgrade?.toLowerCase() !== 'websocket') return undefined;
  const header = request.headers['sec-websocket-protocol'];
  if (header === undefined) return undefined;
  const credentials = header
    .split(',')
    .map((protocol) => protocol.trim())
    .filter((protocol) => protocol.startsWith(BEARER_SUBPROTOCOL_PREFIX))
    .map((protocol) => protocol.slice(BEARER_SUBPROTOCOL_PREFIX.length));
  if (credentials.length > 1 || credentials[0] === '') return 'ambiguous';
  return credentials[0];
}

/** Combines API keys and JWTs into one authenticator; either may be absent. */
export function credentialAuthenticator(
  sources: { keys: ApiKeyVerifier | null; jwt: JwtVerifier | null },
  onFailure: AuthFailureLog = () => {},
): Authenticator {
  return async (request): Promise<AuthContext | null> => {
    const credential = presented(request);
    if (credential === null) {
      onFailure(request, 'NO_CREDENTIALS');
      return null;
    }
    if (credential === 'ambiguous') {
      onFailure(request, 'MALFORMED_CREDENTIALS');
      return null;
    }
    if (JWT_SHAPE.test(credential)) {
      if (!sources.jwt) {
        onFailure(request, 'JWT_NOT_CONFIGURED');
        return null;
      }
      const outcome = await sources.jwt.verify(credential);
      if (outcome.ok) return outcome.auth;
      onFailure(request, outcome.reason);
      if (outcome.unavailable) throw new AuthUnavailableError(outcome.reason, JWKS_RETRY_AFTER_SEC);
      return null;
    }
    const auth = sources.keys?.verify(credential) ?? null;
    if (!auth) onFailure(request, 'API_KEY_UNKNOWN');
    return auth;
  };
}

/**
 * Builds the authenticator the configuration asks for, or throws a ConfigError saying what is missing. Files
 * are read now, so that a bad mount fails the start rather than the first request.
 */
export function authenticatorFromConfig(
  config: AuthConfig,
  onFailure?: AuthFailureLog,
): { authenticator: Authenticator; summary: AuthSummary } {
  const entries = loadKeys(config);
  const jwt = loadJwt(config);
  if (config.AUTH_MODE === 'none') {
    if (entries.length > 0 || jwt)
      throw new ConfigError(
        'AUTH_MODE=none: contradicts the configured API keys/JWT; remove AUTH_MODE to authenticate callers',
      );
    return {
      authenticator: singleTenantAuthenticator(config.DEFAULT_TENANT),
      summary: { mode: 'none', apiKeys: 0, jwt: null, tenant: config.DEFAULT_TENANT },
    };
  }
  if (entries.length === 0 && !jwt) throw new ConfigError(NOTHING_CONFIGURED);
  const keys = entries.length > 0 ? new ApiKeyVerifier(entries) : null;
  return {
    authenticator: credentialAuthenticator({ keys, jwt }, onFailure),
    summary: { mode: 'credentials', apiKeys: entries.length, jwt: jwt?.describe() ?? null },
  };
}

/**
 * For entry files: builds the authenticator, or prints why the configuration is refused under the service's
 * name and exits 1 before anything is started.
 */
export function authenticatorFromConfigOrExit(
  service: string,
  config: AuthConfig,
): { authenticator: Authenticator; summary: AuthSummary } {
  try {
    return authenticatorFromConfig(config, (request, reason) =>
      request.log.info({ authFailure: reason }, 'credentials refused'),
    );
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${service}: ${error.message}\n`);
    process.exit(1);
  }
}
