import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { HttpError } from '@rpa/shared';
import { ErrorResponse } from '../http/schemas.js';
import type { RobotIndex } from '../index/robotIndex.js';
import { RobotView } from '../index/robotView.js';

/** Robot ids as robots accept them (ROBOT_ID). */
const RobotId = z.string().regex(/^[A-Za-z0-9_.-]{1,200}$/, 'must be 1-200 of A-Z a-z 0-9 _ . -');

const RobotList = z.object({ items: z.array(RobotView) });

/**
 * GET /v1/robots and GET /v1/robots/:id: the fleet, from the robot index. Robots serve every tenant, so every
 * caller sees every robot, but only the sessions of its own tenant on each.
 */
export function registerRobotRoutes(app: FastifyInstance, index: RobotIndex): void {
  const api = app.withTypeProvider<ZodTypeProvider>();

  api.get(
    '/v1/robots',
    {
      schema: {
        summary: 'The robot fleet, by robot id',
        description:
          'Robots that beat, and for a day those that stopped beating (offline) or said goodbye (stopped).',
        tags: ['robots'],
        response: { 200: RobotList },
      },
    },
    async (request) => ({ items: index.list(request.auth.tenantId) }),
  );

  api.get(
    '/v1/robots/:id',
    {
      schema: {
        summary: 'One robot',
        tags: ['robots'],
        params: z.object({ id: RobotId }),
        response: { 200: RobotView, 404: ErrorResponse },
      },
    },
    async (request) => {
      const robot = index.get(request.auth.tenantId, request.params.id);
      if (!robot) throw new HttpError(404, 'ROBOT_NOT_FOUND', `robot ${request.params.id} not found`);
      return robot;
    },
  );
}
