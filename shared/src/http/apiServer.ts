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
    },
    transform: jsonSchemaTransform,
  });
  app.get('/openapi.json', { config: { ops: true }, schema: { hide: true } }, async () => app.swagger());
  return app;
}

function definedOnly<T extends object>(values: T): Partial<T> {
  return Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as Partial<T>;
}
