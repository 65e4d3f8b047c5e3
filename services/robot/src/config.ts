import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { z } from 'zod';
import { envFields, ServiceEnv } from '@rpa/shared';

/** A robot id for this process: `robot-<hostname>-<random>`, restricted to characters safe in names and logs. */
export function defaultRobotId(host: string = hostname()): string {
  const safeHost = host.replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 100) || 'host';
  return `robot-${safeHost}-${randomBytes(4).toString('hex')}`;
}

/** The robot's environment, parsed once at start; a bad value stops the process naming the variable. */
export const RobotEnv = z.object({
  ...ServiceEnv,
  ROBOT_ID: z
    .string()
    .regex(/^[A-Za-z0-9_.-]{1,200}$/, 'must be 1-200 of A-Z a-z 0-9 _ . -')
    .optional()
    .transform((id) => id ?? defaultRobotId()),
  MAX_SESSIONS: z.coerce.number().int().min(1).max(256).default(4),
  ACK_WAIT_MS: z.coerce.number().int().min(1_000).max(600_000).default(30_000),
  CHROMIUM_PATH: z.string().min(1).optional(),
  HEALTH_PORT: envFields.port(9092),
  /** Time between this robot's heartbeats in the robots bucket; it counts as offline after three missed ones. */
  HEARTBEAT_INTERVAL_MS: z.coerce.number().int().min(100).max(600_000).default(5_000),
  /** Longest a session is held by this robot before it is expired; 0 turns the limit off. */
  MAX_SESSION_DURATION_MS: z.coerce
    .number()
    .int()
    .min(0)
    .max(7 * 86_400_000)
    .default(0),
  /** How long a stopping robot lets the steps in hand finish before it interrupts them. */
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(120_000).default(15_000),
});
export type RobotEnv = z.infer<typeof RobotEnv>;
