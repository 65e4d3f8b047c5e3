import { Objm } from '@nats-io/obj';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, beforeEach, afterEach, describe, expect, it } from 'vitest';
import {
  connectNats,
  silentLogger,
  StepSpec,
  Topology,
  type NatsConnection,
  type StepOutput,
} from '@rpa/shared';
import { freePort, startNatsServer, uniquePrefix, type NatsServerHandle } from '@rpa/shared/testing';
import { NatsArtifactStore } from '../artifacts.js';
import { Breakers, defaultBreakerSettings } from '../breakers.js';
import { resolveChromiumPath, RobotBrowser } from '../browser.js';
import type { AllowEntry } from '../egress/allowList.js';
import { EgressProxy } from '../egress/proxy.js';
import { allowOrigin } from '../../test/egress.js';
import { startTestSite, TABLE_HEADERS, TABLE_ROWS, type TestSite } from '../../test/testSite.js';
import { createStepContext } from './context.js';
import { StepFailure } from './errors.js';
import { runStep } from './runStep.js';

const PNG_MAGIC = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

describe('steps against real Chromium', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let site: TestSite;
  let browser: RobotBrowser;
  let egress: EgressProxy;
  const egressAllow: AllowEntry[] = [];
  let breakers: Breakers;
  let artifacts: NatsArtifactStore;
  let topology: Topology;
  let context: BrowserContext;
  let page: Page;
  let stepCount = 0;

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'steps-test');
    topology = new Topology(uniquePrefix());
    artifacts = await NatsArtifactStore.open(nc, topology);
    site = await startTestSite();
    egressAllow.push(allowOrigin(site.url));
    breakers = new Breakers(defaultBreakerSettings());
    egress = new EgressProxy({ allow: egressAllow, logger: silentLogger });
    browser = new RobotBrowser({
      executablePath: resolveChromiumPath(process.env.CHROMIUM_PATH),
      launchBreaker: breakers.launch,
      logger: silentLogger,
      egress,
    });
    await browser.start();
  });
  afterAll(async () => {
    await browser?.close();
    await egress?.close();
    breakers?.shutdown();
    await site?.close();
    await nc?.close();
    await server?.stop();
  });
  beforeEach(async () => {
    context = await browser.newContext({ viewport: { width: 800, height: 600 }, locale: 'en-US' });
    page = await context.newPage();
  });
  afterEach(async () => {
    await context.close();
  });

  /** Runs one step (validated as a submitted step would be) and returns its output or its failure. */
  async function run(step: unknown): Promise<{ output?: StepOutput; failure?: StepFailure }> {
    stepCount += 1;
    const spec = StepSpec.parse(step);
    const ctx = createStepContext({
      page,
      sessionId: 'sess-steps',
      stepId: `step-${stepCount}`,
      artifacts,
      timeoutMs: spec.timeoutMs ?? 5_000,
    });
    try {
      return { output: await runStep(spec, ctx) };
    } catch (error) {
      if (error instanceof StepFailure) return { failure: error };
      throw error;
    }
  }

  it('navigates and reports the final URL, HTTP status and title', async () => {
    const { output } = await run({ action: 'navigate', url: `${site.url}/` });
    expect(output).toEqual({ kind: 'navigation', url: `${site.url}/`, status: 200, title: 'Home' });
  });

  it('fills an input and presses Enter to submit its form', async () => {
    await run({ action: 'navigate', url: `${site.url}/form` });
    expect((await run({ action: 'fill', selector: '#q', value: 'blue staplers' })).output).toEqual({
      kind: 'none',
    });
    expect((await run({ action: 'press', selector: '#q', key: 'Enter' })).output).toEqual({ kind: 'none' });
    expect((await run({ action: 'waitFor', selector: '#result' })).output).toEqual({ kind: 'none' });
    expect((await run({ action: 'extractText', selector: '#result' })).output).toEqual({
      kind: 'text',
      text: 'You searched: blue staplers',
    });
  });

  it('clicks a button', async () => {
    await run({ action: 'navigate', url: `${site.url}/form` });
    expect((await run({ action: 'click', selector: '#go' })).output).toEqual({ kind: 'none' });
    expect((await run({ action: 'extractText', selector: '#out' })).output).toEqual({
      kind: 'text',
      text: 'clicked',
    });
  });

  it('waits for an element that appears later', async () => {
    await run({ action: 'navigate', url: `${site.url}/late` });
    expect((await run({ action: 'waitFor', selector: '#late', state: 'visible' })).output).toEqual({
      kind: 'none',
    });
    expect((await run({ action: 'extractText', selector: '#late' })).output).toEqual({
      kind: 'text',
      text: 'arrived',
    });
  });

  it('extracts a table: thead headers and body rows, trimmed, nested tables kept inside their cell', async () => {
    await run({ action: 'navigate', url: `${site.url}/table` });
    expect((await run({ action: 'extractTable', selector: '#orders' })).output).toEqual({
      kind: 'table',
      headers: TABLE_HEADERS,
      rows: TABLE_ROWS,
    });
    expect((await run({ action: 'extractTable', selector: '#plain' })).output).toEqual({
      kind: 'table',
      headers: ['K', 'V'],
      rows: [['a', 'nested']],
    });
  });

  it('stores a PNG screenshot in the object store under the step key', async () => {
    await run({ action: 'navigate', url: `${site.url}/` });
    const { output } = await run({ action: 'screenshot' });
    const expectedKey = topology.artifactKey('sess-steps', `step-${stepCount}`);
    expect(output).toMatchObject({ kind: 'artifact', artifactKey: expectedKey, contentType: 'image/png' });
    const stored = await (await new Objm(nc).open(topology.artifactsBucket)).getBlob(expectedKey);
    expect(stored).not.toBeNull();
    expect([...stored!.subarray(0, 8)]).toEqual(PNG_MAGIC);
    expect(output).toMatchObject({ bytes: stored!.byteLength });
  });

  it('fails with SELECTOR_NOT_FOUND when no element matches within the timeout', async () => {
    await run({ action: 'navigate', url: `${site.url}/` });
    const { failure } = await run({ action: 'click', selector: '#missing', timeoutMs: 500 });
    expect(failure?.code).toBe('SELECTOR_NOT_FOUND');
    expect(failure?.countsAgainstTarget).toBe(false);
  });

  it('fails with NAVIGATION_FAILED when nothing listens on the port', async () => {
    const port = await freePort();
    egressAllow.push(allowOrigin(`http://127.0.0.1:${port}`));
    const { failure } = await run({ action: 'navigate', url: `http://127.0.0.1:${port}/` });
    expect(failure?.code).toBe('NAVIGATION_FAILED');
    expect(failure?.countsAgainstTarget).toBe(true);
  });

  it('never puts a fill value into a failure message', async () => {
    await run({ action: 'navigate', url: `${site.url}/table` });
    const { failure } = await run({
      action: 'fill',
      selector: '#orders',
      value: 'hunter2-secret',
      timeoutMs: 2_000,
    });
    expect(failure).toBeInstanceOf(StepFailure);
    expect(failure!.message).not.toContain('hunter2-secret');
    expect(JSON.stringify(failure!.toStepError())).not.toContain('hunter2-secret');
  });
});
