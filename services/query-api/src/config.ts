import { z } from 'zod';
import { envFields, ServiceEnv, parseEnv } from '@rpa/shared';

/** Every environment variable the query API reads. */
export const QueryApiEnv = z.object({
  PORT: envFields.port(8081),
  DEFAULT_TENANT: envFields.tenant(),
  ...ServiceEnv,
});
export type QueryApiConfig = z.infer<typeof QueryApiEnv>;

/** Parses the query API's configuration; throws ConfigError naming each bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv): QueryApiConfig {
  return parseEnv(QueryApiEnv, env);
}
