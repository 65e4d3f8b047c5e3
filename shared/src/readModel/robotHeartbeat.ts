import { z } from 'zod';
import { Labels } from '../events/sessionEvents.js';

/** Circuit-breaker states as robots report them. */
export const BreakerStateName = z.enum(['closed', 'open', 'halfOpen']);

/**
 * What a robot puts into the robots KV bucket (key: its robot id) every heartbeat interval. The bucket's entries
 * expire, so a robot that stops beating disappears from it; readers call a robot offline once `at` is older than
 * `ttlMs`. A robot that stops gracefully puts one last beat with status `stopped`.
 */
export const RobotHeartbeat = z.object({
  v: z.literal(1),
  robotId: z.string().min(1).max(200),
  status: z.enum(['running', 'stopping', 'stopped']),
  startedAt: z.string(),
  /** When this beat was sent (ISO). */
  at: z.string(),
  /** How long after `at` the robot counts as offline without a newer beat. */
  ttlMs: z.number().int().positive(),
  capacity: z.object({
    maxSessions: z.number().int().nonnegative(),
    sessionsHeld: z.number().int().nonnegative(),
  }),
  /** The sessions held; readers show each tenant only its own. */
  sessions: z
    .array(z.object({ sessionId: z.string(), tenantId: z.string(), epoch: z.number().int().nonnegative() }))
    .max(1_000),
  browser: z.object({
    connected: z.boolean(),
    contexts: z.number().int().nonnegative(),
    /** Resident memory of the browser and all its processes, where the platform tells; null elsewhere. */
    memoryBytes: z.number().int().nonnegative().nullable(),
  }),
  breakers: z.array(z.object({ name: z.string(), state: BreakerStateName })).max(1_000),
  /** The labels the robot carries (ROBOT_LABELS): it takes only sessions whose required labels it all has. */
  labels: Labels.optional(),
});
export type RobotHeartbeat = z.infer<typeof RobotHeartbeat>;
