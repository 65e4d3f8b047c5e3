// `npm run bench:recovery`: how long a session is without a robot after its robot dies, for sessions of 10, 100
// and 1,000 steps on a site that loads a new document (an automatic restore point) every 50 steps. Robot A runs
// every step, then is killed (-9, with its Chromium) in the middle of a slow step; robot B takes over. Measured
// from the kill: SessionRecovered appended, and the interrupted step succeeded on B. Next to it, the floor of any
// browser rebuild: a new context from a storage state plus one page load, in-process with playwright-core.
// Prints figures; asserts nothing.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { z } from 'zod';
import { parseEnvOrExit, type SessionDocument, type StepSpec } from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor } from '@rpa/shared/testing';
import { RpaClient, type SessionEventView } from '../lib/client.js';
import { startStack, type ServiceProcess, type Stack } from '../lib/stack.js';
import { killTree } from '../../test/support/processes.js';
import { SITE, startRecoverySite, type RecoverySite } from '../../test/support/recoverySite.js';
import { percentile, round } from './stats.js';
import { CHROMIUM_ARGS, resolveChromiumPath } from '../../services/robot/src/browser.js';

const env = parseEnvOrExit(
  'bench',
  z.object({
    BENCH_SIZES: z
      .string()
      .regex(/^\d{1,4}(,\d{1,4})*$/, 'must be a comma-separated list of step counts')
      .default('10,100,1000'),
    ACK_WAIT_MS: z.coerce.number().int().min(1_000).max(60_000).default(2_000),
    CHROMIUM_PATH: z.string().min(1).optional(),
    /** Level of the services' logs (kept in files); info shows each claim and recovery with its timing. */
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug']).default('warn'),
  }),
);
const SIZES = env.BENCH_SIZES.split(',').map(Number);
const ACK_WAIT_MS = env.ACK_WAIT_MS;
const DOCUMENT_EVERY = 50;
/** Long enough to be sure the kill lands inside the step; the rerun on B is instant. */
const SLOW_MS = 5_000;
const FLOOR_SAMPLES = 15;
const BATCH = 250;
const DEADLINE = Date.now() + 15 * 60_000;

const remaining = (capMs: number) => Math.max(1, Math.min(capMs, DEADLINE - Date.now()));

/** Step k (1-based): a new document every DOCUMENT_EVERY steps, cheap page work in between. */
function benchStep(site: RecoverySite, k: number): StepSpec {
  if (k % DOCUMENT_EVERY === 1) return { action: 'navigate', url: `${site.url}/pad` };
  return k % 2 === 0
    ? { action: 'fill', selector: SITE.pad.field, value: `value ${k}` }
    : { action: 'click', selector: SITE.pad.tap };
}

interface Sample {
  steps: number;
  tail: number;
  toRecoveredMs: number;
  toNextStepMs: number;
  robotRecoveryMs: number;
  replayed: number;
}

const recordedMs = (event: SessionEventView | undefined) =>
  event ? Date.parse(event.recordedAt) : Number.NaN;

async function waitSession(
  client: RpaClient,
  sessionId: string,
  match: (doc: SessionDocument) => boolean,
  capMs: number,
  description: string,
  intervalMs = 250,
): Promise<SessionDocument> {
  return waitFor(
    async () => {
      const doc = await client.getSession(sessionId).catch(() => null);
      return doc && match(doc) ? doc : null;
    },
    { timeoutMs: remaining(capMs), intervalMs, description },
  );
}

/** Starts a robot, trying again (at most three times) when one fails to start on a busy machine. */
async function addRobot(stack: Stack): Promise<ServiceProcess> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await stack.addRobot();
    } catch (error) {
      if (attempt >= 3) throw error;
      const first = (error instanceof Error ? error.message : String(error)).split('\n')[0];
      process.stderr.write(`bench: a robot did not start (${first}); starting another\n`);
    }
  }
}

async function measure(stack: Stack, client: RpaClient, site: RecoverySite, size: number): Promise<Sample> {
  const live = stack.robots.filter((r) => r.running);
  if (live.length !== 1) throw new Error(`expected one robot before a run, found ${live.length}`);
  const robotA = live[0]!;
  const specs = Array.from({ length: size }, (_, i) => benchStep(site, i + 1));
  const { sessionId } = await client.openSession({ labels: { bench: 'recovery', steps: String(size) } });
  await client.submitSteps(sessionId, specs.slice(0, BATCH));
  await waitSession(client, sessionId, (d) => d.robotId === robotA.robotId, 60_000, 'the claim by A');
  // B starts only now, so that A holds the session; it is ready before the kill, so its start is not measured.
  const robotB = await addRobot(stack);
  for (let from = BATCH; from < size; from += BATCH) {
    await client.submitSteps(sessionId, specs.slice(from, from + BATCH));
  }
  const ran = await waitSession(
    client,
    sessionId,
    (d) => d.stepCounts.succeeded + d.stepCounts.failed >= size,
    60_000 + size * 500,
    `${size} steps on A`,
    500,
  );
  if (ran.stepCounts.failed > 0) throw new Error(`${ran.stepCounts.failed} of ${size} steps failed on A`);

  let slow: { stepId: string };
  let killedAt: number;

  site.setSlowMs(SLOW_MS);
  // From here on the feed, not polling: a few pushes of the document instead of fetching it over and over while
  // the take-over that is being measured runs.
  const feed = await client.feed();
  let running: SessionDocument;
  try {
    feed.subscribeSession(sessionId);
    const [submitted] = (
      await client.submitSteps(sessionId, [{ action: 'click', selector: SITE.pad.slow, timeoutMs: 60_000 }])
    ).steps;
    slow = submitted!;
    const statusOf = (d: SessionDocument) => d.steps.find((s) => s.stepId === slow.stepId)?.status;
    running = await feed.waitFor(
      sessionId,
      (d) => statusOf(d) === 'running',
      remaining(30_000),
      'slow step running',
    );
    killedAt = Date.now();
    killTree(robotA.pid);
    site.setSlowMs(0);
    await feed.waitFor(
      sessionId,
      (d) => statusOf(d) === 'succeeded',
      remaining(60_000),
      'slow step succeeded on B',
    );
  } finally {
    await feed.close();
  }
  const events = await client.events(sessionId);
  const recovered = events.find(
    (e) => e.type === 'SessionRecovered' && (e.data.epoch as number) > running.epoch,
  );
  const next = events.find(
    (e) => e.type === 'StepSucceeded' && e.data.stepId === slow.stepId && e.data.robotId === robotB.robotId,
  );
  if (!recovered) throw new Error('the slow step succeeded on B without a SessionRecovered');
  await client.closeSession(sessionId);
  await waitSession(client, sessionId, (d) => d.status === 'closed', 30_000, 'closed');
  const lastDocument = Math.floor((size - 1) / DOCUMENT_EVERY) * DOCUMENT_EVERY + 1;
  return {
    steps: size,
    tail: size - lastDocument,
    toRecoveredMs: recordedMs(recovered) - killedAt,
    toNextStepMs: recordedMs(next) - killedAt,
    robotRecoveryMs: Number(recovered.data.durationMs),
    replayed: Number(recovered.data.replayedSteps),
  };
}

/** A new context from a storage state and one page load: what any rebuild of a browser costs at least. */
async function playwrightFloor(site: RecoverySite): Promise<number[]> {
  const browser = await chromium.launch({
    executablePath: resolveChromiumPath(env.CHROMIUM_PATH),
    headless: true,
    args: CHROMIUM_ARGS,
  });
  try {
    const seed = await browser.newContext();
    const page = await seed.newPage();
    await page.goto(`${site.url}/login`);
    await page.fill(SITE.login.user, 'floor');
    await page.fill(SITE.login.password, 'not-a-real-password');
    await Promise.all([page.waitForURL('**/app'), page.click(SITE.login.submit)]);
    await page.click(SITE.app.save);
    const storageState = await seed.storageState();
    await seed.close();
    const samples: number[] = [];
    for (let i = 0; i < FLOOR_SAMPLES + 2 && Date.now() < DEADLINE; i++) {
      const started = performance.now();
      const context = await browser.newContext({ storageState });
      const restored = await context.newPage();
      await restored.goto(`${site.url}/app`, { waitUntil: 'load' });
      const elapsed = performance.now() - started;
      await context.close();
      if (i >= 2) samples.push(elapsed);
    }
    return samples;
  } finally {
    await browser.close();
  }
}

const logDir = mkdtempSync(join(tmpdir(), 'rpa-bench-recovery-'));
process.stderr.write(
  `bench: sessions of ${SIZES.join(', ')} steps (a new document every ${DOCUMENT_EVERY}), kill -9 mid-step, ` +
    `ACK_WAIT_MS=${ACK_WAIT_MS}; service logs in ${logDir}\n`,
);
const nats = await startNatsServer();
const site = await startRecoverySite({ slowMs: 0 });
let stack: Stack | null = null;
try {
  stack = await startStack({
    natsUrl: nats.url,
    prefix: uniquePrefix('br'),
    robots: 1,
    logDir,
    logLevel: env.LOG_LEVEL,
    egressAllow: [site.url],
    env: { ACK_WAIT_MS: String(ACK_WAIT_MS) },
  });
  const client = new RpaClient(stack.commandApiUrl, stack.queryApiUrl, stack.apiKey);
  // With the stack up and idle, as it is when a take-over starts.
  const floor = await playwrightFloor(site);
  const floorMs = percentile(floor, 50);
  const samples: Sample[] = [];
  for (const size of SIZES) {
    if (Date.now() >= DEADLINE) break;
    try {
      samples.push(await measure(stack, client, site, size));
    } catch (error) {
      process.stderr.write(
        `bench: ${size} steps: ${error instanceof Error ? error.message : String(error)}\n`,
      );
      samples.push({
        steps: size,
        tail: Number.NaN,
        toRecoveredMs: Number.NaN,
        toNextStepMs: Number.NaN,
        robotRecoveryMs: Number.NaN,
        replayed: Number.NaN,
      });
      // Leave exactly one live robot for the next size.
      const live = stack.robots.filter((r) => r.running);
      for (const extra of live.slice(1)) killTree(extra.pid);
      await waitFor(() => stack!.robots.filter((r) => r.running).length <= 1, { timeoutMs: 10_000 });
      if (live.length === 0) await addRobot(stack);
    }
  }

  console.log(
    `ACK_WAIT_MS=${ACK_WAIT_MS} (the take-over cannot start before the dead robot's ack wait ends)`,
  );
  console.log(
    '| steps | tail since restore point | replayed | kill → SessionRecovered ms | kill → interrupted step succeeded ms | robot recovery ms |',
  );
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const s of samples) {
    console.log(
      `| ${s.steps} | ${s.tail} | ${s.replayed} | ${round(s.toRecoveredMs, 0)} | ${round(s.toNextStepMs, 0)} | ${round(s.robotRecoveryMs, 0)} |`,
    );
  }
  console.log(
    `| floor: new context from storage state + goto (p50 of ${floor.length}) | | | ${round(floorMs, 1)} | | |`,
  );
  const bySize = (n: number) => samples.find((s) => s.steps === n)?.toRecoveredMs ?? Number.NaN;
  console.log(
    `RESULT bench=recovery ms_10=${round(bySize(10), 0)} ms_100=${round(bySize(100), 0)} ms_1000=${round(bySize(1000), 0)} floor_ms=${round(floorMs, 1)} ratio_1000_10=${round(bySize(1000) / bySize(10), 2)}`,
  );
} finally {
  await stack?.stop();
  await site.close();
  await nats.stop();
}
