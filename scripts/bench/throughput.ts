// `npm run bench:throughput`: how many steps per second the whole system carries when many sessions run at once
// on two robot processes (each session opened through POST /v1/sessions:batch, navigating to the demo site once and
// then running cheap extractText steps, watched on the query API's feed until every step succeeded), next to
// BullMQ's add → process throughput for as many no-op jobs on a local redis-server with a worker as wide as the
// robots' capacity. Prints figures; asserts nothing. Stops everything it started, also on failure or a signal.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { z } from 'zod';
import { parseEnvOrExit, type SessionDocument } from '@rpa/shared';
import { freePort, startNatsServer, uniquePrefix, waitFor } from '@rpa/shared/testing';
import { RpaClient } from '../lib/client.js';
import { startStack } from '../lib/stack.js';
import { startDemoSite } from '../demo/demoSite.js';
import { round } from './stats.js';

const env = parseEnvOrExit(
  'bench',
  z.object({
    BENCH_SESSIONS: z.coerce.number().int().min(1).max(1_000).default(200),
    /** Cheap steps per session after its navigate. */
    BENCH_STEPS_PER_SESSION: z.coerce.number().int().min(1).max(50).default(5),
    /** Sessions each of the two robots holds at once. */
    BENCH_MAX_SESSIONS: z.coerce.number().int().min(1).max(256).default(16),
    BENCH_TIMEOUT_MS: z.coerce
      .number()
      .int()
      .min(10_000)
      .max(3_600_000)
      .default(10 * 60_000),
    REDIS_SERVER_BIN: z.string().min(1).optional(),
  }),
);
const ROBOTS = 2;
const BATCH_ITEMS = 100;
const STEPS_PER_SESSION = 1 + env.BENCH_STEPS_PER_SESSION;
const TOTAL_STEPS = env.BENCH_SESSIONS * STEPS_PER_SESSION;
const CAPACITY = ROBOTS * env.BENCH_MAX_SESSIONS;
const DEADLINE = Date.now() + env.BENCH_TIMEOUT_MS;

const remaining = () => Math.max(1_000, DEADLINE - Date.now());

/** What this bench reads of a POST /v1/sessions:batch answer. */
const BatchAnswer = z.object({
  items: z.array(
    z.object({
      index: z.number().int(),
      status: z.number().int(),
      sessionId: z.string().optional(),
      error: z.object({ code: z.string(), message: z.string() }).optional(),
    }),
  ),
});

type Cleanup = [string, () => Promise<unknown>];
const cleanups: Cleanup[] = [];
let cleaning: Promise<void> | null = null;

/** Stops what was started, newest first, going on when one part fails. Runs once. */
function cleanUp(): Promise<void> {
  cleaning ??= (async () => {
    for (const [name, stop] of cleanups.splice(0).reverse()) {
      try {
        await stop();
      } catch (error) {
        process.stderr.write(`bench: stopping ${name} failed: ${String(error)}\n`);
      }
    }
  })();
  return cleaning;
}

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`bench: ${signal}: stopping\n`);
    void cleanUp().finally(() => process.exit(130));
  });
}

function findRedisServer(): string | null {
  const candidates = [
    env.REDIS_SERVER_BIN,
    ...(process.env.PATH ?? '').split(delimiter).map((dir) => (dir ? join(dir, 'redis-server') : undefined)),
    '/usr/bin/redis-server',
  ];
  return candidates.find((c): c is string => !!c && existsSync(c)) ?? null;
}

/** The redis-server binary, installed from Debian's packages when missing and running as root. */
async function ensureRedisServer(): Promise<string> {
  const found = findRedisServer();
  if (found) return found;
  const install = 'apt-get install -y redis-server';
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  if (!isRoot) {
    process.stderr.write(
      `bench: redis-server not found. Install with:\n  sudo apt-get update && sudo ${install}\n`,
    );
    process.exit(1);
  }
  process.stderr.write(`bench: redis-server not found: ${install}\n`);
  const child = spawn('apt-get', ['install', '-y', 'redis-server'], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  const installed = findRedisServer();
  if (code !== 0 || !installed) {
    process.stderr.write(`bench: could not install redis-server (exit ${code}); run: ${install}\n`);
    process.exit(1);
  }
  return installed;
}

/** A throwaway redis-server on 127.0.0.1 with persistence off, so that disk speed does not enter the figure. */
async function startRedis(bin: string): Promise<{ port: number; stop: () => Promise<void> }> {
  const port = await freePort();
  const child: ChildProcess = spawn(
    bin,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--daemonize', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-4_000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  try {
    await waitFor(
      () => {
        if (child.exitCode !== null) throw new Error(`redis-server exited:\n${output}`);
        return output.includes('Ready to accept connections');
      },
      { timeoutMs: 15_000, intervalMs: 50, description: 'redis-server to accept connections' },
    );
  } catch (error) {
    await stop();
    throw error;
  }
  return { port, stop };
}

interface PipelineFigures {
  wallMs: number;
  submitMs: number;
  done: number;
  failed: number;
}

async function submitBatch(commandApiUrl: string, apiKey: string, items: unknown[]): Promise<string[]> {
  const res = await fetch(`${commandApiUrl}/v1/sessions:batch`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ items }),
    signal: AbortSignal.timeout(remaining()),
  });
  const body: unknown = await res.json();
  if (res.status !== 200) throw new Error(`sessions:batch answered ${res.status}: ${JSON.stringify(body)}`);
  const answer = BatchAnswer.parse(body);
  const refused = answer.items.filter((i) => i.status !== 201 || !i.sessionId);
  if (refused.length > 0)
    throw new Error(`sessions:batch refused ${refused.length} items, first: ${JSON.stringify(refused[0])}`);
  return answer.items.map((i) => i.sessionId!);
}

/** Runs every session at once through the stack and times first submit → last step succeeded on the feed. */
async function pipelineThroughput(natsUrl: string, siteUrl: string): Promise<PipelineFigures> {
  const stack = await startStack({
    natsUrl,
    prefix: uniquePrefix('t'),
    robots: ROBOTS,
    logLevel: 'warn',
    egressAllow: [siteUrl],
    env: { MAX_SESSIONS_PER_ROBOT: String(env.BENCH_MAX_SESSIONS) },
  });
  cleanups.push(['stack', () => stack.stop()]);
  const client = new RpaClient(stack.commandApiUrl, stack.queryApiUrl, stack.apiKey);
  const feed = await client.feed();
  cleanups.push(['feed', () => feed.close()]);
  feed.subscribeAll();
  await waitFor(() => feed.frames.some((f) => (f as { type?: string }).type === 'subscribed'), {
    timeoutMs: 10_000,
    intervalMs: 10,
    description: 'the feed subscription',
  });

  // The stack's prefix is this run's alone, so every document on the feed is one of these sessions.
  const done = new Set<string>();
  const failed = new Map<string, string>();
  const closing: Array<Promise<unknown>> = [];
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const check = (doc: SessionDocument) => {
    if (done.has(doc.sessionId) || failed.has(doc.sessionId)) return;
    const bad = doc.steps.find((s) => s.status === 'failed');
    if (bad || doc.status === 'needs_attention' || doc.status === 'cancelled') {
      failed.set(doc.sessionId, bad ? `step ${bad.seq} ${bad.error?.code ?? 'failed'}` : doc.status);
    } else if (doc.steps.length === STEPS_PER_SESSION && doc.steps.every((s) => s.status === 'succeeded')) {
      done.add(doc.sessionId);
      // A finished session gives its robot slot back, so that the sessions still waiting can start.
      closing.push(client.closeSession(doc.sessionId).catch(() => undefined));
    } else return;
    if (done.size + failed.size >= env.BENCH_SESSIONS) finish();
  };
  const unlisten = feed.onDocument(check);

  const steps = [
    { action: 'navigate', url: `${siteUrl}/` },
    ...Array.from({ length: env.BENCH_STEPS_PER_SESSION }, () => ({ action: 'extractText', selector: 'h1' })),
  ];
  const started = performance.now();
  const chunks: Array<Promise<string[]>> = [];
  for (let first = 0; first < env.BENCH_SESSIONS; first += BATCH_ITEMS) {
    const count = Math.min(BATCH_ITEMS, env.BENCH_SESSIONS - first);
    const items = Array.from({ length: count }, (_, i) => ({
      labels: { bench: 'throughput' },
      clientRef: `s-${first + i}`,
      steps,
    }));
    chunks.push(submitBatch(stack.commandApiUrl, stack.apiKey, items));
  }
  const sessionIds = (await Promise.all(chunks)).flat();
  const submitMs = performance.now() - started;

  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>(
    (resolve) => (timer = setTimeout(() => resolve('timeout'), remaining())),
  );
  const outcome = await Promise.race([finished.then(() => 'finished' as const), timedOut]);
  const wallMs = performance.now() - started;
  clearTimeout(timer);
  unlisten();
  await Promise.all(closing);
  if (outcome === 'timeout') {
    const waiting = sessionIds.filter((id) => !done.has(id) && !failed.has(id));
    throw new Error(
      `pipeline: timed out with ${done.size} sessions done, ${failed.size} failed, ${waiting.length} waiting`,
    );
  }
  if (failed.size > 0) {
    const [first] = failed.entries();
    process.stderr.write(`bench: ${failed.size} sessions failed, first: ${first?.join(': ')}\n`);
  }
  return { wallMs, submitMs, done: done.size, failed: failed.size };
}

interface QueueFigures {
  wallMs: number;
  addMs: number;
  completed: number;
}

/** Adds `jobs` no-op jobs with addBulk and times first add → last job completed by a worker. */
async function bullmqThroughput(port: number, jobs: number): Promise<QueueFigures> {
  // BullMQ loads ioredis lazily only under require(); under ESM it wants ready-made clients. Workers block on
  // their connection, hence no per-request retry limit.
  const client = () => {
    const redis = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: null });
    cleanups.push(['redis client', () => redis.quit()]);
    return redis;
  };
  const name = `bench-${uniquePrefix('q')}`;
  const queue = new Queue(name, { connection: client() });
  cleanups.push(['bullmq queue', () => queue.close()]);
  let completed = 0;
  let finish: () => void = () => undefined;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  const worker = new Worker(name, async () => undefined, { connection: client(), concurrency: CAPACITY });
  cleanups.push(['bullmq worker', () => worker.close()]);
  worker.on('completed', () => {
    completed += 1;
    if (completed >= jobs) finish();
  });
  worker.on('error', (error) => process.stderr.write(`bench: bullmq worker: ${error.message}\n`));
  await Promise.all([queue.waitUntilReady(), worker.waitUntilReady()]);

  const started = performance.now();
  for (let first = 0; first < jobs; first += BATCH_ITEMS) {
    const count = Math.min(BATCH_ITEMS, jobs - first);
    await queue.addBulk(
      Array.from({ length: count }, (_, i) => ({
        name: 'step',
        data: { n: first + i },
        opts: { removeOnComplete: true, removeOnFail: true },
      })),
    );
  }
  const addMs = performance.now() - started;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<'timeout'>(
    (resolve) => (timer = setTimeout(() => resolve('timeout'), remaining())),
  );
  const outcome = await Promise.race([finished.then(() => 'finished' as const), timedOut]);
  const wallMs = performance.now() - started;
  clearTimeout(timer);
  if (outcome === 'timeout') throw new Error(`bullmq: timed out with ${completed} of ${jobs} jobs completed`);
  return { wallMs, addMs, completed };
}

let exitCode = 0;
try {
  const redisBin = await ensureRedisServer();
  process.stderr.write(
    `bench: ${env.BENCH_SESSIONS} sessions × ${STEPS_PER_SESSION} steps (navigate + ${env.BENCH_STEPS_PER_SESSION} extractText) on ${ROBOTS} robots × ${env.BENCH_MAX_SESSIONS} sessions, then ${TOTAL_STEPS} BullMQ no-op jobs with concurrency ${CAPACITY}\n`,
  );
  const nats = await startNatsServer();
  cleanups.push(['nats-server', () => nats.stop()]);
  const site = await startDemoSite();
  cleanups.push(['demo site', () => site.close()]);
  const pipeline = await pipelineThroughput(nats.url, site.url);
  const redis = await startRedis(redisBin);
  cleanups.push(['redis-server', () => redis.stop()]);
  const queue = await bullmqThroughput(redis.port, TOTAL_STEPS);

  const stepsDone = pipeline.done * STEPS_PER_SESSION;
  const stepsPerS = stepsDone / (pipeline.wallMs / 1_000);
  const jobsPerS = queue.completed / (queue.wallMs / 1_000);
  console.log('| path | units | submit ms | wall ms | per s |');
  console.log('| --- | --- | --- | --- | --- |');
  console.log(
    `| ${pipeline.done} sessions (${pipeline.failed} failed), batch submit → every step succeeded on feed | ${stepsDone} steps | ${round(pipeline.submitMs)} | ${round(pipeline.wallMs)} | ${round(stepsPerS)} |`,
  );
  console.log(
    `| BullMQ addBulk → every job completed (concurrency ${CAPACITY}) | ${queue.completed} jobs | ${round(queue.addMs)} | ${round(queue.wallMs)} | ${round(jobsPerS)} |`,
  );
  console.log(
    `RESULT bench=pipeline-throughput steps_per_s=${round(stepsPerS)} bullmq_jobs_per_s=${round(jobsPerS)} ratio=${round(stepsPerS / jobsPerS, 4)}`,
  );
} catch (error) {
  process.stderr.write(
    `bench: failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  exitCode = 1;
} finally {
  await cleanUp();
}
process.exit(exitCode);
