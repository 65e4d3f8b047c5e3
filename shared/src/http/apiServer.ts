import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Logger } from '../logging/logger.js';
import { registerErrorHandler } from './errorHandler.js';
import { toFastifyLogger } from './fastifyLogger.js';
import {
  DEFAULT_HTTP_LIMITS,
  registerAbuseLimits,
  serverTimeoutOptions,
  type HttpLimits,
} from './httpLimits.js';

export * from './httpLimits.js';

export interface ApiServerOptions {
  logger: Logger;
  /** Largest request body accepted, in bytes, when `limits` does not say (256 KiB when neither does). */
  bodyLimit?: number;
  /** Body, time and rate limits; each one absent takes its DEFAULT_HTTP_LIMITS value. */
  limits?: Partial<HttpLimits>;
  openapi: {
    title: string;
    description: string;
    tags?: Array<{ name: string; description: string }>;
  };
}

/**
 * The fastify instance both APIs start from: zod validation and serialization, the project's error bodies, the
 * abuse limits (body size, request and connection timeouts, security headers, per-caller rate limits; see
 * registerAbuseLimits) and an OpenAPI document generated from the route schemas and served at `/openapi.json`
 * (no credentials needed).
 */
export async function createApiServer(options: ApiServerOptions): Promise<FastifyInstance> {
  const limits: HttpLimits = {
    ...DEFAULT_HTTP_LIMITS,
    ...(options.bodyLimit === undefined ? {} : { bodyLimitBytes: options.bodyLimit }),
    ...definedOnly(options.limits ?? {}),
  };
  const app = Fastify({
    loggerInstance: toFastifyLogger(options.logger),
    ...serverTimeoutOptions(limits),
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  registerErrorHandler(app);
  await registerAbuseLimits(app, limits);
  await app.register(swagger, {
    openapi: {
      info: { title: options.openapi.title, description: options.openapi.description, version: '0.1.0' },
      ...(options.openapi.tags ? { tags: options.openapi.tags } : {}),
      components: { securitySchemes: SECURITY_SCHEMES },
      // Either credential, on every operation; the operational routes say they need none.
      security: [{ apiKey: [] }, { bearer: [] }],
    },
    transform: (document) => {
      const transformed = jsonSchemaTransform(document);
      const config = document.route.config as { ops?: boolean; scopes?: readonly string[] } | undefined;
      if (config?.ops) return { ...transformed, schema: { ...transformed.schema, security: [] } };
      // The scopes registerAuth demands of the route: one of them is enough.
      if (config?.scopes)
        return { ...transformed, schema: { ...transformed.schema, 'x-scopes': [...config.scopes] } };
      return transformed;
    },
  });
  app.get('/openapi.json', { config: { ops: true }, schema: { hide: true } }, async () => app.swagger());
  return app;
}

/** The two ways to present a credential; both are checked the same way (see registerAuth). */
const SECURITY_SCHEMES = {
  apiKey: {
    type: 'apiKey',
    in: 'header',
    name: 'X-API-Key',
    description: 'An API key (`rpa_…`), bound to one tenant and a set of scopes.',
  },
  bearer: {
    type: 'http',
    scheme: 'bearer',
    description:
      'An API key, or a JWT signed RS256 or ES256 by the configured issuer (tenant from its tenant claim, scopes ' +
      "from `scope`/`scp`). While the issuer's key set cannot be fetched, requests are answered 503 with Retry-After.",
  },
} as const;

function definedOnly<T extends object>(values: T): Partial<T> {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as Partial<T>;
}
