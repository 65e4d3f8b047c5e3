import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import {
  closeAll,
  createMetricsRegistry,
  DEFAULT_WORK_SETTINGS,
  ensureWorkTopology,
  SESSION_STREAM_PREFIX,
  SessionCommandHandler,
  type EventStore,
  type Logger,
  type NatsConnection,
  type ReadinessCheck,
  type Registry,
  type Topology,
  type WorkSettings,
} from '@rpa/shared';
import { KvCheckpointStore, type CheckpointStore } from './checkpoints.js';
import { StepDispatcher } from './dispatcher.js';
import { MaxDeliveriesReconciler } from './maxDeliveries.js';
import { ProjectorMetrics } from './metrics.js';
import { SessionReadModel } from './projections/sessionReadModel.js';
import { Reconciler, type ReconcilerSettings } from './reconciler.js';
import {
  runCheckpointedSubscription,
  type CheckpointedSubscription,
  type RetryPolicy,
} from './subscription.js';
import { NO_TENANT_LIMITS, TenantGate, type TenantLimits } from './tenantGate.js';

/** Names of the projector's subscriptions, which also name their checkpoints. */
export const SUBSCRIPTIONS = { readModel: 'session-read-model', dispatcher: 'step-dispatcher' } as const;

export interface ProjectorSettings {
  /** Replicas of the KV buckets the projector creates (3 in production). */
  kvReplicas: number;
  checkpointEveryEvents: number;
  checkpointEveryMs: number;
  retry: RetryPolicy;
  work: WorkSettings;
  /** Per-tenant caps on active sessions (none by default). */
  tenantLimits: TenantLimits;
  /** The reconciler of lost work; `afterMs` defaults to ack wait x step max deliver + 30 s. */
  reconcile: { intervalMs: number; afterMs?: number };
}

export const DEFAULT_PROJECTOR_SETTINGS: ProjectorSettings = {
  kvReplicas: 1,
  checkpointEveryEvents: 500,
  checkpointEveryMs: 1_000,
  retry: { initialDelayMs: 100, maxDelayMs: 10_000 },
  work: DEFAULT_WORK_SETTINGS,
  tenantLimits: NO_TENANT_LIMITS,
  reconcile: { intervalMs: 30_000 },
};

/** The reconciler's settings with the default delay filled in. */
export function reconcilerSettings(settings: ProjectorSettings): ReconcilerSettings {
  const { ackWaitMs, stepMaxDeliver } = settings.work;
  return {
    intervalMs: settings.reconcile.intervalMs,
    afterMs: settings.reconcile.afterMs ?? ackWaitMs * stepMaxDeliver + 30_000,
  };
}

export interface ProjectorDeps {
  nc: NatsConnection;
  store: EventStore;
  topology: Topology;
  logger: Logger;
  /** Where the projector's metrics go; a fresh registry when absent. */
  registry?: Registry;
  settings?: Partial<ProjectorSettings>;
}

export interface Projector {
  readonly registry: Registry;
  /** Readiness: NATS answers, the event store answers, the subscriptions run and are not stuck on a failure. */
  readonly checks: ReadinessCheck[];
  /** The running subscriptions, once started. */
  readonly subscriptions: { readModel?: CheckpointedSubscription; dispatcher?: CheckpointedSubscription };
  /** The reconciler of lost work, once started (tests run a scan with `runOnce`). */
  readonly reconciler: Reconciler | null;
  /** The per-tenant gate, once started. */
  readonly gate: TenantGate | null;
  /** Ensures the work stream and KV buckets, then starts both subscriptions from their checkpoints. */
  start(): Promise<void>;
  /** Stops both subscriptions, flushing the read model and saving both checkpoints. Safe to call twice. */
  close(): Promise<void>;
}

/** Opens (creating when missing) the sessions and checkpoints KV buckets. */
export async function openProjectorBuckets(
  nc: NatsConnection,
  topology: Topology,
  replicas = 1,
): Promise<{ sessions: KV; checkpoints: KV }> {
  const kvm = new Kvm(nc);
  const sessions = await kvm.create(topology.sessionsBucket, {
    // Readers want the current document; the event stream is the history.
    history: 1,
    replicas,
    description: 'Session read models, one document per session, keyed <tenantId>.<sessionId>.',
  });
  const checkpoints = await kvm.create(topology.checkpointsBucket, {
    // A few past positions help to see how a subscription moved; only the last one is read.
    history: 5,
    replicas,
    description: 'Positions of checkpointed event subscriptions.',
  });
  return { sessions, checkpoints };
}

/** Opens (creating when missing) the dispatcher's per-tenant gate bucket. */
export function openTenantSlotsBucket(nc: NatsConnection, topology: Topology, replicas = 1): Promise<KV> {
  return new Kvm(nc).create(topology.tenantSlotsBucket, {
    history: 1,
    replicas,
    description: 'Active and waiting sessions of each tenant with a concurrency cap, keyed by tenant.',
  });
}

/**
 * Builds the projector: the session read model and the step dispatcher, each a checkpointed subscription over
 * all session events with its own checkpoint. Reads no environment; the entry file wires it.
 */
export function createProjector(deps: ProjectorDeps): Projector {
  const settings: ProjectorSettings = { ...DEFAULT_PROJECTOR_SETTINGS, ...deps.settings };
  const registry = deps.registry ?? createMetricsRegistry('projector');
  const metrics = new ProjectorMetrics(registry);
  const logger = deps.logger;
  const subscriptions: Projector['subscriptions'] = {};
  let started = false;
  let closing: Promise<void> | null = null;
  let reconciler: Reconciler | null = null;
  let advisories: MaxDeliveriesReconciler | null = null;
  let gate: TenantGate | null = null;

  const common = (checkpoints: CheckpointStore, name: string) => ({
    store: deps.store,
    checkpoints,
    name,
    streamPrefix: SESSION_STREAM_PREFIX,
    logger,
    checkpointEveryEvents: settings.checkpointEveryEvents,
    checkpointEveryMs: settings.checkpointEveryMs,
    retry: settings.retry,
    hooks: metrics.subscriptionHooks(name),
  });

  const checks: ReadinessCheck[] = [
    {
      name: 'nats',
      check: async () => {
        if (deps.nc.isClosed()) throw new Error('connection closed');
        await deps.nc.flush();
      },
    },
    { name: 'event-store', check: () => deps.store.ping() },
    {
      name: 'subscriptions',
      check: async () => {
        if (!started) throw new Error('not started');
        for (const s of [subscriptions.readModel, subscriptions.dispatcher]) {
          if (s?.failing) throw new Error(`${s.name} is retrying a failure at position ${s.position}`);
        }
      },
    },
  ];

  return {
    registry,
    checks,
    subscriptions,
    get reconciler() {
      return reconciler;
    },
    get gate() {
      return gate;
    },
    async start() {
      if (started || closing) return;
      await ensureWorkTopology(deps.nc, deps.topology, settings.work);
      const jsm = await jetstreamManager(deps.nc);
      const { defaultMax, perTenant } = settings.tenantLimits;
      if (defaultMax > 0 || Object.values(perTenant).some((n) => n > 0)) {
        const slots = await openTenantSlotsBucket(deps.nc, deps.topology, settings.kvReplicas);
        gate = new TenantGate(slots, settings.tenantLimits, logger.child({ component: 'tenant-gate' }));
      }
      const buckets = await openProjectorBuckets(deps.nc, deps.topology, settings.kvReplicas);
      const checkpoints = new KvCheckpointStore(buckets.checkpoints);
      const maxPayload = deps.nc.info?.max_payload ?? 1024 * 1024;

      const readModel = new SessionReadModel({
        kv: buckets.sessions,
        topology: deps.topology,
        logger: logger.child({ component: 'session-read-model' }),
        // Room for the message's headers next to the document.
        maxDocumentBytes: maxPayload - 4 * 1024,
        hooks: metrics.readModelHooks(),
        onStored: (doc) => reconciler?.observe(doc),
      });
      const dispatcher = new StepDispatcher({
        nc: deps.nc,
        js: jetstream(deps.nc),
        topology: deps.topology,
        logger: logger.child({ component: 'step-dispatcher' }),
        onPublished: (kind, duplicate) => metrics.recordPublish(kind, duplicate),
        ...(gate ? { gate } : {}),
      });

      subscriptions.readModel = await runCheckpointedSubscription({
        ...common(checkpoints, SUBSCRIPTIONS.readModel),
        handle: (event) => readModel.handle(event),
        flush: () => readModel.flush(),
      });
      metrics.track(subscriptions.readModel);
      subscriptions.dispatcher = await runCheckpointedSubscription({
        ...common(checkpoints, SUBSCRIPTIONS.dispatcher),
        handle: (event) => dispatcher.handle(event),
      }).catch(async (error: unknown) => {
        await subscriptions.readModel?.close();
        throw error;
      });
      metrics.track(subscriptions.dispatcher);
      const dispatching = subscriptions.dispatcher;
      reconciler = new Reconciler(
        {
          sessions: buckets.sessions,
          jsm,
          store: deps.store,
          topology: deps.topology,
          dispatcher,
          ...(gate ? { gate } : {}),
          dispatcherPosition: () => dispatching.position,
          logger: logger.child({ component: 'reconciler' }),
          onReconciled: (kind) => metrics.recordReconciled(kind),
        },
        reconcilerSettings(settings),
      );
      reconciler.start();
      advisories = new MaxDeliveriesReconciler({
        nc: deps.nc,
        jsm,
        topology: deps.topology,
        handler: new SessionCommandHandler({ store: deps.store, logger }),
        logger: logger.child({ component: 'max-deliveries' }),
        onOutcome: (outcome) => metrics.recordMaxDeliveries(outcome),
      });
      advisories.start();
      started = true;
    },
    close() {
      closing ??= closeAll(
        [
          ['max-deliveries advisories', () => advisories?.close()],
          ['reconciler', () => reconciler?.close()],
          ['dispatcher', () => subscriptions.dispatcher?.close()],
          ['read model', () => subscriptions.readModel?.close()],
        ],
        logger,
      ).finally(() => {
        for (const s of [subscriptions.readModel, subscriptions.dispatcher]) if (s) metrics.untrack(s);
      });
      return closing;
    },
  };
}
