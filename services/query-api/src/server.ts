import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import {
  closeAll,
  installShutdown,
  openServiceContext,
  runMain,
  singleTenantAuthenticator,
} from '@rpa/shared';
import { buildApp } from './app.js';
import { QueryApiEnv } from './config.js';
import { SessionIndex } from './index/sessionIndex.js';

async function main(): Promise<void> {
  const ctx = await openServiceContext('query-api', QueryApiEnv);
  const { config, logger, nc, topology } = ctx;

  const kv = await new Kvm(nc).create(topology.sessionsBucket);
  const artifacts = await new Objm(nc).create(topology.artifactsBucket);
  const index = new SessionIndex({ kv, logger: logger.child({ component: 'index' }) });
  index.start();

  const app = await buildApp({
    index,
    eventStore: ctx.store,
    artifacts,
    // Callers are not told apart yet: every request is served for the one configured tenant.
    authenticator: singleTenantAuthenticator(config.DEFAULT_TENANT),
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
    ],
  });

  installShutdown(logger, () =>
    closeAll(
      [
        ['http', () => app.close()],
        ['index', () => index.stop()],
        ['connections', () => ctx.close()],
      ],
      logger,
    ),
  );

  await app.listen({ port: config.PORT, host: config.HOST });
  void index.ready.then(() => logger.info({}, 'ready: session index loaded'));
}

runMain('query-api', main);
