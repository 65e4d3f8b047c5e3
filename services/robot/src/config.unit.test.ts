import { describe, expect, it } from 'vitest';
import { ConfigError, parseEnv } from '@rpa/shared';
import { defaultRobotId, maxSessionsPerRobot, RobotEnv } from './config.js';

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

describe('robot capacity and labels', () => {
  it('reads MAX_SESSIONS_PER_ROBOT, falling back to the deprecated MAX_SESSIONS', () => {
    expect(maxSessionsPerRobot(parseEnv(RobotEnv, {}))).toBe(4);
    expect(maxSessionsPerRobot(parseEnv(RobotEnv, { MAX_SESSIONS: '2' }))).toBe(2);
    expect(maxSessionsPerRobot(parseEnv(RobotEnv, { MAX_SESSIONS: '2', MAX_SESSIONS_PER_ROBOT: '7' }))).toBe(
      7,
    );
    expect(() => parseEnv(RobotEnv, { MAX_SESSIONS_PER_ROBOT: '0' })).toThrow(/MAX_SESSIONS_PER_ROBOT/);
  });

  it('parses ROBOT_LABELS and names the variable on a bad entry', () => {
    expect(parseEnv(RobotEnv, {}).ROBOT_LABELS).toEqual({});
    expect(parseEnv(RobotEnv, { ROBOT_LABELS: 'region=eu, proxy=none' }).ROBOT_LABELS).toEqual({
      region: 'eu',
      proxy: 'none',
    });
    expect(() => parseEnv(RobotEnv, { ROBOT_LABELS: 'region' })).toThrow(/ROBOT_LABELS/);
    expect(() => parseEnv(RobotEnv, { ROBOT_LABELS: 'bad name=x' })).toThrow(/ROBOT_LABELS/);
  });
});
