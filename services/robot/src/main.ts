import { closeAll, installShutdown, openServiceContext } from '@rpa/shared';
import { resolveChromiumPath } from './browser.js';
import { maxSessionsPerRobot, RobotEnv } from './config.js';
import { buildOpsServer } from './opsServer.js';
import { createRobot } from './robot.js';
import { createSecretProvider } from './secrets/index.js';

const ctx = await openServiceContext('robot', RobotEnv, { connectionName: (env) => env.ROBOT_ID });
const { config: env, logger, nc, store, topology, registry } = ctx;
const robot = createRobot({
  nc,
  store,
  topology,
  robotId: env.ROBOT_ID,
  logger,
  registry,
  chromiumPath: resolveChromiumPath(env.CHROMIUM_PATH),
  maxSessions: maxSessionsPerRobot(env),
  labels: env.ROBOT_LABELS,
  ackWaitMs: env.ACK_WAIT_MS,
  heartbeatIntervalMs: env.HEARTBEAT_INTERVAL_MS,
  maxSessionDurationMs: env.MAX_SESSION_DURATION_MS,
  browserMemoryLimitBytes: env.BROWSER_MEMORY_LIMIT_MB * 1_048_576,
  pausePollMs: env.PAUSE_POLL_MS,
  egress: { allow: env.EGRESS_ALLOW, tenantAllow: env.EGRESS_ALLOW_TENANTS },
  secrets: createSecretProvider({ env: process.env, secretsDir: env.SECRETS_DIR }),
});
const app = buildOpsServer(robot, registry);

installShutdown(
  logger,
  () =>
    closeAll(
      [
        ['robot', () => robot.stop({ graceMs: env.SHUTDOWN_GRACE_MS })],
        ['ops server', () => app.close()],
        ['connections', () => ctx.close()],
      ],
      logger,
    ),
  env.SHUTDOWN_GRACE_MS + 10_000,
);

await app.listen({ host: env.HOST, port: env.HEALTH_PORT });
await robot.start();
logger.info({ robotId: env.ROBOT_ID, port: env.HEALTH_PORT }, 'robot ready');
