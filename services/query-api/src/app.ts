import websocket from '@fastify/websocket';
import type { ObjectStore } from '@nats-io/obj';
import type { FastifyInstance } from 'fastify';
import {
  createApiServer,
  Gauge,
  registerAuth,
  registerOpsRoutes,
  type Authenticator,
  type EventStore,
  type Logger,
  type ReadinessCheck,
  type Registry,
  type SessionCommandHandler,
} from '@rpa/shared';
import { FeedHub, type FeedOptions } from './feed/feedHub.js';
import { SessionControls } from './feed/sessionControls.js';
import type { RobotIndex } from './index/robotIndex.js';
import { RobotStatus } from './index/robotView.js';
import type { SessionIndex } from './index/sessionIndex.js';
import { registerArtifactRoutes } from './routes/artifacts.js';
import { registerDeadLetterRoutes } from './routes/deadLetters.js';
import { registerEventRoutes } from './routes/events.js';
import { registerFeedRoute } from './routes/feed.js';
import { registerRobotRoutes } from './routes/robots.js';
import { registerSessionRoutes } from './routes/sessions.js';

export interface AppDeps {
  index: SessionIndex;
  robots: RobotIndex;
  eventStore: EventStore;
  artifacts: ObjectStore;
  authenticator: Authenticator;
  logger: Logger;
  registry: Registry;
  readiness: ReadinessCheck[];
  feed?: Partial<FeedOptions>;
  /**
   * The command handler on this service's event store, for the feed's session controls. Without it, a control
   * message is answered with CONTROLS_UNAVAILABLE.
   */
  commands?: Pick<SessionCommandHandler, 'handle'>;
}

/**
 * Builds the query API: REST over the session and robot indexes, the event store and the artifact store, and
 * the WebSocket feed. It does not listen; closing it closes every feed connection with 1001.
 */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const app = await createApiServer({
    logger: deps.logger,
    openapi: {
      title: 'RPA query API',
      description:
        'Read models of sessions, their events and artifacts, dead-lettered steps, the robot fleet, and a live WebSocket feed that also takes session controls.',
    },
  });

  const feedLogger = deps.logger.child({ component: 'feed' });
  const controls = deps.commands ? new SessionControls({ handler: deps.commands, logger: feedLogger }) : null;
  const hub = new FeedHub(deps.index, feedLogger, deps.feed, controls);
  // Runs before the websocket plugin's own preClose, so clients learn why they are being closed.
  app.addHook('preClose', async () => hub.closeAll());
  await app.register(websocket, { options: { maxPayload: hub.wsMaxPayload } });

  registerAuth(app, deps.authenticator);
  registerOpsRoutes(app, { registry: deps.registry, checks: deps.readiness });

  registerSessionRoutes(app, deps.index);
  registerDeadLetterRoutes(app, deps.index);
  registerEventRoutes(app, deps.eventStore);
  registerArtifactRoutes(app, deps.index, deps.artifacts);
  registerRobotRoutes(app, deps.robots);
  registerFeedRoute(app, hub);

  registerMetrics(deps.registry, deps.index, deps.robots, hub);
  return app;
}

function registerMetrics(registry: Registry, index: SessionIndex, robots: RobotIndex, hub: FeedHub): void {
  new Gauge({
    name: 'rpa_query_index_sessions',
    help: 'Session documents held in the index',
    registers: [registry],
    collect() {
      this.set(index.stats().sessions);
    },
  });
  new Gauge({
    name: 'rpa_query_index_skipped_documents',
    help: 'Invalid session documents skipped since start',
    registers: [registry],
    collect() {
      this.set(index.stats().skipped);
    },
  });
  new Gauge({
    name: 'rpa_query_robots',
    help: 'Robots in the fleet view, by computed status',
    labelNames: ['status'],
    registers: [registry],
    collect() {
      const { byStatus } = robots.stats();
      for (const status of RobotStatus.options) this.set({ status }, byStatus[status]);
    },
  });
  new Gauge({
    name: 'rpa_query_robot_index_skipped_entries',
    help: 'Invalid robot heartbeats skipped since start',
    registers: [registry],
    collect() {
      this.set(robots.stats().skipped);
    },
  });
  new Gauge({
    name: 'rpa_query_feed_connections',
    help: 'Open WebSocket feed connections',
    registers: [registry],
    collect() {
      this.set(hub.stats().connections);
    },
  });
  new Gauge({
    name: 'rpa_query_feed_slow_consumers_dropped',
    help: 'Feed connections dropped for not keeping up, since start',
    registers: [registry],
    collect() {
      this.set(hub.stats().slowDropped);
    },
  });
}
