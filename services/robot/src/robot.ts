import { jetstream } from '@nats-io/jetstream';
import {
  closeAll,
  Counter,
  DEFAULT_WORK_SETTINGS,
  ensureWorkTopology,
  NatsSnapshotStore,
  SessionCommandHandler,
  type EventStore,
  type Logger,
  type NatsConnection,
  type ReadinessCheck,
  type Registry,
  type RobotHeartbeat,
  type SnapshotStore,
  type Topology,
  type WorkSettings,
} from '@rpa/shared';
import { NatsArtifactStore, type ArtifactStore } from './artifacts.js';
import { AssignmentPuller } from './assignments.js';
import { Breakers, defaultBreakerSettings, type BreakerSettings, type BreakerState } from './breakers.js';
import { RobotBrowser } from './browser.js';
import type { AllowEntry } from './egress/allowList.js';
import { EgressProxy, type Resolver } from './egress/proxy.js';
import { browserMemoryBytes } from './browserMemory.js';
import { BrowserMemoryGuard, DEFAULT_BROWSER_MEMORY_LIMIT_MB } from './memoryGuard.js';
import { FleetHeartbeat, openRobotsBucket } from './fleetHeartbeat.js';
import { RobotMetrics } from './metrics.js';
import { DEFAULT_RETRY, Reporter, type RetryPolicy } from './reporter.js';
import { NatsRestorePointStore, type RestorePointStore } from './restorePoints.js';
import { cleanUpSession } from './sessionCleanup.js';
import { SessionRunner } from './sessionRunner.js';
import type { SecretProvider } from './secrets/index.js';

/** Default time between fleet heartbeats. */
export const DEFAULT_HEARTBEAT_INTERVAL_MS = 5_000;

const HEARTBEAT_BREAKER_STATE: Record<BreakerState, RobotHeartbeat['breakers'][number]['state']> = {
  closed: 'closed',
  half_open: 'halfOpen',
  open: 'open',
};

export interface RobotDeps {
  nc: NatsConnection;
  store: EventStore;
  topology: Topology;
  robotId: string;
  logger: Logger;
  registry: Registry;
  /** The Chromium binary (see resolveChromiumPath). */
  chromiumPath: string;
  maxSessions: number;
  /** Labels this robot carries; sessions requiring others are handed back. */
  labels?: Record<string, string>;
  /** How long a session this robot lacks the labels for waits before it is offered again. Default 3 s. */
  mismatchDelayMs?: number;
  /** Ack wait of the assignment and step consumers; progress is signalled every third of it. */
  ackWaitMs: number;
  stepMaxDeliver?: number;
  /** Server-side wait of one pull; a stop is noticed within it. Default 5 s. */
  pullExpiresMs?: number;
  /** Delay before a session handed back after a failure is offered again. Default 5 s. */
  retryDelayMs?: number;
  breakerSettings?: BreakerSettings;
  retry?: RetryPolicy;
  /** Where screenshots go; the NATS object store by default. */
  artifacts?: ArtifactStore;
  /** Where restore points go; the NATS object store by default. */
  restorePoints?: RestorePointStore;
  /** Where folded session state is snapshotted; the NATS KV bucket by default. */
  snapshots?: SnapshotStore;
  /** Longest one session is held before it is expired with reason max_duration; 0 or absent: no limit. */
  maxSessionDurationMs?: number;
  /** How often a step held in a paused session re-reads the stream (control notices usually wake it first). */
  pausePollMs?: number;
  /** Time between fleet heartbeats in the robots bucket. Default 5 s. */
  heartbeatIntervalMs?: number;
  /** Resident memory of this robot's Chromium; read from /proc by default. */
  browserMemory?: () => Promise<number | null>;
  /**
   * Resident memory of the browser past which it is restarted (its sessions fail over to recovery), checked with
   * every heartbeat. 0 turns the guard off; default 2 GiB.
   */
  browserMemoryLimitBytes?: number;
  /** Where the secrets that steps name are read (see secrets/); absent: a step naming one fails SECRET_NOT_FOUND. */
  secrets?: SecretProvider;
  /**
   * The egress policy: loopback, private, link-local and other non-public addresses are refused to every browser
   * context unless allowed here. `allow` holds for every tenant (EGRESS_ALLOW), `tenantAllow` per tenant
   * (EGRESS_ALLOW_TENANTS); `resolve` replaces the system resolver (tests map names to addresses with it).
   */
  egress?: {
    allow?: readonly AllowEntry[];
    tenantAllow?: ReadonlyMap<string, readonly AllowEntry[]>;
    resolve?: Resolver;
  };
  now?: () => Date;
}

/** A running robot. */
export interface Robot {
  readonly robotId: string;
  /** Ensures the work topology, launches the browser and starts pulling assignments. */
  start(): Promise<void>;
  /**
   * Graceful stop: no new assignments, the steps in hand finish (for up to `graceMs`), held assignments are handed
   * back, contexts and the browser close. The NATS connection and the event store stay open: they are the caller's.
   */
  stop(options?: { graceMs?: number }): Promise<void>;
  /** Dependency checks for /readyz: NATS, the event store, the browser. */
  readinessChecks(): ReadinessCheck[];
  /** Sessions held right now. */
  sessionsHeld(): number;
  /** Browser contexts open right now (one per session being run). */
  openContexts(): number;
}

/** Wires a robot from its dependencies; reads no environment and starts nothing until `start()`. */
export function createRobot(deps: RobotDeps): Robot {
  const { nc, store, topology, robotId, logger: rootLogger, ackWaitMs } = deps;
  const logger = rootLogger.child({ robotId });
  const settings: WorkSettings = {
    ackWaitMs,
    stepMaxDeliver: deps.stepMaxDeliver ?? DEFAULT_WORK_SETTINGS.stepMaxDeliver,
  };
  const pullExpiresMs = deps.pullExpiresMs ?? 5_000;
  const heartbeatMs = Math.max(100, Math.floor(ackWaitMs / 3));
  const metrics = new RobotMetrics(deps.registry);
  const breakers = new Breakers(deps.breakerSettings ?? defaultBreakerSettings(), {
    onStateChange: (b) => metrics.breakerChanged(b),
    onForget: (b) => metrics.breakerForgotten(b),
  });
  for (const breaker of breakers.all()) metrics.breakerChanged(breaker);
  const egressDenied = new Counter({
    name: 'rpa_robot_egress_denied_total',
    help: 'Connections the egress proxy refused (navigations, redirects and subrequests), by rule',
    labelNames: ['rule'],
    registers: [deps.registry],
  });
  const egress = new EgressProxy({ ...deps.egress, logger, onDenied: (rule) => egressDenied.inc({ rule }) });
  const browser = new RobotBrowser({
    executablePath: deps.chromiumPath,
    launchBreaker: breakers.launch,
    logger,
    egress,
  });
  const handler = new SessionCommandHandler({
    store,
    logger,
    cacheSize: Math.max(100, deps.maxSessions * 4),
    // A session taken over is loaded from its snapshot: the events since, not the whole stream.
    snapshots: deps.snapshots ?? NatsSnapshotStore.opening(nc, topology, { logger }),
  });
  const now = deps.now ?? (() => new Date());
  const reporter = new Reporter({
    handler,
    store,
    breaker: breakers.eventStore,
    robotId,
    now,
    logger,
    retry: deps.retry ?? DEFAULT_RETRY,
  });
  const js = jetstream(nc);

  let puller: AssignmentPuller | null = null;
  let heartbeat: FleetHeartbeat | null = null;
  let stopped: Promise<void> | null = null;
  const browserMemory = deps.browserMemory ?? (() => browserMemoryBytes(process.pid));
  const memoryGuard = new BrowserMemoryGuard({
    limitBytes: deps.browserMemoryLimitBytes ?? DEFAULT_BROWSER_MEMORY_LIMIT_MB * 1_048_576,
    restart: () => browser.restart(),
    logger,
    registry: deps.registry,
  });

  return {
    robotId,

    async start() {
      const jsm = await ensureWorkTopology(nc, topology, settings);
      const artifacts = deps.artifacts ?? (await NatsArtifactStore.open(nc, topology));
      const restorePoints = deps.restorePoints ?? (await NatsRestorePointStore.open(nc, topology));
      const robotsBucket = await openRobotsBucket(nc, topology);
      await browser.start();
      const runnerDeps = {
        js,
        jsm,
        topology,
        settings,
        reporter,
        browser,
        breakers,
        artifacts,
        restorePoints,
        metrics,
        logger,
        pullExpiresMs,
        heartbeatMs,
        maxSessionDurationMs: deps.maxSessionDurationMs ?? 0,
        clock: () => Date.now(),
        nc,
        pausePollMs: deps.pausePollMs,
        secrets: deps.secrets,
      };
      puller = new AssignmentPuller({
        js,
        nc,
        topology,
        labels: deps.labels ?? {},
        ...(deps.mismatchDelayMs !== undefined ? { mismatchDelayMs: deps.mismatchDelayMs } : {}),
        reporter,
        maxSessions: deps.maxSessions,
        pullExpiresMs,
        heartbeatMs,
        retryDelayMs: deps.retryDelayMs ?? 5_000,
        logger,
        metrics,
        createRunner: (owner) => new SessionRunner(runnerDeps, owner),
        cleanUp: (sessionId, restorePointKey) =>
          cleanUpSession({ jsm, topology, restorePoints, logger }, sessionId, restorePointKey),
      });
      puller.start();
      const held = puller;
      heartbeat = new FleetHeartbeat({
        kv: robotsBucket,
        topology,
        robotId,
        intervalMs: deps.heartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS,
        logger,
        now,
        snapshot: async () => ({
          capacity: { maxSessions: deps.maxSessions, sessionsHeld: held.size },
          sessions: held.sessions(),
          browser: {
            connected: browser.connected,
            contexts: browser.contexts().length,
            memoryBytes: memoryGuard.observed(await browserMemory()),
          },
          breakers: breakers.all().map((b) => ({ name: b.name, state: HEARTBEAT_BREAKER_STATE[b.state] })),
          labels: deps.labels ?? {},
        }),
      });
      heartbeat.start();
      logger.info({ maxSessions: deps.maxSessions, ackWaitMs, labels: deps.labels ?? {} }, 'robot started');
    },

    stop(options = {}) {
      stopped ??= closeAll(
        [
          ['heartbeat (stopping)', () => heartbeat?.stopping()],
          ['sessions', () => puller?.stop(options.graceMs ?? 15_000)],
          ['browser restart', () => memoryGuard.idle()],
          ['browser', () => browser.close()],
          ['egress proxy', () => egress.close()],
          ['breakers', () => breakers.shutdown()],
          ['heartbeat', () => heartbeat?.stop()],
        ],
        logger,
      );
      return stopped;
    },

    readinessChecks() {
      return [
        {
          name: 'nats',
          check: async () => {
            if (nc.isClosed()) throw new Error('connection closed');
            await nc.flush();
          },
        },
        { name: 'event-store', check: () => store.ping() },
        {
          name: 'browser',
          check: async () => {
            if (!browser.connected) throw new Error('browser not connected');
          },
        },
      ];
    },

    sessionsHeld: () => puller?.size ?? 0,
    openContexts: () => browser.contexts().length,
  };
}
