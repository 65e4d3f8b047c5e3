import { describe, expect, it } from 'vitest';
import { heartbeat } from '../testing/robotFixtures.js';
import { robotStatus, robotView, type KnownRobot } from './robotView.js';

const T0 = Date.parse('2030-01-01T00:00:00.000Z');
const known = (overrides: Parameters<typeof heartbeat>[0], goneAt: number | null = null): KnownRobot => ({
  beat: heartbeat(overrides),
  goneAt,
});

describe('robotStatus', () => {
  const at = new Date(T0).toISOString();

  it.each([
    ['running', null, T0 + 9_999, 'online'],
    ['running', null, T0 + 10_000, 'offline'],
    ['running', T0 + 1, T0 + 2, 'offline'],
    ['stopping', null, T0 + 9_999, 'stopping'],
    ['stopping', null, T0 + 10_000, 'offline'],
    ['stopping', T0 + 1, T0 + 2, 'offline'],
    ['stopped', null, T0 + 1, 'stopped'],
    ['stopped', null, T0 + 86_400_000, 'stopped'],
    ['stopped', T0 + 1, T0 + 2, 'stopped'],
  ] as const)('a %s beat, gone at %s, judged at %s, is %s', (status, goneAt, now, expected) => {
    expect(robotStatus(known({ robotId: 'r1', at, status, ttlMs: 10_000 }, goneAt), now)).toBe(expected);
  });

  it('trusts a beat from a clock ahead of ours until its ttl ends', () => {
    const ahead = known({ robotId: 'r1', at: new Date(T0 + 5_000).toISOString(), ttlMs: 10_000 });
    expect(robotStatus(ahead, T0 + 14_999)).toBe('online');
    expect(robotStatus(ahead, T0 + 15_000)).toBe('offline');
  });
});

describe('robotView', () => {
  it('keeps the beat, computes the status, and shows the tenant only its sessions', () => {
    const robot = known({
      robotId: 'r1',
      at: new Date(T0).toISOString(),
      sessions: [
        { sessionId: 's1', tenantId: 'acme', epoch: 1 },
        { sessionId: 's2', tenantId: 'globex', epoch: 3 },
      ],
      breakers: [{ name: 'https://example.com', state: 'open' }],
    });
    const view = robotView(robot, 'acme', T0);
    expect(view).toEqual({
      robotId: 'r1',
      status: 'online',
      reportedStatus: 'running',
      lastSeenAt: '2030-01-01T00:00:00.000Z',
      at: '2030-01-01T00:00:00.000Z',
      startedAt: robot.beat.startedAt,
      ttlMs: 15_000,
      capacity: robot.beat.capacity,
      sessions: [{ sessionId: 's1', tenantId: 'acme', epoch: 1 }],
      browser: robot.beat.browser,
      breakers: [{ name: 'https://example.com', state: 'open' }],
    });
    expect(robotView(robot, 'initech', T0).sessions).toEqual([]);
  });
});
