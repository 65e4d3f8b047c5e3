import { z } from 'zod';
import { AuthEnv, envFields, HttpLimitsEnv, ServiceEnv, parseEnv } from '@rpa/shared';

/** Every environment variable the query API reads. */
export const QueryApiEnv = z.object({
  PORT: envFields.port(8081),
  DEFAULT_TENANT: envFields.tenant(),
  ...AuthEnv,
  ...HttpLimitsEnv,
  /** Subscriptions one feed connection may hold; one more is answered with a SUBSCRIPTION_LIMIT error frame. */
  FEED_MAX_SUBSCRIPTIONS: envFields.positiveInt(100),
  /** Largest feed message answered; a larger one gets a MESSAGE_TOO_LARGE error frame and a 1009 close. */
  FEED_MAX_MESSAGE_BYTES: z.coerce
    .number()
    .int()
    .min(1_024)
    .max(1024 * 1024)
    .default(64 * 1024),
  ...ServiceEnv,
});
export type QueryApiConfig = z.infer<typeof QueryApiEnv>;

/** Parses the query API's configuration; throws ConfigError naming each bad variable. */
export function loadConfig(env: NodeJS.ProcessEnv): QueryApiConfig {
  return parseEnv(QueryApiEnv, env);
}
