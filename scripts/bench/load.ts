// `npx tsx scripts/bench/load.ts`: what a robot that takes a session over pays to learn the session, for sessions of
// 10, 100 and 1,000 steps built through the command handler on the JetStream event store (a claim, a start and a
// success per step, a restore point every 50 steps), with snapshots written as the services write them. Each figure
// is taken in a fresh store and handler on a new connection, as in a robot that has just started: the whole-stream
// read, decoding and folding it, the handler's load without and with snapshots, and reading the specs of the tail
// to replay (the steps after the newest restore point). Prints figures (median of BENCH_SAMPLES); asserts nothing.
import { z } from 'zod';
import {
  connectNats,
  decodeSessionEvent,
  encodeSnapshot,
  foldRecorded,
  initialState,
  JetStreamEventStore,
  NatsSnapshotStore,
  silentLogger,
  parseEnvOrExit,
  SessionCommandHandler,
  sessionStreamId,
  Topology,
  type NatsConnection,
  type RecordedSessionEvent,
  type SnapshotStore,
  type StepSpec,
} from '@rpa/shared';
import { startNatsServer, uniquePrefix } from '@rpa/shared/testing';
import { Breaker } from '../../services/robot/src/breakers.js';
import { stepsToRead } from '../../services/robot/src/recovery.js';
import { Reporter } from '../../services/robot/src/reporter.js';
import { FixtureClock, fixtureUuid } from '../fixtures/fixtureClock.js';
import { SessionDriver } from '../fixtures/sessionDriver.js';
import { percentile, round } from './stats.js';

const env = parseEnvOrExit(
  'bench',
  z.object({
    BENCH_SIZES: z
      .string()
      .regex(/^\d{1,4}(,\d{1,4})*$/, 'must be a comma-separated list of step counts')
      .default('10,100,1000'),
    BENCH_SAMPLES: z.coerce.number().int().min(1).max(50).default(7),
    /** Events of other sessions appended between two steps of the measured ones: a busy installation's stream. */
    BENCH_NOISE_PER_STEP: z.coerce.number().int().min(0).max(50).default(0),
  }),
);
const SIZES = env.BENCH_SIZES.split(',').map(Number);
const DOCUMENT_EVERY = 50;
const SUBMIT_BATCH = 250;

function benchStep(k: number): StepSpec {
  if (k % DOCUMENT_EVERY === 1) return { action: 'navigate', url: `https://example.test/pad/${k}` };
  return k % 2 === 0
    ? { action: 'fill', selector: '#field', value: `value ${k}` }
    : { action: 'click', selector: '#tap' };
}

/** Builds one session of `size` steps, as the command API and a robot would, and returns its id. */
async function buildSession(
  store: JetStreamEventStore,
  snapshots: SnapshotStore,
  size: number,
  noise: (n: number) => Promise<void>,
): Promise<string> {
  const clock = new FixtureClock('2026-03-02T09:00:00.000Z');
  const sessionId = fixtureUuid(`bench-load/${size}/${Date.now()}`, clock.epochMs);
  const handler = new SessionCommandHandler({ store, snapshots });
  const driver = new SessionDriver({
    handler,
    store,
    clock,
    sessionId,
    tenantId: 'acme',
    author: { kind: 'api-key', id: 'bench' },
    operator: { kind: 'jwt', id: 'bench-ops' },
  });
  await driver.apply(driver.open({ bench: 'load' }, { viewport: { width: 1280, height: 800 } }, null));
  const stepIds: string[] = [];
  for (let from = 0; from < size; from += SUBMIT_BATCH) {
    const specs = Array.from({ length: Math.min(SUBMIT_BATCH, size - from) }, (_, i) =>
      benchStep(from + i + 1),
    );
    const { state } = await driver.apply(driver.submit(specs));
    if (state.status === 'none') throw new Error('the session did not open');
    stepIds.push(...state.order.slice(from));
  }
  const owner = await driver.claimAs('robot-a');
  for (const [i, stepId] of stepIds.entries()) {
    const k = i + 1;
    const checkpoint =
      k % DOCUMENT_EVERY === 1
        ? {
            stateKey: `${sessionId}.${k}.${owner.epoch}`,
            url: `https://example.test/pad/${k}`,
            trigger: 'document' as const,
          }
        : undefined;
    const output =
      k % DOCUMENT_EVERY === 1
        ? { kind: 'navigation' as const, url: `https://example.test/pad/${k}`, status: 200, title: 'Pad' }
        : { kind: 'none' as const };
    await driver.runStep(owner, stepId, output, 40, checkpoint ? { checkpoint } : {});
    await noise(env.BENCH_NOISE_PER_STEP);
  }
  return sessionId;
}

interface Figures {
  events: number;
  readMs: number;
  decodeMs: number;
  foldMs: number;
  loadMs: number;
  snapshotLoadMs: number;
  snapshotVersion: number;
  snapshotKb: number;
  tail: number;
  tailSpecsMs: number;
}

/** A breaker that never opens: breakers are not what is measured here. */
const breaker = new Breaker('event-store', {
  timeoutMs: false,
  resetTimeoutMs: 1_000,
  errorThresholdPercentage: 100,
  volumeThreshold: 1_000_000,
  isBusinessFailure: () => true,
});

/** One sample of each figure, each in a store and handler that know nothing yet. */
async function sample(url: string, topology: Topology, sessionId: string): Promise<Figures> {
  const streamId = sessionStreamId(sessionId);
  const fresh = async <T>(use: (store: JetStreamEventStore, nc: NatsConnection) => Promise<T>) => {
    const nc = await connectNats(url, 'bench-load');
    try {
      const store = await JetStreamEventStore.create(nc, topology);
      try {
        return await use(store, nc);
      } finally {
        await store.close();
      }
    } finally {
      await nc.close();
    }
  };
  let t = performance.now();
  const recorded = await fresh((store) => store.readStream(streamId));
  const readMs = performance.now() - t;
  t = performance.now();
  const decoded: RecordedSessionEvent[] = [];
  for (const r of recorded) {
    const d = decodeSessionEvent(r);
    if (d) decoded.push(d);
  }
  const decodeMs = performance.now() - t;
  t = performance.now();
  foldRecorded({ state: initialState(), version: -1, position: 0 }, decoded);
  const foldMs = performance.now() - t;
  const loadMs = await fresh(async (store) => {
    const handler = new SessionCommandHandler({ store });
    const started = performance.now();
    await handler.load(sessionId);
    return performance.now() - started;
  });
  const fromSnapshot = await fresh(async (store, nc) => {
    const started = performance.now();
    const snapshots = await NatsSnapshotStore.open(nc, topology);
    const snapshot = await snapshots.get(streamId);
    const handler = new SessionCommandHandler({
      store,
      snapshots: { get: async () => snapshot, put: async () => {} },
    });
    const loaded = await handler.load(sessionId);
    const snapshotLoadMs = performance.now() - started;
    const kv = snapshot ? (await encodeSnapshot(snapshot)).byteLength / 1_024 : 0;
    if (loaded.state.status === 'none') throw new Error('the session did not load');
    const tail = stepsToRead(loaded.state);
    return {
      snapshotLoadMs,
      snapshotVersion: snapshot?.version ?? -1,
      snapshotKb: kv,
      tail,
      state: loaded.state,
    };
  });
  const tailSpecsMs = await fresh(async (store) => {
    const reporter = new Reporter({
      handler: new SessionCommandHandler({ store }),
      store,
      breaker,
      robotId: 'bench',
      now: () => new Date(),
      logger: silentLogger,
    });
    const started = performance.now();
    const specs = await reporter.stepSpecs(sessionId, fromSnapshot.tail);
    const elapsed = performance.now() - started;
    if (specs.size !== fromSnapshot.tail.length) throw new Error('tail specs missing');
    return elapsed;
  });
  return {
    events: recorded.length,
    readMs,
    decodeMs,
    foldMs,
    loadMs,
    snapshotLoadMs: fromSnapshot.snapshotLoadMs,
    snapshotVersion: fromSnapshot.snapshotVersion,
    snapshotKb: fromSnapshot.snapshotKb,
    tail: fromSnapshot.tail.length,
    tailSpecsMs,
  };
}

const server = await startNatsServer();
const nc = await connectNats(server.url, 'bench-load-builder');
try {
  const topology = new Topology(uniquePrefix('bl'));
  const store = await JetStreamEventStore.create(nc, topology);
  const snapshots = await NatsSnapshotStore.open(nc, topology);
  let noiseCount = 0;
  const noise = async (n: number) => {
    for (let i = 0; i < n; i++) {
      await store.append(
        `noise-${noiseCount % 97}`,
        [{ eventId: crypto.randomUUID(), type: 'Noise', data: { i: noiseCount }, metadata: {} }],
        { expectedVersion: 'any' },
      );
      noiseCount += 1;
    }
  };
  const sessions = new Map<number, string>();
  for (const size of SIZES) {
    const started = performance.now();
    sessions.set(size, await buildSession(store, snapshots, size, noise));
    process.stderr.write(
      `bench: built a session of ${size} steps in ${round(performance.now() - started, 0)} ms\n`,
    );
  }
  await store.close();

  console.log(
    `noise: ${env.BENCH_NOISE_PER_STEP} other events per step; median of ${env.BENCH_SAMPLES} samples, fresh store and handler each`,
  );
  console.log(
    '| steps | events | readStream ms | decode ms | fold ms | load() ms, no snapshot | load() ms from snapshot (at revision) | snapshot kB | tail | tail specs ms |',
  );
  console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |');
  for (const size of SIZES) {
    const samples: Figures[] = [];
    for (let i = 0; i < env.BENCH_SAMPLES; i++)
      samples.push(await sample(server.url, topology, sessions.get(size)!));
    const median = (pick: (f: Figures) => number) => round(percentile(samples.map(pick), 50), 1);
    const f = samples[0]!;
    console.log(
      `| ${size} | ${f.events} | ${median((x) => x.readMs)} | ${median((x) => x.decodeMs)} | ${median((x) => x.foldMs)} | ` +
        `${median((x) => x.loadMs)} | ${median((x) => x.snapshotLoadMs)} (${f.snapshotVersion}) | ${round(f.snapshotKb, 0)} | ` +
        `${f.tail} | ${median((x) => x.tailSpecsMs)} |`,
    );
  }
} finally {
  breaker.shutdown();
  await nc.close();
  await server.stop();
}
