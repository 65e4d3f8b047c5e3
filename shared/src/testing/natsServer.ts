import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type * as Testcontainers from 'testcontainers';
import { waitFor } from './waitFor.js';

export interface NatsServerHandle {
  url: string;
  /** True when the server came from NATS_URL and is not ours to stop or restart. */
  external: boolean;
  /** Stops the server and removes its store. */
  stop(): Promise<void>;
  /** Kills the server with SIGKILL and starts it again on the same port and store (a broker crash). */
  crashAndRestart?(): Promise<void>;
  /** Stops the server gracefully (SIGTERM: it writes its state out) and starts it again on the same port and store. */
  restart?(): Promise<void>;
}

/** Finds the nats-server binary: NATS_SERVER_BIN, then PATH, then Debian's location. */
export function findNatsServerBinary(env: NodeJS.ProcessEnv = process.env): string | null {
  const candidates = [
    env.NATS_SERVER_BIN,
    ...(env.PATH ?? '').split(delimiter).map((dir) => join(dir, 'nats-server')),
    '/usr/sbin/nats-server',
    '/usr/bin/nats-server',
    '/usr/local/bin/nats-server',
  ];
  return candidates.find((c): c is string => !!c && existsSync(c)) ?? null;
}

/** A free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = tcpConnect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * A nats-server with JetStream for tests: NATS_URL when set; else the local binary on a free 127.0.0.1 port with a
 * temporary store; else a container through testcontainers where Docker exists.
 */
export async function startNatsServer(env: NodeJS.ProcessEnv = process.env): Promise<NatsServerHandle> {
  if (env.NATS_URL) return { url: env.NATS_URL, external: true, stop: async () => {} };
  const binary = findNatsServerBinary(env);
  if (binary) return startBinary(binary);
  return startContainer();
}

async function startBinary(binary: string): Promise<NatsServerHandle> {
  const port = await freePort();
  const storeDir = await mkdtemp(join(tmpdir(), 'rpa-nats-'));
  let child: ChildProcess;
  const launch = async () => {
    child = spawn(binary, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir], {
      stdio: 'ignore',
    });
    await waitFor(() => portAccepts(port), { timeoutMs: 15_000, description: `nats-server on port ${port}` });
  };
  await launch();
  const stopChild = async (signal: NodeJS.Signals) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
  };
  return {
    url: `nats://127.0.0.1:${port}`,
    external: false,
    async stop() {
      await stopChild('SIGTERM');
      await rm(storeDir, { recursive: true, force: true });
    },
    async crashAndRestart() {
      await stopChild('SIGKILL');
      await launch();
    },
    async restart() {
      await stopChild('SIGTERM');
      await launch();
    },
  };
}

async function startContainer(): Promise<NatsServerHandle> {
  let testcontainers: typeof Testcontainers;
  try {
    testcontainers = await import('testcontainers');
  } catch (error) {
    throw new Error('no nats-server binary found and testcontainers is not installed', { cause: error });
  }
  const container = await new testcontainers.GenericContainer('nats:2.12.3')
    .withCommand(['-js'])
    .withExposedPorts(4222)
    .start();
  return {
    url: `nats://${container.getHost()}:${container.getMappedPort(4222)}`,
    external: false,
    async stop() {
      await container.stop();
    },
  };
}

/** A NATS name prefix unique to one test, so tests sharing a server never see each other's streams. */
export function uniquePrefix(base = 't'): string {
  return `${base}${randomBytes(5).toString('hex')}`;
}
