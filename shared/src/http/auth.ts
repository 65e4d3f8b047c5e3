import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Actor } from '../events/sessionEvents.js';

/** Who is calling and for which tenant; every route reads and writes within `tenantId` only. */
export interface AuthContext {
  tenantId: string;
  actor: Actor;
}

declare module 'fastify' {
  interface FastifyRequest {
    auth: AuthContext;
  }
}

/** Resolves the caller of a request; returns null to refuse it with 401. */
export type Authenticator = (request: FastifyRequest) => Promise<AuthContext | null>;

/** Every request is served for one configured tenant, as an anonymous caller. For single-tenant local use. */
export function singleTenantAuthenticator(tenantId: string): Authenticator {
  return async () => ({ tenantId, actor: { kind: 'anonymous', id: 'anonymous' } });
}

/**
 * Authenticates every request before its body is parsed (onRequest), except the operational routes
 * (`config.ops`). Handlers read `request.auth`.
 */
export function registerAuth(app: FastifyInstance, authenticate: Authenticator): void {
  app.decorateRequest('auth', null as unknown as AuthContext);
  app.addHook('onRequest', async (request, reply) => {
    if ((request.routeOptions.config as { ops?: boolean } | undefined)?.ops) return;
    const auth = await authenticate(request);
    if (!auth)
      return reply
        .code(401)
        .send({ error: { code: 'UNAUTHENTICATED', message: 'missing or invalid credentials' } });
    request.auth = auth;
  });
}
