import { Kvm, type KV } from '@nats-io/kv';
import { RobotHeartbeat, type Logger, type NatsConnection, type Topology } from '@rpa/shared';
import { sleep } from './sleep.js';

/** What a beat says about the robot right now; the rest (ids, times, status) the heartbeat adds. */
export type RobotSnapshot = Pick<RobotHeartbeat, 'capacity' | 'sessions' | 'browser' | 'breakers' | 'labels'>;

export interface FleetHeartbeatDeps {
  kv: KV;
  topology: Topology;
  robotId: string;
  /** Time between beats; a robot counts as offline after three missed ones. */
  intervalMs: number;
  logger: Logger;
  now: () => Date;
  snapshot(): Promise<RobotSnapshot>;
}

/** Opens the robots bucket, creating it with the topology's options when absent. */
export function openRobotsBucket(nc: NatsConnection, topology: Topology): Promise<KV> {
  return new Kvm(nc).create(topology.robotsBucket, topology.robotsBucketOptions());
}

/**
 * Puts this robot's heartbeat (status, sessions, capacity, browser, breakers) into the robots bucket every interval,
 * so that dashboards see the fleet. One beat at a time; a failed beat is logged and the next one tried on time.
 */
export class FleetHeartbeat {
  private status: RobotHeartbeat['status'] = 'running';
  private readonly startedAt: string;
  private readonly stopController = new AbortController();
  private loop: Promise<void> | null = null;
  /** The beat in flight: beats are put one after another, so the last one put is the last one sent. */
  private chain: Promise<void> = Promise.resolve();
  private failures = 0;

  constructor(private readonly deps: FleetHeartbeatDeps) {
    this.startedAt = deps.now().toISOString();
  }

  /** Beats now and then every interval until stopped. */
  start(): void {
    this.loop ??= this.beatLoop();
  }

  /** Says at once that the robot is stopping; later beats keep saying so. */
  async stopping(): Promise<void> {
    this.status = 'stopping';
    await this.beat();
  }

  /** Ends the beats with a last one saying the robot has stopped. Safe to call twice. */
  async stop(): Promise<void> {
    this.stopController.abort();
    await this.loop;
    if (this.status === 'stopped') return;
    this.status = 'stopped';
    await this.beat();
  }

  private async beatLoop(): Promise<void> {
    const signal = this.stopController.signal;
    while (!signal.aborted) {
      await this.beat();
      await sleep(this.deps.intervalMs, signal);
    }
  }

  /** Puts one beat; never rejects. */
  beat(): Promise<void> {
    this.chain = this.chain.then(() => this.put());
    return this.chain;
  }

  private async put(): Promise<void> {
    const { kv, topology, robotId, intervalMs, logger, now } = this.deps;
    try {
      const beat = RobotHeartbeat.parse({
        v: 1,
        robotId,
        status: this.status,
        startedAt: this.startedAt,
        at: now().toISOString(),
        ttlMs: 3 * intervalMs,
        ...(await this.deps.snapshot()),
      });
      await kv.put(topology.robotKey(robotId), JSON.stringify(beat));
      this.failures = 0;
    } catch (error) {
      this.failures += 1;
      // Once per outage, then every hundredth: a NATS outage would otherwise log every beat.
      if (this.failures === 1 || this.failures % 100 === 0)
        logger.warn({ err: error, failures: this.failures }, 'putting the fleet heartbeat failed');
    }
  }
}
