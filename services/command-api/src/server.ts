import {
  closeAll,
  ConfigError,
  connectNats,
  createLogger,
  createMetricsRegistry,
  installShutdown,
  openEventStore,
  SessionCommandHandler,
  singleTenantAuthenticator,
  Topology,
  type Logger,
  type NatsConnection,
} from '@rpa/shared';
import { buildApp } from './app.js';
import { loadConfig } from './config.js';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`command-api: ${error.message}\n`);
      process.exit(1);
    }
    throw error;
  }
  const logger = createLogger({ name: 'command-api', level: config.LOG_LEVEL });
  const topology = new Topology(config.NATS_PREFIX);
  const nc = await connectNats(config.NATS_URL, 'command-api');
  logNatsStatus(nc, logger);
  const store = await openEventStore(config, { nc, topology, logger });

  const app = await buildApp({
    handler: new SessionCommandHandler({ store, logger: logger.child({ component: 'commands' }) }),
    // Callers are not told apart yet: every request is served for the one configured tenant.
    authenticator: singleTenantAuthenticator(config.DEFAULT_TENANT),
    logger,
    registry: createMetricsRegistry('command-api'),
    readiness: [
      {
        name: 'nats',
        check: async () => {
          await nc.flush();
        },
      },
      { name: 'eventStore', check: () => store.ping() },
    ],
  });

  installShutdown(logger, async () => {
    await closeAll(
      [
        ['http', () => app.close()],
        ['eventStore', () => store.close()],
        ['nats', () => nc.drain()],
      ],
      logger,
    );
  });

  await app.listen({ port: config.PORT, host: config.HOST });
}

function logNatsStatus(nc: NatsConnection, logger: Logger): void {
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnect' || status.type === 'error')
        logger.warn({ nats: status.type }, 'NATS connection status changed');
    }
  })();
}

main().catch((error: unknown) => {
  process.stderr.write(`command-api failed to start: ${(error as Error)?.stack ?? String(error)}\n`);
  process.exit(1);
});
