import { describe, expect, it } from 'vitest';
import { ConfigError, parseEnv } from '@rpa/shared';
import { defaultRobotId, RobotEnv } from './config.js';

describe('robot configuration', () => {
  it('applies the documented defaults', () => {
    const env = parseEnv(RobotEnv, {});
    expect(env).toMatchObject({
      NATS_PREFIX: 'rpa',
      EVENT_STORE: 'jetstream',
      MAX_SESSIONS: 4,
      ACK_WAIT_MS: 30_000,
      HEALTH_PORT: 9092,
      HEARTBEAT_INTERVAL_MS: 5_000,
    });
    expect(env.ROBOT_ID).toMatch(/^robot-[A-Za-z0-9_.-]+-[0-9a-f]{8}$/);
    expect(env.CHROMIUM_PATH).toBeUndefined();
  });

  it('names the variable that holds a bad value', () => {
    expect(() => parseEnv(RobotEnv, { MAX_SESSIONS: 'many' })).toThrow(ConfigError);
    expect(() => parseEnv(RobotEnv, { MAX_SESSIONS: 'many' })).toThrow(/MAX_SESSIONS/);
    expect(() => parseEnv(RobotEnv, { ACK_WAIT_MS: '10' })).toThrow(/ACK_WAIT_MS/);
    expect(() => parseEnv(RobotEnv, { ROBOT_ID: 'has spaces' })).toThrow(/ROBOT_ID/);
    expect(() => parseEnv(RobotEnv, { HEARTBEAT_INTERVAL_MS: '99' })).toThrow(/HEARTBEAT_INTERVAL_MS/);
    expect(parseEnv(RobotEnv, { HEARTBEAT_INTERVAL_MS: '100' }).HEARTBEAT_INTERVAL_MS).toBe(100);
  });

  it('derives a robot id safe for names and logs from any host name', () => {
    expect(defaultRobotId('pod 7/α')).toMatch(/^robot-pod-7--?-[0-9a-f]{8}$/);
  });
});
