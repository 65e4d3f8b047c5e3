import { z } from 'zod';
import { envFields, EventStoreEnv, parseEnv } from '@rpa/shared';

/** Every environment variable the command API reads. */
export const CommandApiEnv = z.object({
  PORT: envFields.port(8080),
  HOST: envFields.host(),
  NATS_URL: envFields.natsUrl(),
  NATS_PREFIX: envFields.prefix(),
  LOG_LEVEL: envFields.logLevel(),
  DEFAULT_TENANT: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 of A-Z a-z 0-9 _ - (it is part of read-model keys)')
    .default('default'),
  ...EventStoreEnv,
});
export type CommandApiConfig = z.infer<typeof CommandApiEnv>;

/** Parses the command API's configuration; throws ConfigError naming each bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv): CommandApiConfig {
  return parseEnv(CommandApiEnv, env);
}
