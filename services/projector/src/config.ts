import { envFields, ServiceEnv } from '@rpa/shared';
import { z } from 'zod';
import { parseTenantLimits } from './tenantGate.js';

/** The projector's environment, parsed once at start; a bad value names its variable. */
export const ProjectorEnv = z.object({
  ...ServiceEnv,
  HEALTH_PORT: envFields.port(9091),
  /** Replicas of the KV buckets when the projector creates them: 3 on a production cluster. */
  KV_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
  CHECKPOINT_EVERY_EVENTS: envFields.positiveInt(500),
  CHECKPOINT_EVERY_MS: envFields.positiveInt(1_000),
  /** Cap on the active (assigned, not yet ended) sessions of every tenant without its own; 0: no cap. */
  TENANT_MAX_SESSIONS: z.coerce.number().int().min(0).max(100_000).default(0),
  /** Caps per tenant, `acme=2,beta=10`; a tenant listed here ignores TENANT_MAX_SESSIONS. */
  TENANT_SESSION_LIMITS: z
    .string()
    .default('')
    .transform((value, ctx) => {
      try {
        return parseTenantLimits(value);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    }),
  /** Ack wait of the work consumers (must match the robots'); bounds how late lost work is noticed. */
  ACK_WAIT_MS: z.coerce.number().int().min(1_000).max(600_000).default(30_000),
  /** Time between two scans of the reconciler for runnable work without a message. */
  RECONCILE_INTERVAL_MS: z.coerce.number().int().min(100).max(3_600_000).default(30_000),
  /**
   * How long runnable work must be seen without a message before it is sent again; default: ack wait x step max
   * deliver + 30 s (longer than any message can legitimately be gone).
   */
  RECONCILE_AFTER_MS: z.coerce.number().int().min(100).max(86_400_000).optional(),
  /** How long a shutdown may take before the process exits anyway. */
  SHUTDOWN_GRACE_MS: envFields.positiveInt(25_000),
});
export type ProjectorEnv = z.infer<typeof ProjectorEnv>;
