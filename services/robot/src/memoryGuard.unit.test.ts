import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ConfigError, createLogger, parseEnv, Registry, silentLogger } from '@rpa/shared';
import { RobotEnv } from './config.js';
import { BrowserMemoryGuard, DEFAULT_BROWSER_MEMORY_LIMIT_MB } from './memoryGuard.js';

const MiB = 1_048_576;

function setup(limitBytes: number) {
  const registry = new Registry();
  const lines: string[] = [];
  let restarts = 0;
  let finish: () => void = () => undefined;
  const guard = new BrowserMemoryGuard({
    limitBytes,
    restart: () => {
      restarts++;
      return new Promise<void>((resolve) => {
        finish = resolve;
      });
    },
    logger: createLogger({
      name: 'robot',
      level: 'info',
      destination: new Writable({
        write(chunk: Buffer, _encoding, callback) {
          lines.push(chunk.toString('utf8'));
          callback();
        },
      }),
    }),
    registry,
  });
  return {
    guard,
    registry,
    lines,
    restarts: () => restarts,
    finish: () => finish(),
  };
}

describe('BrowserMemoryGuard', () => {
  it('restarts the browser once the memory passes the limit, one restart at a time', async () => {
    const { guard, registry, restarts, finish, lines } = setup(100 * MiB);
    expect(guard.observe(100 * MiB)).toBe(false);
    expect(guard.observe(null)).toBe(false);
    expect(guard.observe(101 * MiB)).toBe(true);
    // Still restarting: later heartbeats over the limit do not start another.
    expect(guard.observe(500 * MiB)).toBe(false);
    expect(restarts()).toBe(1);
    finish();
    await guard.idle();
    expect(guard.observed(200 * MiB)).toBe(200 * MiB);
    expect(restarts()).toBe(2);
    expect(await registry.metrics()).toContain('rpa_robot_browser_restarts_total{reason="memory"} 2');
    const warning = lines.map((l) => JSON.parse(l)).find((l) => l.msg.startsWith('browser memory over'));
    expect(warning).toMatchObject({ memoryBytes: 101 * MiB, limitBytes: 100 * MiB });
  });

  it('does nothing with a limit of 0 (off), and reports 0 restarts', async () => {
    const { guard, registry, restarts } = setup(0);
    expect(guard.observe(64 * 1024 * MiB)).toBe(false);
    expect(restarts()).toBe(0);
    expect(await registry.metrics()).toContain('rpa_robot_browser_restarts_total{reason="memory"} 0');
  });

  it('logs a failed restart and lets the next heartbeat try again', async () => {
    const registry = new Registry();
    let calls = 0;
    const guard = new BrowserMemoryGuard({
      limitBytes: 1,
      restart: async () => {
        calls++;
        throw new Error('launch breaker open');
      },
      logger: silentLogger,
      registry,
    });
    expect(guard.observe(2)).toBe(true);
    await guard.idle();
    expect(guard.observe(2)).toBe(true);
    await guard.idle();
    expect(calls).toBe(2);
  });
});

describe('BROWSER_MEMORY_LIMIT_MB', () => {
  it('defaults to 4096 MiB, takes 0 (off), and names itself when bad', () => {
    expect(parseEnv(RobotEnv, {}).BROWSER_MEMORY_LIMIT_MB).toBe(DEFAULT_BROWSER_MEMORY_LIMIT_MB);
    expect(DEFAULT_BROWSER_MEMORY_LIMIT_MB).toBe(4_096);
    expect(parseEnv(RobotEnv, { BROWSER_MEMORY_LIMIT_MB: '0' }).BROWSER_MEMORY_LIMIT_MB).toBe(0);
    expect(() => parseEnv(RobotEnv, { BROWSER_MEMORY_LIMIT_MB: '-1' })).toThrow(ConfigError);
    expect(() => parseEnv(RobotEnv, { BROWSER_MEMORY_LIMIT_MB: 'lots' })).toThrow(/BROWSER_MEMORY_LIMIT_MB/);
  });
});
