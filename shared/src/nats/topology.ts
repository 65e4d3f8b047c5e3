import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type ConsumerConfig,
  type JetStreamManager,
  type StreamConfig,
} from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { SessionPriority } from '../events/sessionEvents.js';

/** Priorities in the order robots serve them. */
export const PRIORITIES: readonly SessionPriority[] = ['high', 'normal', 'low'];

const NS = 1_000_000;
const SECOND = 1_000 * NS;

/** Settings of the work stream's consumers that the operator may tune. */
export interface WorkSettings {
  /** How long a robot may hold an assignment or a step without signalling progress before it is redelivered. */
  ackWaitMs: number;
  /** Deliveries of one step message before JetStream gives up on it (explicit: the server default is unlimited). */
  stepMaxDeliver: number;
}

/**
 * Deliveries of a step message beyond its retry policy's attempts: redeliveries after a robot crash or a lost ack
 * (which run nothing once the result is in the stream). A step message that runs out is reconciled from the
 * max-deliveries advisory.
 */
export const STEP_DELIVERY_SLACK = 5;

export const DEFAULT_WORK_SETTINGS: WorkSettings = { ackWaitMs: 30_000, stepMaxDeliver: 15 };

/**
 * Every NATS name this system uses, derived from one prefix so that several installations can share a server.
 * Stream, consumer, subject, bucket and object-store definitions live here and nowhere else.
 */
export class Topology {
  readonly eventsStream: string;
  readonly workStream: string;
  readonly sessionsBucket: string;
  readonly checkpointsBucket: string;
  readonly robotsBucket: string;
  readonly artifactsBucket: string;
  readonly restorePointsBucket: string;
  readonly snapshotsBucket: string;
  /** The dispatcher's per-tenant concurrency gate: active and waiting sessions of each capped tenant. */
  readonly tenantSlotsBucket: string;

  constructor(readonly prefix: string = 'rpa') {
    if (!/^[a-z][a-z0-9_]{0,30}$/.test(prefix))
      throw new RangeError(`invalid NATS prefix ${JSON.stringify(prefix)}`);
    const P = prefix.toUpperCase();
    this.eventsStream = `${P}_EVENTS`;
    this.workStream = `${P}_WORK`;
    this.sessionsBucket = `${prefix}_sessions`;
    this.checkpointsBucket = `${prefix}_checkpoints`;
    this.robotsBucket = `${prefix}_robots`;
    this.artifactsBucket = `${prefix}_artifacts`;
    // Apart from artifacts on purpose: restore points hold cookies, and nothing serves this bucket over HTTP.
    this.restorePointsBucket = `${prefix}_restore_points`;
    this.snapshotsBucket = `${prefix}_snapshots`;
    this.tenantSlotsBucket = `${prefix}_tenant_slots`;
  }

  /** Subject of one event-store stream (one per session). */
  eventSubject(streamId: string): string {
    return `${this.prefix}.events.${streamId}`;
  }
  get eventsWildcard(): string {
    return `${this.prefix}.events.>`;
  }
  /** Subject where normal-priority session assignments wait for a robot with free capacity. */
  get assignSubject(): string {
    return this.assignSubjectFor('normal');
  }
  /** Subject of the session assignments of one priority; robots serve high before normal before low. */
  assignSubjectFor(priority: SessionPriority): string {
    return `${this.prefix}.work.assign.${priority}`;
  }
  get assignWildcard(): string {
    return `${this.prefix}.work.assign.>`;
  }
  /**
   * Core-NATS subject (outside the work stream) on which a robot that hands an assignment back says so, so that
   * idle robots pull it at once: a handed-back message is in flight, not pending, and no publish announces it.
   */
  assignWakeSubject(priority: SessionPriority): string {
    return `${this.prefix}.wake.assign.${priority}`;
  }
  get assignWakeWildcard(): string {
    return `${this.prefix}.wake.assign.*`;
  }
  /** Durable consumer of the normal-priority assignments. */
  get assignmentsConsumer(): string {
    return this.assignmentsConsumerFor('normal');
  }
  assignmentsConsumerFor(priority: SessionPriority): string {
    return `assignments-${priority}`;
  }
  /**
   * Core-NATS subject of a session's control notices (paused, resumed, cancelled, a step retried): its owner
   * listens here so that it need not poll the event store. Best effort: the owner re-reads the stream anyway.
   */
  controlSubject(sessionId: string): string {
    return `${this.prefix}.control.${sessionId}`;
  }
  /** JetStream's advisory subject for step messages that ran out of deliveries, for any session. */
  get stepMaxDeliveriesAdvisory(): string {
    return `$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.${this.workStream}.*`;
  }
  /** Subject of one session's step and control messages, consumed in order by its owner. */
  stepsSubject(sessionId: string): string {
    return `${this.prefix}.work.steps.${sessionId}`;
  }
  /** Durable consumer of one session's steps; it outlives robots so that a new owner resumes where the last stopped. */
  stepsConsumer(sessionId: string): string {
    return `steps-${sessionId}`;
  }
  /** Read-model key of a session document: tenant first, so that a tenant's documents share a prefix. */
  sessionKey(tenantId: string, sessionId: string): string {
    return `${tenantId}.${sessionId}`;
  }
  /** Object-store name of a step's screenshot. */
  artifactKey(sessionId: string, stepId: string, extension = 'png'): string {
    return `${sessionId}.${stepId}.${extension}`;
  }

  /** Object name of a restore point: the session, the step it follows and the epoch that took it. */
  restorePointKey(sessionId: string, afterStepSeq: number, epoch: number): string {
    return `${sessionId}.${afterStepSeq}.${epoch}`;
  }
  /** Key of a robot's heartbeat in the robots bucket. */
  robotKey(robotId: string): string {
    return robotId;
  }

  /**
   * KV options of the robots bucket, for whichever of its writers and readers creates it first: the last beat
   * per robot only, and entries of robots that stopped beating age out after an hour (silently on 2.9.10, so
   * readers judge freshness from the beat's own `at` and `ttlMs`).
   */
  robotsBucketOptions(): { history: number; ttl: number } {
    return { history: 1, ttl: 3_600_000 };
  }

  /**
   * KV options of the session-snapshots bucket (folded state by stream id): only the newest snapshot per stream,
   * and snapshots of sessions idle for a week age out (such a session folds from its first event when next loaded).
   */
  snapshotsBucketOptions(): { history: number; ttl: number } {
    return { history: 1, ttl: 7 * 24 * 3_600_000 };
  }

  eventsStreamConfig(): Partial<StreamConfig> {
    return {
      name: this.eventsStream,
      subjects: [this.eventsWildcard],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      // Events are immutable: nothing may delete or purge them.
      deny_delete: true,
      deny_purge: true,
      allow_direct: true,
      duplicate_window: 120 * SECOND,
    };
  }

  workStreamConfig(): Partial<StreamConfig> {
    return {
      name: this.workStream,
      subjects: [`${this.prefix}.work.>`],
      retention: RetentionPolicy.Workqueue,
      storage: StorageType.File,
      discard: DiscardPolicy.Old,
      // Republished work after a projector restart is dropped by message id within this window.
      duplicate_window: 10 * 60 * SECOND,
    };
  }

  assignmentsConsumerConfig(
    settings: WorkSettings = DEFAULT_WORK_SETTINGS,
    priority: SessionPriority = 'normal',
  ): Partial<ConsumerConfig> {
    return {
      durable_name: this.assignmentsConsumerFor(priority),
      filter_subject: this.assignSubjectFor(priority),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: settings.ackWaitMs * NS,
      // An assignment must keep coming back until some robot takes it: unlimited, and said so explicitly.
      max_deliver: -1,
      max_ack_pending: 10_000,
    };
  }

  stepsConsumerConfig(
    sessionId: string,
    settings: WorkSettings = DEFAULT_WORK_SETTINGS,
  ): Partial<ConsumerConfig> {
    return {
      durable_name: this.stepsConsumer(sessionId),
      filter_subject: this.stepsSubject(sessionId),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      ack_wait: settings.ackWaitMs * NS,
      max_deliver: settings.stepMaxDeliver,
      // One step in flight per session: delivery order is execution order.
      max_ack_pending: 1,
      // A session nobody consumes for a day is abandoned; its consumer goes away with it.
      inactive_threshold: 24 * 3_600 * SECOND,
    };
  }
}

/** Creates or updates a stream to the given config. */
export async function ensureStream(
  jsm: JetStreamManager,
  config: Partial<StreamConfig> & { name: string },
): Promise<void> {
  try {
    const info = await jsm.streams.info(config.name);
    const { retention: _r, storage: _s, ...mutable } = config;
    await jsm.streams.update(config.name, { ...info.config, ...mutable });
  } catch (error) {
    if (isNotFound(error)) {
      await jsm.streams.add(config);
      return;
    }
    throw error;
  }
}

/** Creates (or updates) every stream the work path needs. KV buckets and object stores are opened by their users. */
export async function ensureWorkTopology(
  nc: NatsConnection,
  topology: Topology,
  settings: WorkSettings = DEFAULT_WORK_SETTINGS,
): Promise<JetStreamManager> {
  const jsm = await jetstreamManager(nc);
  await ensureStream(jsm, topology.workStreamConfig() as StreamConfig);
  for (const priority of PRIORITIES) {
    const config = topology.assignmentsConsumerConfig(settings, priority);
    await jsm.consumers.add(topology.workStream, config).catch(async (error: unknown) => {
      if (!isAlreadyExists(error)) throw error;
      await jsm.consumers.update(topology.workStream, topology.assignmentsConsumerFor(priority), config);
    });
  }
  return jsm;
}

function apiCode(error: unknown): number | undefined {
  const e = error as { api_error?: { err_code?: number }; code?: number | string };
  return e?.api_error?.err_code;
}

/** True for JetStream's "stream not found" / "consumer not found" answers. */
export function isNotFound(error: unknown): boolean {
  const code = apiCode(error);
  return code === 10059 || code === 10014 || /not found/i.test(String((error as Error)?.message));
}

function isAlreadyExists(error: unknown): boolean {
  const code = apiCode(error);
  return (
    code === 10148 || code === 10013 || /already (in use|exists)/i.test(String((error as Error)?.message))
  );
}
