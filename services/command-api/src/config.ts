import { z } from 'zod';
import { AuthEnv, envFields, HttpLimitsEnv, ServiceEnv, parseEnv } from '@rpa/shared';

/** Every environment variable the command API reads. */
export const CommandApiEnv = z.object({
  PORT: envFields.port(8080),
  DEFAULT_TENANT: envFields.tenant(),
  ...AuthEnv,
  ...HttpLimitsEnv,
  ...ServiceEnv,
});
export type CommandApiConfig = z.infer<typeof CommandApiEnv>;

/** Parses the command API's configuration; throws ConfigError naming each bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv): CommandApiConfig {
  return parseEnv(CommandApiEnv, env);
}
