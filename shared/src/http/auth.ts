import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { Actor } from '../events/sessionEvents.js';

/**
 * What a caller may do: `sessions:write` issues commands, `sessions:read` reads sessions, their events and
 * artifacts and subscribes to feeds, `admin` views the fleet. One scope never implies another.
 */
export const Scope = z.enum(['sessions:write', 'sessions:read', 'admin']);
export type Scope = z.infer<typeof Scope>;
export const ALL_SCOPES: readonly Scope[] = Scope.options;

/** Who is calling, for which tenant and with which scopes; every route reads and writes within `tenantId` only. */
export interface AuthContext {
  tenantId: string;
  /** Recorded in the metadata of every event the caller's commands produce: a key id or a subject, never a secret. */
  actor: Actor;
  scopes: readonly Scope[];
}

declare module 'fastify' {
  interface FastifyRequest {
    auth: AuthContext;
  }
  interface FastifyContextConfig {
    /** An operational route (health, readiness, metrics, OpenAPI): served without credentials. */
    ops?: boolean;
    /** The scopes of which a caller needs one; registerAuth's policy fills it in for every other route. */
    scopes?: readonly Scope[];
  }
}

/**
 * Resolves the caller of a request; returns null to refuse it with 401. It never throws for bad credentials; it
 * throws AuthUnavailableError when it cannot tell (the token issuer's keys cannot be fetched).
 */
export type Authenticator = (request: FastifyRequest) => Promise<AuthContext | null>;

/** Credentials that cannot be checked right now: answered 503 with Retry-After, not 401. */
export class AuthUnavailableError extends Error {
  override readonly name = 'AuthUnavailableError';
  constructor(
    readonly reason: string,
    /** When to try again, in seconds. */
    readonly retryAfterSec: number,
  ) {
    super(`credentials cannot be checked right now (${reason})`);
  }
}

/**
 * Every request is served for one configured tenant, as an anonymous caller holding every scope. Only for local
 * development (AUTH_MODE=none) and tests.
 */
export function singleTenantAuthenticator(tenantId: string): Authenticator {
  return async () => ({ tenantId, actor: { kind: 'anonymous', id: 'anonymous' }, scopes: ALL_SCOPES });
}

/** A route as registerAuth saw it being registered, with the access it demands. */
export interface GuardedRoute {
  method: string;
  url: string;
  /** null for an operational route, which is served without credentials. */
  scopes: readonly Scope[] | null;
}

export interface AuthPolicy {
  /** The scopes of which a caller needs one for this route; asked once per route, at registration. */
  scopes(route: { method: string; url: string }): readonly Scope[];
}

const inventories = new WeakMap<FastifyInstance, GuardedRoute[]>();

/**
 * Every route registered after registerAuth, as it was registered, with its access. Tests call each of them
 * without (or with the wrong) credentials, so that a route added later is checked without anyone listing it.
 */
export function guardedRoutes(app: FastifyInstance): readonly GuardedRoute[] {
  return inventories.get(app) ?? [];
}

const UNAUTHENTICATED = { error: { code: 'UNAUTHENTICATED', message: 'missing or invalid credentials' } };
const AUTH_UNAVAILABLE = {
  error: {
    code: 'AUTH_UNAVAILABLE',
    message: "the token issuer's signing keys cannot be fetched right now; try again later",
  },
};

/**
 * Authenticates every request before its body is parsed and before a WebSocket upgrade is answered (onRequest),
 * except the operational routes (`config.ops`), then checks the route's scopes. Missing or invalid credentials
 * are 401 (with a `WWW-Authenticate` challenge); a valid caller without the scope is 403; credentials that cannot be
 * checked right now (the JWKS is unreachable) are 503 with `Retry-After`, so that clients retry instead of
 * discarding a token that may be good. A route that somehow
 * has no scopes (registered before this hook) is refused too, so that a forgotten route fails closed. Handlers
 * read `request.auth`. Call it before registering the routes it guards.
 */
export function registerAuth(app: FastifyInstance, authenticate: Authenticator, policy: AuthPolicy): void {
  const inventory: GuardedRoute[] = [];
  inventories.set(app, inventory);
  app.decorateRequest('auth', null as unknown as AuthContext);
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    if (route.config?.ops) {
      for (const method of methods) inventory.push({ method, url: route.url, scopes: null });
      return;
    }
    const scopes = route.config?.scopes ?? policy.scopes({ method: methods.join(','), url: route.url });
    route.config = { ...route.config, scopes };
    for (const method of methods) inventory.push({ method, url: route.url, scopes });
  });
  app.addHook('onRequest', async (request, reply) => {
    const config = request.routeOptions.config;
    if (config?.ops) return;
    let auth: AuthContext | null;
    try {
      auth = await authenticate(request);
    } catch (error) {
      if (!(error instanceof AuthUnavailableError)) throw error;
      return reply.code(503).header('retry-after', String(error.retryAfterSec)).send(AUTH_UNAVAILABLE);
    }
    if (!auth) return reply.code(401).header('www-authenticate', 'Bearer').send(UNAUTHENTICATED);
    request.auth = auth;
    // No route matched: the 404 handler answers the authenticated caller.
    if (request.routeOptions.url === undefined) return;
    const required = config?.scopes;
    if (!required || !required.some((scope) => auth.scopes.includes(scope)))
      return reply.code(403).send({
        error: {
          code: 'FORBIDDEN',
          message: required
            ? `this call needs the scope ${required.join(' or ')}`
            : 'this route has no access policy',
        },
      });
  });
}
