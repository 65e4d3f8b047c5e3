import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { connectNats, silentLogger, Topology, type NatsConnection } from '@rpa/shared';
import { startNatsServer, uniquePrefix, type NatsServerHandle } from '@rpa/shared/testing';
import { html, page as htmlPage, startOrigin, type TestOrigin } from '../../test/origin.js';
import { NatsArtifactStore } from '../artifacts.js';
import { Breakers, defaultBreakerSettings } from '../breakers.js';
import { resolveChromiumPath, RobotBrowser } from '../browser.js';
import type { AllowEntry } from '../egress/allowList.js';
import { EgressProxy } from '../egress/proxy.js';
import { allowOrigin } from '../../test/egress.js';
import { executeStep } from '../stepExecutor.js';

describe('navigate: main-document statuses and the origin breaker', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let origin: TestOrigin;
  const origins: TestOrigin[] = [];
  let browser: RobotBrowser;
  let egress: EgressProxy;
  const egressAllow: AllowEntry[] = [];
  let breakers: Breakers;
  let artifacts: NatsArtifactStore;
  let context: BrowserContext;
  let page: Page;

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'navigate-status-test');
    artifacts = await NatsArtifactStore.open(nc, new Topology(uniquePrefix()));
    origin = await startOrigin((path, res) => {
      const status = Number(path.slice(1)) || 200;
      html(res, status, htmlPage(`Status ${status}`, `<p>${status}</p>`));
    });
    egressAllow.push(allowOrigin(origin.url));
    const settings = defaultBreakerSettings();
    settings.origin = {
      timeoutMs: false,
      resetTimeoutMs: 60_000,
      errorThresholdPercentage: 50,
      volumeThreshold: 3,
    };
    breakers = new Breakers(settings);
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
    await origin?.close();
    for (const o of origins) await o.close();
    await nc?.close();
    await server?.stop();
  });
  beforeEach(async () => {
    context = await browser.newContext({}, null);
    page = await context.newPage();
  });
  afterEach(async () => {
    await context?.close();
  });

  const navigate = (path: string, base = origin.url) =>
    executeStep(
      { breakers, artifacts, logger: silentLogger },
      { sessionId: 's-1', stepId: path, step: { action: 'navigate', url: `${base}${path}` } },
      page,
      new AbortController().signal,
    );

  it('answers 4xx pages as the page itself: the step succeeds and the breaker stays closed', async () => {
    for (const path of ['/404', '/410', '/404']) {
      const outcome = await navigate(path);
      expect(outcome).toMatchObject({ status: 'succeeded', output: { status: Number(path.slice(1)) } });
    }
    expect(breakers.forOrigin(origin.url).state).toBe('closed');
  });

  it('fails 502, 503 and 504 as NAVIGATION_FAILED, which counts against the origin breaker', async () => {
    // An origin of its own, so that its breaker has seen nothing else.
    const failing = await startOrigin((path, res) =>
      html(res, Number(path.slice(1)), htmlPage('Down', 'down')),
    );
    origins.push(failing);
    egressAllow.push(allowOrigin(failing.url));
    for (const path of ['/502', '/503', '/504']) {
      const outcome = await navigate(path, failing.url);
      expect(outcome).toEqual({
        status: 'failed',
        error: { code: 'NAVIGATION_FAILED', message: `the target answered HTTP ${path.slice(1)}` },
      });
    }
    expect(breakers.forOrigin(failing.url).state).toBe('open');
    expect(failing.requests).toHaveLength(3);
  });
});
