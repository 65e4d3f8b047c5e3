import websocket from '@fastify/websocket';
import type { ObjectStore } from '@nats-io/obj';
import type { FastifyInstance } from 'fastify';
import {
  createApiServer,
  Gauge,
  registerAuth,
  registerOpsRoutes,
  type Actor,
  type AuthContext,
  type Authenticator,
  type EventStore,
  type HttpLimits,
  type Logger,
  type ReadinessCheck,
  type Registry,
  type Scope,
  type SessionCommandHandler,
} from '@rpa/shared';
import { FeedHub, type FeedOptions } from './feed/feedHub.js';
import type { ControlMessage } from './feed/feedMessages.js';
import { SessionControls, type ControlOutcome } from './feed/sessionControls.js';
import type { RobotIndex } from './index/robotIndex.js';
import { RobotStatus } from './index/robotView.js';
import type { SessionIndex } from './index/sessionIndex.js';
import { registerArtifactRoutes } from './routes/artifacts.js';
import { registerDeadLetterRoutes } from './routes/deadLetters.js';
import { registerEventRoutes } from './routes/events.js';
import { registerFeedRoute } from './routes/feed.js';
import { registerRobotRoutes } from './routes/robots.js';
import { registerSessionRoutes } from './routes/sessions.js';

const READ_SCOPES: readonly Scope[] = ['sessions:read'];
const FLEET_SCOPES: readonly Scope[] = ['sessions:read', 'admin'];
const isFleetRoute = (url: string) => url === '/v1/robots' || url.startsWith('/v1/robots/');

const FEED_URL = '/v1/feed';

/**
 * Feed controls change sessions as the command API does, so they need what its routes need (sessions:write),
 * while subscribing needs only sessions:read. The connection's actor (the object its upgrade request was
 * authenticated as, handed to the hub) says whether its caller holds the scope.
 */
class ScopedSessionControls extends SessionControls {
  private readonly writers = new WeakSet<Actor>();

  admit(auth: AuthContext): void {
    if (auth.scopes.includes('sessions:write')) this.writers.add(auth.actor);
  }

  override async issue(message: ControlMessage, tenantId: string, actor: Actor): Promise<ControlOutcome> {
    if (!this.writers.has(actor))
      return { ok: false, error: { code: 'FORBIDDEN', message: 'controls need the scope sessions:write' } };
    return super.issue(message, tenantId, actor);
  }
}

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
  /** Body, time and rate limits (HTTP_*, RATE_LIMIT_*); DEFAULT_HTTP_LIMITS where absent. */
  http?: Partial<HttpLimits>;
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
    ...(deps.http ? { limits: deps.http } : {}),
    openapi: {
      title: 'RPA query API',
      description:
        'Read models of sessions, their events and artifacts, dead-lettered steps, the robot fleet, and a live WebSocket feed that also takes session controls.',
    },
  });

  const feedLogger = deps.logger.child({ component: 'feed' });
  const controls = deps.commands
    ? new ScopedSessionControls({ handler: deps.commands, logger: feedLogger })
    : null;
  const hub = new FeedHub(deps.index, feedLogger, deps.feed, controls);
  // Runs before the websocket plugin's own preClose, so clients learn why they are being closed.
  app.addHook('preClose', async () => hub.closeAll());
  await app.register(websocket, hub.pluginOptions);

  // Registered before the routes it guards: every route reads sessions (sessions:read), except the fleet view,
  // which an admin may read too (each robot still shows only the caller's sessions).
  registerAuth(app, deps.authenticator, {
    scopes: ({ url }) => (isFleetRoute(url) ? FLEET_SCOPES : READ_SCOPES),
  });
  registerOpsRoutes(app, { registry: deps.registry, checks: deps.readiness });
  // The upgrade request's caller decides, once, whether the connection may steer sessions.
  app.addHook('preHandler', async (request) => {
    if (request.routeOptions.url === FEED_URL && request.auth) controls?.admit(request.auth);
  });

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
