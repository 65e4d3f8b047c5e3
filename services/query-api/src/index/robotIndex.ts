import type { KV, KvWatchEntry } from '@nats-io/kv';
import { RobotHeartbeat } from '@rpa/shared';
import { WatchedIndex, type WatchedIndexOptions } from './bucketWatch.js';
import {
  beatExpiresAt,
  robotStatus,
  robotView,
  type KnownRobot,
  type RobotStatus,
  type RobotView,
} from './robotView.js';

/** How long a robot that went away is still listed (as offline): a day. */
export const DEFAULT_ROBOT_RETENTION_MS = 24 * 3_600_000;
/** Most robots the index remembers; beyond it the one heard from longest ago is forgotten first. */
export const DEFAULT_MAX_ROBOTS = 10_000;

export interface RobotIndexOptions extends WatchedIndexOptions {
  /** The robots bucket (topology.robotsBucket): one heartbeat per robot, under its robot id. */
  kv: KV;
  /** Decides which beats are still fresh. */
  clock?: () => Date;
  /** How long a robot whose beats stopped, or whose entry is gone, is still listed as offline. */
  retentionMs?: number;
  maxRobots?: number;
}

/**
 * The fleet as robots report it: an in-memory index of the heartbeats in the robots KV bucket, kept current by a
 * KV watch. Statuses are computed when asked, with the injected clock, because an entry that expires leaves no
 * trace a watch could see. A robot whose entry expired or was deleted stays listed as offline for the retention
 * period, so a dashboard can show what went missing. A value that fails the RobotHeartbeat schema is logged and
 * skipped.
 */
export class RobotIndex extends WatchedIndex {
  private readonly clock: () => Date;
  private readonly retentionMs: number;
  private readonly maxRobots: number;
  private readonly robots = new Map<string, KnownRobot>();

  constructor(options: RobotIndexOptions) {
    super('robots', options);
    this.clock = options.clock ?? (() => new Date());
    this.retentionMs = options.retentionMs ?? DEFAULT_ROBOT_RETENTION_MS;
    this.maxRobots = options.maxRobots ?? DEFAULT_MAX_ROBOTS;
  }

  protected onPut(entry: KvWatchEntry): void {
    this.apply(entry);
  }

  protected onRemove(key: string): void {
    this.markGone(key);
  }

  protected onLoaded(): void {
    this.logger.info({ robots: this.robots.size }, 'robots index loaded');
  }

  /** Every robot of the fleet, by robot id, as `tenantId` may see it. */
  list(tenantId: string): RobotView[] {
    const now = this.prune();
    return [...this.robots.values()]
      .sort((a, b) => (a.beat.robotId < b.beat.robotId ? -1 : a.beat.robotId > b.beat.robotId ? 1 : 0))
      .map((robot) => robotView(robot, tenantId, now));
  }

  /** One robot as `tenantId` may see it. */
  get(tenantId: string, robotId: string): RobotView | undefined {
    const now = this.prune();
    const robot = this.robots.get(robotId);
    return robot ? robotView(robot, tenantId, now) : undefined;
  }

  /** Counters for metrics. */
  stats(): { robots: number; byStatus: Record<RobotStatus, number>; skipped: number; watches: number } {
    const now = this.prune();
    const byStatus: Record<RobotStatus, number> = { online: 0, offline: 0, stopping: 0, stopped: 0 };
    for (const robot of this.robots.values()) byStatus[robotStatus(robot, now)]++;
    return { robots: this.robots.size, byStatus, skipped: this.skipped, watches: this.watches };
  }

  private apply(entry: KvWatchEntry): void {
    const beat = this.parse(entry);
    if (!beat) return;
    if (!this.robots.has(beat.robotId)) this.makeRoom();
    this.robots.set(beat.robotId, { beat, goneAt: null });
  }

  private markGone(key: string): void {
    const robot = this.robots.get(key);
    if (robot && robot.goneAt === null) robot.goneAt = this.clock().getTime();
  }

  private parse(entry: KvWatchEntry): RobotHeartbeat | null {
    const parsed = this.parseEntry(RobotHeartbeat, entry, 'robot heartbeat');
    if (!parsed) return null;
    // Freshness is computed from `at`: a beat whose time cannot be read could never be judged.
    if (!Number.isFinite(Date.parse(parsed.at))) {
      this.skip(entry, [{ path: 'at', message: 'not a date-time' }], 'robot heartbeat');
      return null;
    }
    // One key per robot: a beat filed under another robot's key would shadow that robot.
    if (entry.key !== parsed.robotId) {
      this.skip(
        entry,
        [{ path: '(key)', message: 'key does not match the robotId inside' }],
        'robot heartbeat',
      );
      return null;
    }
    return parsed;
  }

  /** Forgets robots not heard of for longer than the retention period; returns the time it judged by. */
  private prune(): number {
    const now = this.clock().getTime();
    for (const [robotId, robot] of this.robots) {
      if (lastHeardOf(robot) + this.retentionMs <= now) this.robots.delete(robotId);
    }
    return now;
  }

  /** Keeps the index bounded: a robot new to it displaces the one heard from longest ago. */
  private makeRoom(): void {
    while (this.robots.size >= this.maxRobots) {
      let oldest: string | undefined;
      let oldestAt = Infinity;
      for (const [robotId, robot] of this.robots) {
        const at = lastHeardOf(robot);
        if (at < oldestAt) {
          oldest = robotId;
          oldestAt = at;
        }
      }
      if (oldest === undefined) return;
      this.robots.delete(oldest);
      this.logger.warn({ robotId: oldest, maxRobots: this.maxRobots }, 'robots index full: forgot a robot');
    }
  }
}

/** The last moment a robot was vouched for: its beat's expiry, or when its entry went, if that came first. */
function lastHeardOf(robot: KnownRobot): number {
  return Math.min(beatExpiresAt(robot.beat), robot.goneAt ?? Infinity);
}
