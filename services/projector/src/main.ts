import {
  closeAll,
  ConfigError,
  connectNats,
  createLogger,
  createMetricsRegistry,
  installShutdown,
  openEventStore,
  parseEnv,
  Topology,
} from '@rpa/shared';
import { ProjectorEnv } from './config.js';
import { buildOpsServer } from './opsServer.js';
import { createProjector } from './projector.js';

async function main(): Promise<void> {
  let config: ProjectorEnv;
  try {
    config = parseEnv(ProjectorEnv, process.env);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    createLogger({ name: 'projector' }).error({ code: error.code }, error.message);
    process.exit(1);
  }

  const logger = createLogger({ name: 'projector', level: config.LOG_LEVEL });
  const topology = new Topology(config.NATS_PREFIX);
  const registry = createMetricsRegistry('projector');
  const nc = await connectNats(config.NATS_URL, 'projector');
  const store = await openEventStore(config, { nc, topology, logger });
  const projector = createProjector({
    nc,
    store,
    topology,
    logger,
    registry,
    settings: {
      kvReplicas: config.KV_REPLICAS,
      checkpointEveryEvents: config.CHECKPOINT_EVERY_EVENTS,
      checkpointEveryMs: config.CHECKPOINT_EVERY_MS,
    },
  });
  const ops = buildOpsServer({ registry, checks: projector.checks });

  installShutdown(
    logger,
    () =>
      closeAll(
        [
          ['projector', () => projector.close()],
          ['ops server', () => ops.close()],
          ['event store', () => store.close()],
          ['nats', () => nc.drain()],
        ],
        logger,
      ),
    config.SHUTDOWN_GRACE_MS,
  );

  // Liveness answers while the projector starts; readiness says when it runs.
  await ops.listen({ host: config.HOST, port: config.HEALTH_PORT });
  await projector.start();
  logger.info(
    { prefix: config.NATS_PREFIX, eventStore: config.EVENT_STORE, healthPort: config.HEALTH_PORT },
    'projector running',
  );
}

main().catch((error: unknown) => {
  createLogger({ name: 'projector' }).error({ err: error }, 'projector failed to start');
  process.exit(1);
});
