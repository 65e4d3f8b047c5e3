import { envFields, ServiceEnv } from '@rpa/shared';
import { z } from 'zod';

/** The projector's environment, parsed once at start; a bad value names its variable. */
export const ProjectorEnv = z.object({
  ...ServiceEnv,
  HEALTH_PORT: envFields.port(9091),
  /** Replicas of the KV buckets when the projector creates them: 3 on a production cluster. */
  KV_REPLICAS: z.coerce.number().int().min(1).max(5).default(1),
  CHECKPOINT_EVERY_EVENTS: envFields.positiveInt(500),
  CHECKPOINT_EVERY_MS: envFields.positiveInt(1_000),
  /** How long a shutdown may take before the process exits anyway. */
  SHUTDOWN_GRACE_MS: envFields.positiveInt(25_000),
});
export type ProjectorEnv = z.infer<typeof ProjectorEnv>;
