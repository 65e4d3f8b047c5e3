import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { z } from 'zod';
import { envFields, Labels, ServiceEnv } from '@rpa/shared';
import { EgressAllowEnv, EgressAllowTenantsEnv } from './egress/allowList.js';
import { DEFAULT_BROWSER_MEMORY_LIMIT_MB } from './memoryGuard.js';

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
  /** Sessions one robot runs at once (one browser context each). */
  MAX_SESSIONS_PER_ROBOT: z.coerce.number().int().min(1).max(256).optional(),
  /** Deprecated name of MAX_SESSIONS_PER_ROBOT, read when that one is not set. */
  MAX_SESSIONS: z.coerce.number().int().min(1).max(256).default(4),
  /** Labels this robot carries, `region=eu,proxy=none`: it takes only sessions whose required labels it all has. */
  ROBOT_LABELS: z
    .string()
    .default('')
    .transform((value, ctx) => {
      try {
        return parseLabels(value);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    }),
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
  /** How often a step held in a paused session re-reads its stream, in case a control notice was lost. */
  PAUSE_POLL_MS: z.coerce.number().int().min(100).max(600_000).default(5_000),
  /**
   * Resident memory (MiB) of this robot's Chromium past which the browser is restarted, checked every heartbeat;
   * its sessions fail over to recovery. 0 turns the guard off.
   */
  BROWSER_MEMORY_LIMIT_MB: z.coerce
    .number()
    .int()
    .min(0)
    .max(1_048_576)
    .default(DEFAULT_BROWSER_MEMORY_LIMIT_MB),
  /**
   * A directory of secret files, one per secret named after it (a Kubernetes Secret mounted as a volume), read at
   * each use. Secrets not found there are read from SECRET_<NAME> variables.
   */
  SECRETS_DIR: z.string().min(1).optional(),
  /**
   * Addresses the browser may reach although the egress policy refuses them by default (loopback, private,
   * link-local, ...), for every tenant: entries separated by commas, each `10.0.0.0/8`, `127.0.0.1:8080`,
   * `[fd00::]/8:443`, `host.internal:443` or `*.corp.example` (no port: every port).
   */
  EGRESS_ALLOW: EgressAllowEnv,
  /** The same per tenant: `tenant-a=10.1.0.0/16,host.internal:443;tenant-b=[fd00::]/8`. */
  EGRESS_ALLOW_TENANTS: EgressAllowTenantsEnv,
  /** How long a stopping robot lets the steps in hand finish before it interrupts them. */
  SHUTDOWN_GRACE_MS: z.coerce.number().int().min(0).max(120_000).default(15_000),
});
export type RobotEnv = z.infer<typeof RobotEnv>;

/** The sessions this robot runs at once: MAX_SESSIONS_PER_ROBOT, else the deprecated MAX_SESSIONS. */
export function maxSessionsPerRobot(env: Pick<RobotEnv, 'MAX_SESSIONS_PER_ROBOT' | 'MAX_SESSIONS'>): number {
  return env.MAX_SESSIONS_PER_ROBOT ?? env.MAX_SESSIONS;
}

/** Parses `name=value,name=value` into labels; throws naming the bad entry. */
export function parseLabels(value: string): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const part of value.split(',').map((p) => p.trim())) {
    if (part === '') continue;
    const eq = part.indexOf('=');
    const name = eq > 0 ? part.slice(0, eq).trim() : '';
    if (!name) throw new RangeError(`"${part}" is not name=value`);
    labels[name] = part.slice(eq + 1).trim();
  }
  const parsed = Labels.safeParse(labels);
  if (!parsed.success)
    throw new RangeError(
      parsed.error.issues.map((i) => `${i.path.join('.') || 'labels'}: ${i.message}`).join('; '),
    );
  return parsed.data;
}
