import { z } from 'zod';
import { ConfigError } from '../errors.js';

/**
 * Parses the environment with one zod object schema whose keys are variable names. A bad or missing value
 * throws a ConfigError naming every offending variable and why.
 */
export function parseEnv<S extends z.ZodObject>(schema: S, env: NodeJS.ProcessEnv = process.env): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const lines = result.error.issues.map(
    (issue) => `${issue.path.join('.') || '(environment)'}: ${issue.message}`,
  );
  throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
}

/**
 * For entry files: parses the environment, or prints every bad variable under the service's name and exits 1
 * before anything is started.
 */
export function parseEnvOrExit<S extends z.ZodObject>(
  service: string,
  schema: S,
  env: NodeJS.ProcessEnv = process.env,
): z.infer<S> {
  try {
    return parseEnv(schema, env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(`${service}: ${error.message}\n`);
    process.exit(1);
  }
}

/** Reusable env field parsers. */
export const envFields = {
  port: (def: number) => z.coerce.number().int().min(0).max(65_535).default(def),
  /** A comma-separated list of NATS server URLs, required. */
  natsUrlList: () =>
    z
      .string()
      .refine(
        (s) =>
          s
            .split(',')
            .every((u) => /^(nats|tls|ws|wss):\/\/[^\s]+$/.test(u.trim()) || /^[^\s:/]+:\d+$/.test(u.trim())),
        { message: 'must be a comma-separated list of nats:// URLs' },
      ),
  natsUrl: () => envFields.natsUrlList().default('nats://127.0.0.1:4222'),
  prefix: () =>
    z
      .string()
      .regex(
        /^[a-z][a-z0-9_]{0,30}$/,
        'must be lowercase letters, digits and _ (it names streams and buckets)',
      )
      .default('rpa'),
  logLevel: () => z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  host: (def = '0.0.0.0') => z.string().min(1).default(def),
  tenant: (def = 'default') =>
    z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 of A-Z a-z 0-9 _ - (it is part of read-model keys)')
      .default(def),
  positiveInt: (def: number) => z.coerce.number().int().positive().default(def),
  bool: (def: boolean) =>
    z
      .enum(['true', 'false', '1', '0', 'yes', 'no'])
      .default(def ? 'true' : 'false')
      .transform((v) => v === 'true' || v === '1' || v === 'yes'),
};
