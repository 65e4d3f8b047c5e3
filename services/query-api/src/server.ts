import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
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
import { QueryApiEnv } from './config.js';
import { RobotIndex } from './index/robotIndex.js';
import { SessionIndex } from './index/sessionIndex.js';

async function main(): Promise<void> {
  // Credentials are checked before anything connects: without any configured, the service does not start.
  const auth = authenticatorFromConfigOrExit('query-api', parseEnvOrExit('query-api', QueryApiEnv));
  const ctx = await openServiceContext('query-api', QueryApiEnv);
  const { config, logger, nc, topology } = ctx;
  if (auth.summary.mode === 'none')
    logger.warn(
      { auth: auth.summary },
      'AUTH_MODE=none: every request is served unauthenticated for one tenant',
    );
  else logger.info({ auth: auth.summary }, 'authentication configured');

  const kvm = new Kvm(nc);
  const kv = await kvm.create(topology.sessionsBucket);
  // Only the artifacts store is opened: restore points hold cookies and are never served.
  const artifacts = await new Objm(nc).create(topology.artifactsBucket);
  const index = new SessionIndex({ kv, logger: logger.child({ component: 'index' }) });
  index.start();
  const robotsKv = await kvm.create(topology.robotsBucket, topology.robotsBucketOptions());
  const robots = new RobotIndex({ kv: robotsKv, logger: logger.child({ component: 'robots' }) });
  robots.start();

  const app = await buildApp({
    index,
    robots,
    eventStore: ctx.store,
    artifacts,
    // The feed's session controls go through the same decider and store as the command API's routes.
    commands: new SessionCommandHandler({
      store: ctx.store,
      logger: logger.child({ component: 'commands' }),
      snapshots: await NatsSnapshotStore.open(nc, topology, { logger }),
    }),
    authenticator: auth.authenticator,
    http: httpLimitsFromConfig(config),
    feed: { maxSubscriptions: config.FEED_MAX_SUBSCRIPTIONS, maxMessageBytes: config.FEED_MAX_MESSAGE_BYTES },
    logger,
    registry: ctx.registry,
    readiness: [
      ...ctx.checks,
      {
        name: 'index',
        check: async () => {
          if (!index.isReady()) throw new Error('session index still loading');
        },
      },
      {
        name: 'robots',
        check: async () => {
          if (!robots.isReady()) throw new Error('robot index still loading');
        },
      },
    ],
  });

  installShutdown(logger, () =>
    closeAll(
      [
        ['http', () => app.close()],
        ['index', () => index.stop()],
        ['robots', () => robots.stop()],
        ['connections', () => ctx.close()],
      ],
      logger,
    ),
  );

  await app.listen({ port: config.PORT, host: config.HOST });
  void Promise.all([index.ready, robots.ready]).then(() =>
    logger.info({}, 'ready: session and robot indexes loaded'),
  );
}

runMain('query-api', main);
