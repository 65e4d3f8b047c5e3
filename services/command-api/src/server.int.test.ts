import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';

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

  it('starts, answers /readyz and commands, and stops cleanly on SIGTERM', async () => {
    const port = await freePort();
    const run = startServer(
      {
        PORT: String(port),
        HOST: '127.0.0.1',
        NATS_URL: nats.url,
        NATS_PREFIX: uniquePrefix(),
        LOG_LEVEL: 'warn',
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
      const opened = await fetch(`${base}/v1/sessions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ labels: { via: 'process' } }),
      });
      expect(opened.status).toBe(201);
      run.child.kill('SIGTERM');
      expect(await run.exited).toBe(0);
    } finally {
      if (run.child.exitCode === null) run.child.kill('SIGKILL');
    }
  });
});
