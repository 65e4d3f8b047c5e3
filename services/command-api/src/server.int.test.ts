import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  freePort,
  startNatsServer,
  testApiKey,
  uniquePrefix,
  waitFor,
  type NatsServerHandle,
} from '@rpa/shared/testing';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const entry = 'services/command-api/src/server.ts';

interface Run {
  child: ChildProcess;
  stderr: () => string;
  exited: Promise<number | null>;
}

/**
 * Starts the server entry with exactly the given environment (plus PATH): through `npx tsx` as an operator would,
 * or as a plain node process with the tsx loader when a signal must reach the server itself.
 */
function startServer(env: Record<string, string>, how: 'npx' | 'node' = 'npx'): Run {
  const [command, args] =
    how === 'npx' ? ['npx', ['tsx', entry]] : [process.execPath, ['--import', 'tsx', entry]];
  const child = spawn(command, args, {
    cwd: repoRoot,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { child, stderr: () => stderr, exited };
}

describe('command-api server entry', () => {
  let nats: NatsServerHandle;
  beforeAll(async () => {
    nats = await startNatsServer();
  });
  afterAll(async () => {
    await nats?.stop();
  });

  it('refuses a bad environment: exit code 1 and a message naming the variable', async () => {
    const run = startServer({ PORT: 'abc', LOG_LEVEL: 'silent' });
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toMatch(/PORT: /);
  });

  it('refuses to start without credentials unless AUTH_MODE=none says so, and says how', async () => {
    const run = startServer({ LOG_LEVEL: 'silent', NATS_URL: 'nats://127.0.0.1:1' });
    expect(await run.exited).toBe(1);
    expect(run.stderr()).toMatch(/no credentials configured: set API_KEYS or API_KEYS_FILE/);
    expect(run.stderr()).toMatch(/AUTH_MODE=none/);

    const contradictory = startServer({
      LOG_LEVEL: 'silent',
      AUTH_MODE: 'none',
      API_KEYS: JSON.stringify([testApiKey('k', 'acme', ['sessions:write']).entry]),
    });
    expect(await contradictory.exited).toBe(1);
    expect(contradictory.stderr()).toMatch(/AUTH_MODE=none: contradicts/);

    const malformed = startServer({
      LOG_LEVEL: 'silent',
      API_KEYS: '[{"id":"k","tenant":"acme","scopes":[],"hash":"x"}]',
    });
    expect(await malformed.exited).toBe(1);
    expect(malformed.stderr()).toMatch(/API_KEYS\[0\.scopes\]/);
    expect(malformed.stderr()).toMatch(/API_KEYS\[0\.hash\]/);
  });

  it('starts, answers /readyz and commands, and stops cleanly on SIGTERM', async () => {
    const port = await freePort();
    const { key, entry } = testApiKey('server-test', 'acme', ['sessions:write']);
    const run = startServer(
      {
        PORT: String(port),
        HOST: '127.0.0.1',
        NATS_URL: nats.url,
        NATS_PREFIX: uniquePrefix(),
        LOG_LEVEL: 'warn',
        API_KEYS: JSON.stringify([entry]),
      },
      'node',
    );
    try {
      const base = `http://127.0.0.1:${port}`;
      await waitFor(
        async () => {
          if (run.child.exitCode !== null) throw new Error(`server exited: ${run.stderr()}`);
          return (await fetch(`${base}/readyz`)).status === 200;
        },
        { timeoutMs: 20_000, description: 'the command API to be ready' },
      );
      const body = JSON.stringify({ labels: { via: 'process' } });
      const anonymous = await fetch(`${base}/v1/sessions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
      expect(anonymous.status).toBe(401);
      const opened = await fetch(`${base}/v1/sessions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body,
      });
      expect(opened.status).toBe(201);
      run.child.kill('SIGTERM');
      expect(await run.exited).toBe(0);
    } finally {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
    }
  });
});
