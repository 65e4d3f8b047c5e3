import Fastify, { type FastifyInstance } from 'fastify';
import { registerOpsRoutes, type Registry } from '@rpa/shared';
import type { Robot } from './robot.js';

/** The robot's HTTP surface: probes and metrics only. Built without listening. */
export function buildOpsServer(robot: Robot, registry: Registry): FastifyInstance {
  const app = Fastify({ logger: false });
  registerOpsRoutes(app, { registry, checks: robot.readinessChecks() });
  return app;
}
