import {
  closeAll,
  installShutdown,
  NatsSnapshotStore,
  openServiceContext,
  runMain,
  SessionCommandHandler,
  singleTenantAuthenticator,
} from '@rpa/shared';
import { buildApp } from './app.js';
import { CommandApiEnv } from './config.js';

async function main(): Promise<void> {
  const ctx = await openServiceContext('command-api', CommandApiEnv);
  const { config, logger } = ctx;

  const app = await buildApp({
    handler: new SessionCommandHandler({
      store: ctx.store,
      logger: logger.child({ component: 'commands' }),
      snapshots: await NatsSnapshotStore.open(ctx.nc, ctx.topology, { logger }),
    }),
    // Callers are not told apart yet: every request is served for the one configured tenant.
    authenticator: singleTenantAuthenticator(config.DEFAULT_TENANT),
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
