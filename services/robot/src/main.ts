import {
  ConfigError,
  connectNats,
  createLogger,
  createMetricsRegistry,
  installShutdown,
  openEventStore,
  parseEnv,
  Topology,
} from '@rpa/shared';
import { resolveChromiumPath } from './browser.js';
import { RobotEnv } from './config.js';
import { buildOpsServer } from './opsServer.js';
import { createRobot } from './robot.js';

let env: RobotEnv;
try {
  env = parseEnv(RobotEnv, process.env);
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  process.stderr.write(`robot: ${error.message}\n`);
  process.exit(1);
}

const logger = createLogger({ name: 'robot', level: env.LOG_LEVEL });
const topology = new Topology(env.NATS_PREFIX);
const nc = await connectNats(env.NATS_URL, env.ROBOT_ID);
const store = await openEventStore(env, { nc, topology, logger });
const registry = createMetricsRegistry('robot');
const robot = createRobot({
  nc,
  store,
  topology,
  robotId: env.ROBOT_ID,
  logger,
  registry,
  chromiumPath: resolveChromiumPath(env.CHROMIUM_PATH),
  maxSessions: env.MAX_SESSIONS,
  ackWaitMs: env.ACK_WAIT_MS,
});
const app = buildOpsServer(robot, registry);

installShutdown(
  logger,
  async () => {
    await robot.stop({ graceMs: env.SHUTDOWN_GRACE_MS });
    await app.close();
    await store.close();
    await nc.drain();
  },
  env.SHUTDOWN_GRACE_MS + 10_000,
);

await app.listen({ host: env.HOST, port: env.HEALTH_PORT });
await robot.start();
logger.info({ robotId: env.ROBOT_ID, port: env.HEALTH_PORT }, 'robot ready');
