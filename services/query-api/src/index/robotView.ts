import { z } from 'zod';
import { RobotHeartbeat } from '@rpa/shared';

/**
 * A robot's status as the fleet view shows it. `online`: beating and running. `stopping`: beating while it
 * finishes its work. `stopped`: its last beat said it stopped gracefully. `offline`: no beat within its ttl, or
 * its entry is gone, without a goodbye.
 */
export const RobotStatus = z.enum(['online', 'offline', 'stopping', 'stopped']);
export type RobotStatus = z.infer<typeof RobotStatus>;

/** One robot as a tenant sees it: its last heartbeat, a status that accounts for time, its own sessions only. */
export const RobotView = RobotHeartbeat.omit({ v: true, status: true }).extend({
  status: RobotStatus,
  /** The status the robot itself reported in its last beat. */
  reportedStatus: RobotHeartbeat.shape.status,
  /** When the last beat was sent (its `at`). */
  lastSeenAt: z.string(),
});
export type RobotView = z.infer<typeof RobotView>;

/** A heartbeat with what the index knows about it beyond its content. */
export interface KnownRobot {
  beat: RobotHeartbeat;
  /** Epoch ms when its entry was deleted or vanished from the bucket; null while it is there. */
  goneAt: number | null;
}

/** Epoch ms until which a beat vouches for its robot. */
export function beatExpiresAt(beat: RobotHeartbeat): number {
  return Date.parse(beat.at) + beat.ttlMs;
}

/** The status of a robot at `now` (epoch ms). */
export function robotStatus(robot: KnownRobot, now: number): RobotStatus {
  const { beat } = robot;
  // A goodbye stays a goodbye: the robot handed its work back, it did not die.
  if (beat.status === 'stopped') return 'stopped';
  if (robot.goneAt !== null || !(beatExpiresAt(beat) > now)) return 'offline';
  switch (beat.status) {
    case 'running':
      return 'online';
    case 'stopping':
      return 'stopping';
    default: {
      const unhandled: never = beat.status;
      throw new TypeError(`unhandled robot status ${String(unhandled)}`);
    }
  }
}

/** The view of a robot for `tenantId` at `now`: sessions of other tenants are left out. */
export function robotView(robot: KnownRobot, tenantId: string, now: number): RobotView {
  const { v: _v, status, ...beat } = robot.beat;
  return {
    ...beat,
    sessions: beat.sessions.filter((s) => s.tenantId === tenantId),
    status: robotStatus(robot, now),
    reportedStatus: status,
    lastSeenAt: beat.at,
  };
}
