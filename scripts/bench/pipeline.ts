// `npm run bench:pipeline`: latency of one step through the whole system (submit over HTTP → robot runs it in
// Chromium → result event → projector → KV → query-api feed), next to the raw JetStream round trip on the same
// server. Prints figures; asserts nothing.
import { AckPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import { z } from 'zod';
import { connectNats, parseEnvOrExit } from '@rpa/shared';
import { startNatsServer, uniquePrefix } from '@rpa/shared/testing';
import { RpaClient } from '../lib/client.js';
import { startStack } from '../lib/stack.js';
import { startDemoSite } from '../demo/demoSite.js';
import { percentile, round } from './stats.js';

const { BENCH_STEPS: STEPS } = parseEnvOrExit(
  'bench',
  z.object({ BENCH_STEPS: z.coerce.number().int().min(1).max(2_000).default(200) }),
);
const WARMUP = 10;
const DEADLINE = Date.now() + 10 * 60_000;

async function pipelineLatencies(natsUrl: string): Promise<number[]> {
  const site = await startDemoSite();
  const stack = await startStack({
    natsUrl,
    prefix: uniquePrefix('b'),
    robots: 1,
    logLevel: 'warn',
    egressAllow: [site.url],
  });
  const client = new RpaClient(stack.commandApiUrl, stack.queryApiUrl, stack.apiKey);
  const feed = await client.feed();
  try {
    const { sessionId } = await client.openSession({ labels: { bench: 'pipeline' } });
    feed.subscribeSession(sessionId);
    const [nav] = (await client.submitSteps(sessionId, [{ action: 'navigate', url: `${site.url}/` }])).steps;
    await feed.waitFor(
      sessionId,
      (d) => d.steps.some((s) => s.stepId === nav!.stepId && s.status === 'succeeded'),
      60_000,
    );
    const samples: number[] = [];
    for (let i = 0; i < WARMUP + STEPS && Date.now() < DEADLINE; i++) {
      const started = performance.now();
      const [step] = (await client.submitSteps(sessionId, [{ action: 'extractText', selector: 'h1' }])).steps;
      await feed.waitFor(
        sessionId,
        (d) => d.steps.some((s) => s.stepId === step!.stepId && s.status === 'succeeded'),
        30_000,
      );
      if (i >= WARMUP) samples.push(performance.now() - started);
    }
    await client.closeSession(sessionId);
    return samples;
  } finally {
    await feed.close();
    await stack.stop();
    await site.close();
  }
}

async function rawRoundTrips(natsUrl: string): Promise<number[]> {
  const nc = await connectNats(natsUrl, 'bench-raw');
  try {
    const jsm = await jetstreamManager(nc);
    const name = `RAW_${uniquePrefix('r').toUpperCase()}`;
    await jsm.streams.add({ name, subjects: [`${name}.x`] });
    await jsm.consumers.add(name, {
      durable_name: 'c',
      ack_policy: AckPolicy.Explicit,
      max_ack_pending: 1,
      max_deliver: 5,
    });
    const js = jetstream(nc);
    const consumer = await js.consumers.get(name, 'c');
    const samples: number[] = [];
    for (let i = 0; i < WARMUP + STEPS && Date.now() < DEADLINE; i++) {
      const started = performance.now();
      await js.publish(`${name}.x`, new Uint8Array(64));
      const msg = await consumer.next({ expires: 5_000 });
      if (!msg) throw new Error('raw round trip: no message within 5 s');
      await msg.ackAck();
      if (i >= WARMUP) samples.push(performance.now() - started);
    }
    await jsm.streams.delete(name);
    return samples;
  } finally {
    await nc.close();
  }
}

const nats = await startNatsServer();
try {
  process.stderr.write(
    `bench: ${STEPS} one-at-a-time extractText steps through the pipeline, then ${STEPS} raw round trips\n`,
  );
  const pipeline = await pipelineLatencies(nats.url);
  const raw = await rawRoundTrips(nats.url);
  const p50 = percentile(pipeline, 50);
  const p99 = percentile(pipeline, 99);
  const rawP50 = percentile(raw, 50);
  const rawP99 = percentile(raw, 99);
  console.log('| path | samples | p50 ms | p99 ms |');
  console.log('| --- | --- | --- | --- |');
  console.log(`| submit → succeeded on feed | ${pipeline.length} | ${round(p50)} | ${round(p99)} |`);
  console.log(
    `| raw JetStream publish → consume → ack | ${raw.length} | ${round(rawP50, 3)} | ${round(rawP99, 3)} |`,
  );
  console.log(
    `RESULT bench=pipeline-latency p50_ms=${round(p50)} p99_ms=${round(p99)} raw_p50_ms=${round(rawP50, 3)} raw_p99_ms=${round(rawP99, 3)} ratio_p50=${round(p50 / rawP50, 1)}`,
  );
} finally {
  await nats.stop();
}
