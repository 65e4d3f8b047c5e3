import fastify, { type FastifyInstance } from 'fastify';
import { registerOpsRoutes, type ReadinessCheck, type Registry } from '@rpa/shared';

/** The projector's only HTTP surface: /healthz, /readyz and /metrics. Built without listening. */
export function buildOpsServer(options: { registry: Registry; checks: ReadinessCheck[] }): FastifyInstance {
  // Probe traffic is not worth a log line per request.
  const app = fastify({ logger: false });
  registerOpsRoutes(app, options);
  return app;
}
