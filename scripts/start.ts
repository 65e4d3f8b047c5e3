// `npm start`: brings the whole system up on this machine and runs a demo session against a bundled website.
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, createWriteStream, mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findNatsServerBinary, freePort, waitFor } from '@rpa/shared/testing';
import { z } from 'zod';
import { envFields, parseEnvOrExit, type SessionDocument, type StepDocument } from '@rpa/shared';
import { RpaClient } from './lib/client.js';
import { startStack, type Stack } from './lib/stack.js';
import { demoSteps, startDemoSite, type DemoSite } from './demo/demoSite.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dataDir = join(root, '.data');
const logDir = join(dataDir, 'logs');

const say = (line = '') => process.stdout.write(`${line}\n`);

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

async function preferredPort(port: number): Promise<number> {
  return (await portIsFree(port)) ? port : freePort();
}

/** NATS_URL: use that server instead of starting one. */
const env = parseEnvOrExit('start', z.object({ NATS_URL: envFields.natsUrlList().optional() }));

async function startNats(): Promise<{ url: string; child: ChildProcess | null }> {
  if (env.NATS_URL) return { url: env.NATS_URL, child: null };
  const binary = findNatsServerBinary();
  if (!binary)
    throw new Error('nats-server not found: install it (apt-get install nats-server) or set NATS_URL');
  const port = await preferredPort(4222);
  mkdirSync(join(dataDir, 'nats'), { recursive: true });
  mkdirSync(logDir, { recursive: true });
  const log = createWriteStream(join(logDir, 'nats-server.log'), { flags: 'a' });
  const child = spawn(binary, ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', join(dataDir, 'nats')], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  await waitFor(() => !(child.exitCode === null) || portIsFree(port).then((free) => !free), {
    timeoutMs: 15_000,
    description: 'nats-server to listen',
  });
  if (child.exitCode !== null) throw new Error(`nats-server exited; see ${join(logDir, 'nats-server.log')}`);
  return { url: `nats://127.0.0.1:${port}`, child };
}

function describeStep(step: StepDocument): string {
  const head = `  step ${String(step.seq).padStart(2)} ${step.action.padEnd(12)} ${step.status}`;
  if (step.status === 'failed') return `${head}: ${step.error?.code} ${step.error?.message ?? ''}`;
  if (step.status !== 'succeeded') return head;
  const took = step.durationMs === null ? '' : ` in ${Math.round(step.durationMs)} ms`;
  const out = step.output;
  switch (out?.kind) {
    case 'text':
      return `${head}${took}: "${out.text}"`;
    case 'table':
      return `${head}${took}: ${out.rows.length} rows [${out.headers.join(', ')}]`;
    case 'artifact':
      return `${head}${took}: ${out.artifactKey} (${out.bytes} bytes)`;
    case 'navigation':
      return `${head}${took}: ${out.url} "${out.title}"`;
    default:
      return `${head}${took}`;
  }
}

async function main(): Promise<void> {
  let nats: { url: string; child: ChildProcess | null } | null = null;
  let stack: Stack | null = null;
  let site: DemoSite | null = null;
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('\nStopping…');
    await stack?.stop().catch(() => {});
    await site?.close().catch(() => {});
    if (nats?.child && nats.child.exitCode === null) {
      const exited = new Promise((resolve) => nats!.child!.once('exit', resolve));
      nats.child.kill('SIGTERM');
      await exited;
    }
    say('Stopped.');
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));

  try {
    nats = await startNats();
    say(`NATS with JetStream at ${nats.url}${nats.child ? ` (data in ${join(dataDir, 'nats')})` : ''}`);
    // The demo site first: the robot's egress policy refuses loopback unless the site's origin is allow-listed.
    site = await startDemoSite();
    stack = await startStack({
      natsUrl: nats.url,
      prefix: 'rpa',
      ports: {
        commandApi: await preferredPort(8080),
        queryApi: await preferredPort(8081),
        projector: await preferredPort(9091),
      },
      logDir,
      robots: 1,
      egressAllow: [site.url],
    });
    say(
      `Services ready (logs in ${logDir}): command-api ${stack.commandApiUrl}, query-api ${stack.queryApiUrl}`,
    );
    say(`Demo website at ${site.url}\n`);

    // The APIs accept the key generated for this run; it goes to a file only its owner can read, not to the screen.
    const keyFile = join(dataDir, 'api-key');
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(keyFile, `${stack.apiKey}\n`, { mode: 0o600 });
    chmodSync(keyFile, 0o600);
    say(`API key for tenant ${stack.tenant} (every scope, valid until Ctrl-C) in ${keyFile}\n`);
    const client = new RpaClient(stack.commandApiUrl, stack.queryApiUrl, stack.apiKey);
    const feed = await client.feed();
    const { sessionId } = await client.openSession({ labels: { demo: 'orders' } });
    feed.subscribeSession(sessionId);
    say(`Demo session ${sessionId}:`);
    const printed = new Map<string, string>();
    feed.onDocument((doc: SessionDocument) => {
      for (const step of doc.steps) {
        const line = describeStep(step);
        if (printed.get(step.stepId) !== line) {
          printed.set(step.stepId, line);
          say(line);
        }
      }
    });
    const steps = demoSteps(site.url);
    await client.submitSteps(sessionId, steps);
    const done = await feed.waitFor(
      sessionId,
      (d) =>
        d.steps.length === steps.length &&
        d.steps.every((s) => s.status === 'succeeded' || s.status === 'failed'),
      120_000,
      'every demo step to finish',
    );
    await client.closeSession(sessionId);
    await feed.waitFor(sessionId, (d) => d.status === 'closed', 30_000, 'the session to close');
    const failed = done.steps.filter((s) => s.status === 'failed').length;
    const shot = done.steps.find((s) => s.output?.kind === 'artifact')?.output;
    say(`\n${done.steps.length - failed} of ${done.steps.length} steps succeeded; the session is closed.\n`);
    const auth = `-H "Authorization: Bearer $(cat ${keyFile})"`;
    say('Look at it:');
    say(`  curl ${auth} ${stack.queryApiUrl}/v1/sessions/${sessionId}`);
    say(`  curl ${auth} ${stack.queryApiUrl}/v1/sessions/${sessionId}/events`);
    if (shot?.kind === 'artifact')
      say(`  curl ${auth} -o screenshot.png ${stack.queryApiUrl}/v1/artifacts/${shot.artifactKey}`);
    say(`  curl ${auth} ${stack.queryApiUrl}/v1/sessions`);
    say(
      `  live feed: ${stack.queryApiUrl.replace(/^http/, 'ws')}/v1/feed  (with the same header; send {"subscribe":{"all":true}})`,
    );
    say(`  OpenAPI: ${stack.commandApiUrl}/openapi.json and ${stack.queryApiUrl}/openapi.json`);
    say(`  metrics: ${stack.commandApiUrl}/metrics`);
    say(
      `\nEverything keeps running; open more sessions with POST ${stack.commandApiUrl}/v1/sessions (same header). Ctrl-C stops it all.`,
    );
    await feed.close();
    // Watch the services: if one dies, say so and stop the rest.
    for (const service of stack.services) {
      void service.exited.then(({ code, signal }) => {
        if (stopping) return;
        say(`\n${service.name} exited (${code ?? signal}); last output:\n${service.recentOutput(20)}`);
        void stopAll(1);
      });
    }
  } catch (error) {
    say(`\nStart failed: ${(error as Error).message}`);
    await stopAll(1);
  }
}

void main();
