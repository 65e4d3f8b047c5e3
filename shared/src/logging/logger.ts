import { pino, type LoggerOptions } from 'pino';

/** The logging interface domain code depends on; pino satisfies it. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
}

/** Header names that carry credentials. */
const CREDENTIAL_HEADERS = [
  'authorization',
  'cookie',
  '["set-cookie"]',
  '["x-api-key"]',
  '["proxy-authorization"]',
  // A browser's feed connection carries its credential as a subprotocol.
  '["sec-websocket-protocol"]',
];
/** Field names that carry secret values (a fill step's typed value is treated as one). */
const SECRET_FIELDS = [
  'password',
  'secret',
  'secretValue',
  'token',
  'accessToken',
  'refreshToken',
  'apiKey',
  'value',
  'storageState',
  'cookies',
];

const header = (prefix: string, name: string) => `${prefix}${name.startsWith('[') ? '' : '.'}${name}`;

/**
 * Paths whose values never reach a log line: credential headers wherever a request or response is logged,
 * secret-bearing fields at the top level and one level down, browser storage, and typed step values.
 */
export const REDACT_PATHS: readonly string[] = [
  ...['req.headers', 'res.headers', 'headers', '*.headers', 'request.headers', 'response.headers'].flatMap(
    (prefix) => CREDENTIAL_HEADERS.map((name) => header(prefix, name)),
  ),
  ...SECRET_FIELDS,
  ...SECRET_FIELDS.map((field) => `*.${field}`),
  'step.value',
  'steps[*].value',
  '*.steps[*].value',
  'body.steps[*].value',
];

/** A pino JSON logger with this project's redaction rules. */
export function createLogger(options: {
  name: string;
  level?: string;
  destination?: NodeJS.WritableStream;
}): Logger {
  const opts: LoggerOptions = {
    name: options.name,
    level: options.level ?? 'info',
    redact: { paths: [...REDACT_PATHS], censor: '[redacted]' },
    base: { service: options.name },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return options.destination ? pino(opts, options.destination as pino.DestinationStream) : pino(opts);
}

/** A logger that drops everything, for tests that do not look at logs. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
