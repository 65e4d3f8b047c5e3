import {
  closeAll,
  installShutdown,
  NatsSnapshotStore,
  openServiceContext,
  runMain,
  SessionCommandHandler,
  authenticatorFromConfigOrExit,
  parseEnvOrExit,
  httpLimitsFromConfig,
} from '@rpa/shared';
import { buildApp } from './app.js';
import { CommandApiEnv } from './config.js';

async function main(): Promise<void> {
  // Credentials are checked before anything connects: without any configured, the service does not start.
  const auth = authenticatorFromConfigOrExit('command-api', parseEnvOrExit('command-api', CommandApiEnv));
  const ctx = await openServiceContext('command-api', CommandApiEnv);
  const { config, logger } = ctx;
  if (auth.summary.mode === 'none')
    logger.warn(
      { auth: auth.summary },
      'AUTH_MODE=none: every request is served unauthenticated for one tenant',
    );
  else logger.info({ auth: auth.summary }, 'authentication configured');

  const app = await buildApp({
    handler: new SessionCommandHandler({
      store: ctx.store,
      logger: logger.child({ component: 'commands' }),
      snapshots: await NatsSnapshotStore.open(ctx.nc, ctx.topology, { logger }),
    }),
    authenticator: auth.authenticator,
    http: httpLimitsFromConfig(config),
    logger,
    registry: ctx.registry,
    readiness: ctx.checks,
  });

  installShutdown(logger, () =>
    closeAll(
      [
        ['http', () => app.close()],
        ['connections', () => ctx.close()],
      ],
      logger,
    ),
  );

  await app.listen({ port: config.PORT, host: config.HOST });
}

runMain('command-api', main);
