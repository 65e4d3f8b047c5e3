import type { Logger } from './logging/logger.js';

/**
 * Runs `shutdown` once on SIGTERM or SIGINT, then exits; a second signal, or a shutdown slower than the grace
 * period, exits at once. Only entry files call this.
 */
export function installShutdown(
  logger: Logger,
  shutdown: (signal: string) => Promise<void>,
  graceMs = 25_000,
): void {
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (stopping) {
      logger.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    logger.info({ signal }, 'shutting down');
    const timer = setTimeout(() => {
      logger.error({ graceMs }, 'shutdown took too long: exiting');
      process.exit(1);
    }, graceMs);
    timer.unref();
    shutdown(signal).then(
      () => {
        logger.info({}, 'stopped');
        process.exit(0);
      },
      (error: unknown) => {
        logger.error({ err: error }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

/**
 * Closes each resource in order and keeps going when one fails, so that one broken dependency never leaves the
 * others open. Rethrows the first failure at the end.
 */
export async function closeAll(
  steps: Array<[string, () => Promise<unknown> | unknown]>,
  logger?: Logger,
): Promise<void> {
  let first: unknown;
  for (const [name, step] of steps) {
    try {
      await step();
    } catch (error) {
      logger?.warn({ err: error, resource: name }, 'close failed');
      first ??= error;
    }
  }
  if (first) throw first;
}

/** Runs an entry file's async main; a failure to start is printed with its stack and exits 1. */
export function runMain(service: string, main: () => Promise<void>): void {
  main().catch((error: unknown) => {
    process.stderr.write(`${service} failed to start: ${(error as Error)?.stack ?? String(error)}\n`);
    process.exit(1);
  });
}
