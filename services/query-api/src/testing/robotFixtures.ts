import type { KV } from '@nats-io/kv';
import { RobotHeartbeat, type Topology } from '@rpa/shared';

/** A valid heartbeat for tests, sent at `at`; `overrides` replace top-level fields. */
export function heartbeat(
  overrides: Partial<RobotHeartbeat> & { robotId: string; at: string },
): RobotHeartbeat {
  return RobotHeartbeat.parse({
    v: 1,
    status: 'running',
    startedAt: '2030-01-01T00:00:00.000Z',
    ttlMs: 15_000,
    capacity: { maxSessions: 4, sessionsHeld: 0 },
    sessions: [],
    browser: { connected: true, contexts: 0, memoryBytes: null },
    breakers: [],
    ...overrides,
  });
}

/** Writes a heartbeat where its robot would: under its robot id in the robots bucket. */
export async function putHeartbeat(kv: KV, topology: Topology, beat: RobotHeartbeat): Promise<number> {
  return kv.put(topology.robotKey(beat.robotId), JSON.stringify(beat));
}
