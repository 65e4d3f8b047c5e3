import { closeAll, DEFAULT_WORK_SETTINGS, installShutdown, openServiceContext, runMain } from '@rpa/shared';
import { ProjectorEnv } from './config.js';
import { buildOpsServer } from './opsServer.js';
import { createProjector } from './projector.js';

async function main(): Promise<void> {
  const ctx = await openServiceContext('projector', ProjectorEnv);
  const { config, logger, nc, store, topology, registry } = ctx;
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
      work: { ...DEFAULT_WORK_SETTINGS, ackWaitMs: config.ACK_WAIT_MS },
      tenantLimits: { defaultMax: config.TENANT_MAX_SESSIONS, perTenant: config.TENANT_SESSION_LIMITS },
      reconcile: {
        intervalMs: config.RECONCILE_INTERVAL_MS,
        ...(config.RECONCILE_AFTER_MS !== undefined ? { afterMs: config.RECONCILE_AFTER_MS } : {}),
      },
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
          ['connections', () => ctx.close()],
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

runMain('projector', main);
