import swagger from '@fastify/swagger';
import Fastify, { type FastifyInstance } from 'fastify';
import { jsonSchemaTransform, serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import type { Logger } from '../logging/logger.js';
import { registerErrorHandler } from './errorHandler.js';
import { toFastifyLogger } from './fastifyLogger.js';

export interface ApiServerOptions {
  logger: Logger;
  /** Largest request body accepted, in bytes; fastify's default (1 MiB) when absent. */
  bodyLimit?: number;
  openapi: {
    title: string;
    description: string;
    tags?: Array<{ name: string; description: string }>;
  };
}

/**
 * The fastify instance both APIs start from: zod validation and serialization, the project's error bodies, and
 * an OpenAPI document generated from the route schemas and served at `/openapi.json` (no credentials needed).
 */
export async function createApiServer(options: ApiServerOptions): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: toFastifyLogger(options.logger),
    ...(options.bodyLimit === undefined ? {} : { bodyLimit: options.bodyLimit }),
  });
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  registerErrorHandler(app);
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
