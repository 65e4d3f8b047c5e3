import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import ipaddr from 'ipaddr.js';
import type { BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger, type StepSpec } from '@rpa/shared';
import { waitFor } from '@rpa/shared/testing';
import { html, page as htmlPage, startOrigin, type TestOrigin } from '../../test/origin.js';
import { allowOrigin } from '../../test/egress.js';
import type { ArtifactStore } from '../artifacts.js';
import { Breakers, defaultBreakerSettings } from '../breakers.js';
import { resolveChromiumPath, RobotBrowser } from '../browser.js';
import { executeStep, type StepRunOutcome } from '../stepExecutor.js';
import { deniedRule, type EgressRule } from './addressPolicy.js';
import { egressOf } from './contextEgress.js';
import { canonicalHost } from './host.js';
import { EgressProxy, type EgressChannel } from './proxy.js';
import { capturingLogger } from '../../test/logCapture.js';

/** Names the test resolver answers; everything else does not resolve. */
const DNS: Record<string, string[]> = {
  'rebind.test': ['127.0.0.1'],
  'metadata.test': ['169.254.169.254'],
  'mixed.test': ['93.184.216.34', '127.0.0.1'],
  'v6.test': ['::1'],
  'private.test': ['10.0.0.5'],
  'mapped.test': ['::ffff:127.0.0.1'],
};

const noArtifacts: ArtifactStore = {
  keyFor: () => {
    throw new Error('no step of this suite stores an artifact');
  },
  put: () => Promise.reject(new Error('no step of this suite stores an artifact')),
};

/** A server on every local address that counts each connection made to it: no refused request may reach it. */
interface Canary {
  port: number;
  connections: number;
  requests: string[];
  close(): Promise<void>;
}

async function startCanary(): Promise<Canary> {
  const canary: Canary = { port: 0, connections: 0, requests: [], close: async () => {} };
  const server: Server = createServer((req, res) => {
    canary.requests.push(`${req.method} ${req.headers.host ?? ''}`);
    res.writeHead(200, { 'content-type': 'text/plain', 'access-control-allow-origin': '*' }).end('canary');
  });
  server.on('connection', (_socket: Socket) => {
    canary.connections += 1;
  });
  server.on('upgrade', (req, socket) => {
    canary.requests.push(`UPGRADE ${req.headers.host ?? ''}`);
    socket.destroy();
  });
  // Dual-stack on every interface: 127.0.0.1, ::1 and this host's own addresses all lead here.
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host: '::', ipv6Only: false }, () => resolve());
  }).catch(
    () =>
      new Promise<void>((resolve) => {
        server.removeAllListeners('error');
        server.listen(0, '0.0.0.0', () => resolve());
      }),
  );
  canary.port = (server.address() as AddressInfo).port;
  canary.close = () =>
    new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    });
  return canary;
}

/** This host's own non-loopback IPv4 addresses (a private one in most containers): the canary listens there too. */
function ownAddresses(): string[] {
  return Object.values(networkInterfaces())
    .flat()
    .filter((i) => i && i.family === 'IPv4' && !i.internal)
    .map((i) => i!.address);
}

/** The command lines of Chromium processes this test process started. */
function chromiumCommandLines(): string[] {
  const lines: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid !== process.pid) continue;
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
      if (/chrom/i.test(cmdline)) lines.push(cmdline);
    } catch {
      // The process has gone in the meantime.
    }
  }
  return lines;
}

describe('egress policy: SSRF vectors against real Chromium and the egress proxy', () => {
  let canary: Canary;
  let site: TestOrigin;
  let tenantSite: TestOrigin;
  let proxy: EgressProxy;
  let browser: RobotBrowser;
  let breakers: Breakers;
  let context: BrowserContext;
  let page: Page;
  let channel: EgressChannel;
  const logLines: string[] = [];
  const tally = {
    tried: 0,
    refusedByStep: 0,
    refusedByProxy: 0,
    refusedByChromium: 0,
    subresourcesBlocked: 0,
  };
  const SESSION = 'ssrf-session';
  const TENANT = 'tenant-x';

  beforeAll(async () => {
    canary = await startCanary();
    site = await startOrigin((path, res, req) => {
      const url = new URL(req.url ?? '/', 'http://site');
      const to = url.searchParams.get('to') ?? '/';
      if (path === '/redirect') {
        res.writeHead(302, { location: to, connection: 'close' }).end();
      } else if (path === '/hop') {
        res.writeHead(302, { location: `/redirect?to=${encodeURIComponent(to)}`, connection: 'close' }).end();
      } else if (path === '/subresources') {
        html(res, 200, subresourcePage(canary.port));
      } else if (path === '/sw') {
        html(res, 200, htmlPage('SW', `<script>navigator.serviceWorker.register('/sw.js')</script>`));
      } else if (path === '/sw.js') {
        res.writeHead(200, { 'content-type': 'text/javascript' }).end('self.onfetch = () => {};');
      } else {
        html(res, 200, htmlPage('Allowed', `<p id="path">${path}</p>`));
      }
    });
    tenantSite = await startOrigin((path, res) => html(res, 200, htmlPage('Tenant site', path)));
    const settings = defaultBreakerSettings();
    // A breaker that opens after three failures out of three: denials counted against it would open it at once.
    settings.origin = {
      timeoutMs: false,
      resetTimeoutMs: 60_000,
      errorThresholdPercentage: 50,
      volumeThreshold: 3,
    };
    breakers = new Breakers(settings);
    const logger = capturingLogger(logLines);
    proxy = new EgressProxy({
      allow: [allowOrigin(site.url)],
      tenantAllow: new Map([['acme', [allowOrigin(tenantSite.url)]]]),
      resolve: async (name) => {
        const answer = DNS[name];
        if (!answer) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
        return answer;
      },
      logger,
    });
    browser = new RobotBrowser({
      executablePath: resolveChromiumPath(process.env.CHROMIUM_PATH),
      launchBreaker: breakers.launch,
      logger,
      egress: proxy,
    });
    await browser.start();
    context = await browser.newContext({}, null, { tenantId: TENANT, sessionId: SESSION });
    page = await context.newPage();
    channel = egressOf(context)!;
  });

  afterAll(async () => {
    await context?.close();
    await browser?.close();
    await proxy?.close();
    breakers?.shutdown();
    await site?.close();
    await tenantSite?.close();
    await canary?.close();
    // The figures for the closing note of the security work.
    console.info(
      `SSRF egress figures: ${JSON.stringify({ ...tally, canaryConnections: canary?.connections })}`,
    );
  });

  let stepCount = 0;
  const run = (step: StepSpec, on: Page = page, sessionId = SESSION): Promise<StepRunOutcome> =>
    executeStep(
      { breakers, artifacts: noArtifacts, logger: createLogger({ name: 'quiet', level: 'silent' }) },
      { sessionId, stepId: `step-${++stepCount}`, step },
      on,
      new AbortController().signal,
    );

  const C = () => canary.port;
  /** Navigations that must be refused, each with the rule that refuses it. */
  const navigations = (): Array<[string, EgressRule]> => [
    // Loopback in every spelling, on the canary's port.
    [`http://127.0.0.1:${C()}/`, 'loopback'],
    [`http://2130706433:${C()}/`, 'loopback'],
    [`http://0x7f.1:${C()}/`, 'loopback'],
    [`http://0177.0.0.1:${C()}/`, 'loopback'],
    [`http://127.1:${C()}/`, 'loopback'],
    [`http://127.0.1:${C()}/`, 'loopback'],
    [`http://0x7f000001:${C()}/`, 'loopback'],
    [`http://017700000001:${C()}/`, 'loopback'],
    [`http://0x7f.0.0.1:${C()}/`, 'loopback'],
    [`http://0177.1:${C()}/`, 'loopback'],
    [`http://127.000.000.001:${C()}/`, 'loopback'],
    [`http://127.0.0.1.:${C()}/`, 'loopback'],
    [`http://%31%32%37.0.0.1:${C()}/`, 'loopback'],
    [`http://127.127.127.127:${C()}/`, 'loopback'],
    [`http://user:hunter2@127.0.0.1:${C()}/p?token=q-secret`, 'loopback'],
    [`http://localhost:${C()}/`, 'loopback'],
    [`http://localhost.:${C()}/`, 'loopback'],
    [`http://LOCALHOST:${C()}/`, 'loopback'],
    [`http://LocalHost.:${C()}/`, 'loopback'],
    [`http://sub.localhost:${C()}/`, 'loopback'],
    [`http://[::1]:${C()}/`, 'loopback'],
    [`http://[0:0:0:0:0:0:0:1]:${C()}/`, 'loopback'],
    [`http://[::ffff:127.0.0.1]:${C()}/`, 'loopback'],
    [`http://[::ffff:7f00:1]:${C()}/`, 'loopback'],
    [`http://[0:0:0:0:0:ffff:127.0.0.1]:${C()}/`, 'loopback'],
    [`http://[::127.0.0.1]:${C()}/`, 'loopback'],
    [`https://127.0.0.1:${C()}/`, 'loopback'],
    [`https://localhost:${C()}/`, 'loopback'],
    [`https://[::1]:${C()}/`, 'loopback'],
    [`https://0x7f.1:${C()}/`, 'loopback'],
    // The unspecified address reaches this host too.
    [`http://0.0.0.0:${C()}/`, 'unspecified'],
    [`http://0:${C()}/`, 'unspecified'],
    [`http://0x0:${C()}/`, 'unspecified'],
    [`http://[::]:${C()}/`, 'unspecified'],
    // The cloud metadata address in every spelling.
    ['http://169.254.169.254/latest/meta-data/', 'link-local'],
    ['http://2852039166/', 'link-local'],
    ['http://0xa9fea9fe/', 'link-local'],
    ['http://0xa9.0xfe.0xa9.0xfe/', 'link-local'],
    ['http://0251.0376.0251.0376/', 'link-local'],
    ['http://025177524776/', 'link-local'],
    ['http://0251.254.169.254/', 'link-local'],
    ['http://0xa9.254.0251.0376/', 'link-local'],
    ['http://169.254.43518/', 'link-local'],
    ['http://169.16689662/', 'link-local'],
    ['http://0xa9.16689662/', 'link-local'],
    ['http://169.254.169.254./', 'link-local'],
    ['http://[::ffff:169.254.169.254]/', 'link-local'],
    ['http://[::ffff:a9fe:a9fe]/', 'link-local'],
    ['http://[0:0:0:0:0:ffff:a9fe:a9fe]/', 'link-local'],
    ['https://169.254.169.254/', 'link-local'],
    ['http://169.254.170.2/v2/credentials', 'link-local'],
    ['http://[fd00:ec2::254]/', 'unique-local'],
    ['http://[64:ff9b::a9fe:a9fe]/', 'ipv4-translation'],
    // Private and other non-public ranges.
    [`http://10.0.0.1:${C()}/`, 'private'],
    ['http://10.255.255.254/', 'private'],
    ['http://172.16.0.1/', 'private'],
    ['http://172.31.255.254/', 'private'],
    ['http://192.168.0.1/', 'private'],
    ['http://192.168.1.1:8080/', 'private'],
    ['https://10.0.0.1/', 'private'],
    ['http://[::ffff:10.0.0.1]/', 'private'],
    ['http://100.64.0.1/', 'carrier-grade-nat'],
    ['http://[fd12:3456::1]/', 'unique-local'],
    ['http://[fe80::1]/', 'link-local'],
    ['http://224.0.0.1/', 'multicast'],
    ['http://[ff02::1]/', 'multicast'],
    ['http://255.255.255.255/', 'broadcast'],
    ['http://240.0.0.1/', 'reserved'],
    ['http://198.18.0.1/', 'reserved'],
    // Names that resolve to closed addresses (the proxy's resolver decides, not the browser's).
    [`http://rebind.test:${C()}/`, 'loopback'],
    [`https://rebind.test:${C()}/`, 'loopback'],
    ['http://metadata.test/latest/meta-data/', 'link-local'],
    [`http://mixed.test:${C()}/`, 'loopback'],
    [`http://v6.test:${C()}/`, 'loopback'],
    [`http://mapped.test:${C()}/`, 'loopback'],
    ['http://private.test/', 'private'],
    // This host's own addresses, where the canary listens too.
    ...ownAddresses().flatMap((a): Array<[string, EgressRule]> => {
      const rule = deniedRule(ipaddr.parse(a));
      return rule ? [[`http://${a}:${C()}/`, rule]] : [];
    }),
  ];

  it('works for an allow-listed loopback origin', async () => {
    const outcome = await run({ action: 'navigate', url: `${site.url}/hello` });
    expect(outcome).toMatchObject({
      status: 'succeeded',
      output: { kind: 'navigation', url: `${site.url}/hello`, status: 200, title: 'Allowed' },
    });
  });

  it('launches Chromium with everything behind the proxy and no remote-debugging port', () => {
    const lines = chromiumCommandLines();
    const main = lines.find((l) => l.includes('--remote-debugging-pipe'));
    expect(main, lines.join('\n')).toBeDefined();
    expect(main).toMatch(/--proxy-server=http:\/\/127\.0\.0\.1:\d+/);
    expect(main).toContain('--proxy-bypass-list=<-loopback>');
    for (const line of lines) expect(line).not.toContain('--remote-debugging-port');
  });

  it('refuses every navigation to a closed address as EGRESS_DENIED naming the rule, in the step and in the proxy', async () => {
    const vectors = navigations();
    expect(vectors.length).toBeGreaterThanOrEqual(70);
    for (const [url, rule] of vectors) {
      tally.tried += 1;
      // 1. As a step: refused before the browser goes there, naming the rule.
      const outcome = await run({ action: 'navigate', url });
      expect(outcome, url).toMatchObject({ status: 'failed', error: { code: 'EGRESS_DENIED' } });
      const message = outcome.status === 'failed' ? outcome.error.message : '';
      expect(message, url).toMatch(
        new RegExp(`^egress denied: ${rule} \\S+( \\(resolved from \\S+\\))? refused$`),
      );
      tally.refusedByStep += 1;
      // 2. The browser sent there directly, past the step's check: the proxy refuses it (or Chromium on its own).
      const host = canonicalHost(new URL(url).hostname)!.text;
      const mark = channel.mark();
      const response = await page.goto(url, { timeout: 10_000 }).catch(() => null);
      const denial = channel.denialSince(mark, (d) => d.host === host);
      if (denial) {
        expect(denial.rule, url).toBe(rule);
        if (response) expect(response.status(), url).toBe(403);
        tally.refusedByProxy += 1;
      } else {
        // Chromium refused to even ask (e.g. a port it blocks): still nothing reached the address.
        expect(response, url).toBeNull();
        tally.refusedByChromium += 1;
      }
      await settle(page);
      expect(canary.connections, url).toBe(0);
    }
  });

  it('refuses redirects from an allowed origin to closed addresses', async () => {
    const redirects: Array<[string, EgressRule]> = [
      [`/redirect?to=${encodeURIComponent(`http://127.0.0.1:${C()}/`)}`, 'loopback'],
      [`/redirect?to=${encodeURIComponent('http://169.254.169.254/latest/meta-data/')}`, 'link-local'],
      [`/redirect?to=${encodeURIComponent(`http://0x7f.1:${C()}/`)}`, 'loopback'],
      [`/redirect?to=${encodeURIComponent(`https://127.0.0.1:${C()}/`)}`, 'loopback'],
      [`/redirect?to=${encodeURIComponent(`http://rebind.test:${C()}/`)}`, 'loopback'],
      [`/redirect?to=${encodeURIComponent(`http://[::ffff:127.0.0.1]:${C()}/`)}`, 'loopback'],
      [`/hop?to=${encodeURIComponent(`http://localhost:${C()}/`)}`, 'loopback'],
      [`/hop?to=${encodeURIComponent('http://10.1.2.3/')}`, 'private'],
    ];
    for (const [path, rule] of redirects) {
      tally.tried += 1;
      const outcome = await run({ action: 'navigate', url: `${site.url}${path}` });
      expect(outcome, path).toMatchObject({ status: 'failed', error: { code: 'EGRESS_DENIED' } });
      expect(outcome.status === 'failed' && outcome.error.message, path).toMatch(
        new RegExp(`^egress denied: ${rule} `),
      );
      tally.refusedByStep += 1;
      tally.refusedByProxy += 1;
      await settle(page);
      expect(canary.connections, path).toBe(0);
    }
  });

  it('blocks iframes, fetch, XHR, WebSockets and other subrequests of an allowed page', async () => {
    const mark = channel.mark();
    const outcome = await run({ action: 'navigate', url: `${site.url}/subresources` });
    expect(outcome, JSON.stringify(outcome)).toMatchObject({ status: 'succeeded', output: { status: 200 } });
    const hosts = SUBRESOURCE_HOSTS;
    await waitFor(() => hosts.every((h) => channel.denialSince(mark, (d) => d.host === h)), {
      timeoutMs: 15_000,
      description: 'the proxy to refuse every subrequest of the page',
    });
    await waitFor(async () => (await page.locator('#done').textContent()) === String(SUBRESOURCE_COUNT), {
      timeoutMs: 15_000,
      description: 'the page to see every script-made request fail',
    });
    const results = JSON.parse((await page.locator('#results').textContent()) ?? '{}') as Record<
      string,
      string
    >;
    // A no-cors request settles with an opaque answer (the proxy's 403) either way: the proxy's record and the
    // canary are the evidence for those.
    for (const [name, result] of Object.entries(results))
      expect(result, name).toBe(name.endsWith('no-cors') ? 'settled' : 'blocked');
    tally.tried += hosts.length;
    tally.subresourcesBlocked += hosts.length;
    expect(canary.connections).toBe(0);
  });

  it('blocks service workers', async () => {
    const outcome = await run({ action: 'navigate', url: `${site.url}/sw` });
    expect(outcome, JSON.stringify(outcome)).toMatchObject({ status: 'succeeded' });
    type WithWorkers = { navigator: { serviceWorker: { controller: unknown } } };
    const controller = await page.evaluate(
      () => (globalThis as unknown as WithWorkers).navigator.serviceWorker.controller,
    );
    expect(controller).toBeNull();
    expect(context.serviceWorkers()).toHaveLength(0);
    expect(site.count('/sw.js')).toBe(0);
  });

  it("applies each tenant's own allow-list to its sessions' contexts", async () => {
    const acme = await browser.newContext({}, null, { tenantId: 'acme', sessionId: 'acme-1' });
    try {
      const acmePage = await acme.newPage();
      const allowed = await run({ action: 'navigate', url: `${tenantSite.url}/x` }, acmePage, 'acme-1');
      expect(allowed).toMatchObject({ status: 'succeeded', output: { title: 'Tenant site' } });
      // Its list adds to the global one, and opens nothing else.
      expect(await run({ action: 'navigate', url: `${site.url}/` }, acmePage, 'acme-1')).toMatchObject({
        status: 'succeeded',
      });
      expect(
        await run({ action: 'navigate', url: `http://127.0.0.1:${C()}/` }, acmePage, 'acme-1'),
      ).toMatchObject({ status: 'failed', error: { code: 'EGRESS_DENIED' } });
    } finally {
      await acme.close();
    }
    const refused = await run({ action: 'navigate', url: `${tenantSite.url}/x` });
    expect(refused).toMatchObject({
      status: 'failed',
      error: { code: 'EGRESS_DENIED', message: `egress denied: loopback 127.0.0.1 refused` },
    });
    tally.tried += 2;
    tally.refusedByStep += 2;
    expect(tenantSite.count('/x')).toBe(1);
  });

  it('counts no refusal against the origin breaker, and logs each one without paths, queries or credentials', () => {
    expect(breakers.forOrigin(`http://127.0.0.1:${C()}`).state).toBe('closed');
    expect(breakers.forOrigin('http://169.254.169.254').state).toBe('closed');
    const denials = logLines
      .map((l) => JSON.parse(l) as { level: number; msg: string; egress?: Record<string, unknown> })
      .filter((l) => l.egress);
    expect(denials.length).toBeGreaterThanOrEqual(tally.tried);
    for (const line of denials) {
      expect(line).toMatchObject({ level: 40, msg: expect.stringMatching(/^egress denied: /) });
      expect(Object.keys(line.egress!).sort()).toEqual([
        'address',
        'host',
        'port',
        'rule',
        'sessionId',
        'tenantId',
      ]);
    }
    expect(denials.some((l) => l.egress!.tenantId === TENANT && l.egress!.sessionId === SESSION)).toBe(true);
    expect(denials.some((l) => l.egress!.tenantId === 'acme' && l.egress!.sessionId === 'acme-1')).toBe(true);
    const all = logLines.join('');
    for (const leak of ['hunter2', 'q-secret', '/latest/meta-data', '/v2/credentials'])
      expect(all).not.toContain(leak);
  });

  it('ends with the canary never reached', () => {
    expect(canary.requests).toEqual([]);
    expect(canary.connections).toBe(0);
    expect(tally.tried).toBeGreaterThanOrEqual(60);
  });
});

/**
 * Waits until nothing is left of the last navigation: a refused one may still commit its error page after goto has
 * rejected, and that late commit would interrupt the next navigation.
 */
async function settle(page: Page): Promise<void> {
  await waitFor(
    async () => {
      try {
        await page.goto('about:blank', { timeout: 5_000 });
        return true;
      } catch {
        return false;
      }
    },
    { timeoutMs: 10_000, intervalMs: 50, description: 'the page to settle on about:blank' },
  );
}

/** One distinct canonical host per subrequest, so that each refusal can be told apart in the proxy's record. */
const SUBRESOURCE_HOSTS = [
  '127.0.0.1',
  'localhost',
  '[::1]',
  'rebind.test',
  '[::ffff:7f00:1]',
  '169.254.169.254',
  '10.0.0.1',
  'v6.test',
  'metadata.test',
  'private.test',
  '127.0.0.2',
  'sub.localhost',
  'mapped.test',
];
/** Requests the page's script watches (the rest are elements whose failure it cannot observe). */
const SUBRESOURCE_COUNT = 7;

function subresourcePage(port: number): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>Subresources</title>
<link rel="stylesheet" href="http://metadata.test/style.css"></head><body>
<iframe src="http://127.0.0.1:${port}/iframe"></iframe>
<img src="http://169.254.169.254/latest/meta-data/">
<script src="http://v6.test:${port}/script.js"></script>
<iframe src="http://private.test:${port}/frame"></iframe>
<pre id="results">{}</pre><p id="done">0</p>
<script>
const results = {};
const report = (name, outcome) => {
  results[name] = outcome;
  document.getElementById('results').textContent = JSON.stringify(results);
  document.getElementById('done').textContent = String(Object.keys(results).length);
};
fetch('http://localhost:${port}/fetch').then(() => report('fetch', 'reached'), () => report('fetch', 'blocked'));
fetch('http://10.0.0.1:${port}/fetch', { mode: 'no-cors' })
  .then(() => report('fetch-no-cors', 'settled'), () => report('fetch-no-cors', 'settled'));
const xhr = new XMLHttpRequest();
xhr.open('GET', 'http://[::1]:${port}/xhr');
xhr.onload = () => report('xhr', 'reached');
xhr.onerror = () => report('xhr', 'blocked');
xhr.send();
const ws = new WebSocket('ws://rebind.test:${port}/ws');
ws.onopen = () => report('ws', 'reached');
ws.onerror = () => report('ws', 'blocked');
const wss = new WebSocket('wss://[::ffff:127.0.0.1]:${port}/wss');
wss.onopen = () => report('wss', 'reached');
wss.onerror = () => report('wss', 'blocked');
const events = new EventSource('http://sub.localhost:${port}/events');
events.onopen = () => report('eventsource', 'reached');
events.onerror = () => { events.close(); report('eventsource', 'blocked'); };
fetch('http://mapped.test:${port}/post', { method: 'POST', body: 'x', mode: 'no-cors' })
  .then(() => report('post-no-cors', 'settled'), () => report('post-no-cors', 'settled'));
navigator.sendBeacon('http://127.0.0.2:${port}/beacon', 'x');
</script></body></html>`;
}
