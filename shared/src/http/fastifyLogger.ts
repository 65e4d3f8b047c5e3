import type { FastifyBaseLogger } from 'fastify';
import type { Logger } from '../logging/logger.js';

type LogFn = FastifyBaseLogger['info'];

/**
 * Presents the project's Logger to fastify, which also wants fatal, trace, silent and a level. fatal goes to
 * error and trace to debug; the level is whatever the wrapped logger filters at.
 */
export function toFastifyLogger(logger: Logger): FastifyBaseLogger {
  // A pino logger already is one: keep it, with its serializers and level checks.
  const l = logger as Partial<Record<'fatal' | 'trace' | 'silent', unknown>>;
  if (typeof l.fatal === 'function' && typeof l.trace === 'function' && typeof l.silent === 'function')
    return logger as unknown as FastifyBaseLogger;
  const call =
    (fn: (obj: object, msg?: string) => void): LogFn =>
    (objOrMsg: unknown, msg?: unknown) => {
      if (typeof objOrMsg === 'string') fn({}, objOrMsg);
      else if (objOrMsg instanceof Error)
        fn({ err: objOrMsg }, typeof msg === 'string' ? msg : objOrMsg.message);
      else fn((objOrMsg ?? {}) as object, typeof msg === 'string' ? msg : undefined);
    };
  const adapted = {
    level: (logger as { level?: string }).level ?? 'info',
    fatal: call((o, m) => logger.error(o, m)),
    error: call((o, m) => logger.error(o, m)),
    warn: call((o, m) => logger.warn(o, m)),
    info: call((o, m) => logger.info(o, m)),
    debug: call((o, m) => logger.debug(o, m)),
    trace: call((o, m) => logger.debug(o, m)),
    silent: (() => {}) as LogFn,
    child: (bindings: Record<string, unknown>) => toFastifyLogger(logger.child(bindings)),
  };
  return adapted as FastifyBaseLogger;
}
