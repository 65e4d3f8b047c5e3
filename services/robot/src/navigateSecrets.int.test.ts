import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connectNats,
  ensureWorkTopology,
  openEventStore,
  Registry,
  SessionCommandHandler,
  silentLogger,
  Topology,
  type EventStore,
  type NatsConnection,
  type RecordedSessionEvent,
  type SessionEvent,
  type StepSpec,
} from '@rpa/shared';
import {
  natsContents,
  startNatsServer,
  uniquePrefix,
  waitFor,
  type NatsServerHandle,
} from '@rpa/shared/testing';
import { html, page, startOrigin, type TestOrigin } from '../test/origin.js';
import { allowOrigins } from '../test/egress.js';
import { WorkDriver } from '../test/workDriver.js';
import { resolveChromiumPath } from './browser.js';
import { createRobot, type Robot } from './robot.js';
import { EnvSecretProvider } from './secrets/index.js';
import { capturingLogger } from '../test/logCapture.js';

const TENANT = 'tenant-a';
const ACTOR = { kind: 'api-key' as const, id: 'test-key' };
const ACK_WAIT_MS = 3_000;
/** The secrets' values: strings that appear nowhere unless they leaked. */
const TOKEN_CANARY = `canary-token-${randomBytes(12).toString('hex')}`;
const COOKIE_CANARY = `canary-cookie-${randomBytes(12).toString('hex')}`;

type Data<T extends SessionEvent['type']> = Extract<SessionEvent, { type: T }>['data'];

/** Whether a request carries the header token and the session cookie of the canaries. */
function authorised(req: IncomingMessage): boolean {
  const cookies = (req.headers.cookie ?? '').split(';').map((c) => c.trim());
  return req.headers['x-api-token'] === TOKEN_CANARY && cookies.includes(`session=${COOKIE_CANARY}`);
}

describe('navigate with headers and cookies from secrets', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let store: EventStore;
  let handler: SessionCommandHandler;
  let driver: WorkDriver;
  let topology: Topology;
  let app: TestOrigin;
  let other: TestOrigin;
  const robots: Robot[] = [];
  const registries: Registry[] = [];
  const logLines: string[] = [];
  /** Per request to the app, its path and whether it was authorised. */
  const appRequests: Array<{ path: string; ok: boolean }> = [];
  /** Per request to the other origin, its path and every header value it carried. */
  const otherRequests: Array<{ path: string; headers: IncomingMessage['headers'] }> = [];

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'navigate-secrets-test');
    jsm = await jetstreamManager(nc);
    topology = new Topology(uniquePrefix());
    store = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
    handler = new SessionCommandHandler({ store });
    driver = new WorkDriver({ js: jetstream(nc), topology, store, handler, tenantId: TENANT, actor: ACTOR });
    await ensureWorkTopology(nc, topology, { ackWaitMs: ACK_WAIT_MS, stepMaxDeliver: 15 });
    other = await startOrigin((path, res, req) => {
      otherRequests.push({ path, headers: req.headers });
      res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' }).end('ok');
    });
    app = await startOrigin((path, res, req) => {
      const ok = authorised(req);
      appRequests.push({ path, ok });
      if (!ok) return html(res, 401, page('Denied', '<p id="denied">credentials required</p>'));
      if (path === '/away') {
        res.writeHead(302, { location: `${other.url}/landed`, connection: 'close' }).end();
        return;
      }
      if (path === '/api') {
        res.writeHead(200, { 'content-type': 'text/plain', connection: 'close' }).end('api ok');
        return;
      }
      // Loads an image from, and fetches, the other origin; fetches its own API, which also needs the header.
      html(
        res,
        200,
        page(
          'Account',
          `<h1 id="account">Account of alice</h1>
           <img src="${other.url}/pixel.png" alt="">
           <script>
             fetch('${other.url}/data', { mode: 'no-cors' }).catch(() => undefined);
             fetch('/api').then((r) => r.text()).then((text) => {
               const p = document.createElement('p');
               p.id = 'api';
               p.textContent = text;
               document.body.append(p);
             });
           </script>`,
        ),
      );
    });
    const registry = new Registry();
    registries.push(registry);
    const robot = createRobot({
      nc,
      store,
      topology,
      robotId: 'robot-headers',
      logger: capturingLogger(logLines, 'trace'),
      registry,
      chromiumPath: resolveChromiumPath(process.env.CHROMIUM_PATH),
      egress: { allow: allowOrigins(app.url, other.url) },
      maxSessions: 1,
      ackWaitMs: ACK_WAIT_MS,
      pullExpiresMs: 1_000,
      heartbeatIntervalMs: 500,
      secrets: new EnvSecretProvider({ SECRET_API_TOKEN: TOKEN_CANARY, SECRET_SESSION_ID: COOKIE_CANARY }),
    });
    robots.push(robot);
    await robot.start();
  });

  afterAll(async () => {
    for (const robot of robots) await robot.stop({ graceMs: 5_000 });
    await app?.close();
    await other?.close();
    await store?.close();
    await nc?.close();
    await server?.stop();
  });

  const ofType = <T extends SessionEvent['type']>(all: RecordedSessionEvent[], type: T, stepId?: string) =>
    all
      .filter((r) => r.event.type === type)
      .filter((r) => stepId === undefined || (r.event.data as { stepId?: string }).stepId === stepId)
      .map((r) => r.event.data as Data<T>);

  const untilEvent = (sessionId: string, type: SessionEvent['type'], stepId?: string) =>
    waitFor(
      async () => {
        const all = await driver.events(sessionId);
        return ofType(all, type, stepId).length > 0 && all;
      },
      { timeoutMs: 40_000, description: `${type} of ${stepId ?? sessionId}` },
    );

  const everythingStored = () => natsContents(jsm);

  function expectNoCanary(text: string): void {
    expect(text).not.toContain(TOKEN_CANARY);
    expect(text).not.toContain(COOKIE_CANARY);
  }

  it('reaches a page that needs both, sends the header to its origin only, and stores neither value', async () => {
    const sessionId = randomUUID();
    const opened = await handler.handle({
      ...driver.command('OpenSession', sessionId),
      labels: { suite: 'navigate-secrets' },
      browser: {},
      idleTimeoutMs: null,
      onStepFailure: 'continue',
    });
    await driver.publishAssignment(sessionId, opened.events[0]!.eventId, {
      openedAt: opened.events[0]!.metadata.occurredAt,
    });
    const steps: Array<{ stepId: string; step: StepSpec }> = [
      {
        stepId: 'open',
        step: {
          action: 'navigate',
          url: `${app.url}/account`,
          headers: { 'X-Api-Token': { secret: 'api.token' }, 'X-Client': { value: 'rpa' } },
          cookies: [{ name: 'session', secret: 'session.id' }],
        },
      },
      { stepId: 'account', step: { action: 'extractText', selector: '#account' } },
      { stepId: 'api', step: { action: 'waitFor', selector: '#api' } },
      { stepId: 'api-text', step: { action: 'extractText', selector: '#api' } },
      // A later navigation to the same origin names no headers: those of the first still apply.
      { stepId: 'again', step: { action: 'navigate', url: `${app.url}/account?again=1` } },
      { stepId: 'account-again', step: { action: 'extractText', selector: '#account' } },
      // A page of the origin that redirects to the other origin: the redirected request goes without the header.
      { stepId: 'away', step: { action: 'navigate', url: `${app.url}/away` } },
    ];
    await driver.submit(sessionId, steps);
    const all = await untilEvent(sessionId, 'StepSucceeded', 'away');

    expect(ofType(all, 'StepSucceeded', 'account')[0]!.output).toEqual({
      kind: 'text',
      text: 'Account of alice',
    });
    expect(ofType(all, 'StepSucceeded', 'api-text')[0]!.output).toEqual({ kind: 'text', text: 'api ok' });
    expect(ofType(all, 'StepSucceeded', 'account-again')[0]!.output).toEqual({
      kind: 'text',
      text: 'Account of alice',
    });
    expect(ofType(all, 'StepFailed')).toEqual([]);
    // Every request to the app carried both: the documents, and the page's own fetch.
    expect(appRequests.map((r) => r.path)).toEqual(expect.arrayContaining(['/account', '/api']));
    expect(appRequests.every((r) => r.ok)).toBe(true);

    // The other origin was asked for the image, the fetch and the redirect's target, never with the header or its value.
    await waitFor(() => ['/pixel.png', '/data'].every((path) => otherRequests.some((r) => r.path === path)), {
      timeoutMs: 15_000,
      description: 'the page to load from the other origin',
    });
    for (const request of otherRequests) {
      expect(request.headers['x-api-token']).toBeUndefined();
      expect(request.headers['x-client']).toBeUndefined();
      expect(JSON.stringify(request.headers)).not.toContain(TOKEN_CANARY);
    }

    // Each secret is on record by name with the navigate's result; the literal header is no secret.
    expect(ofType(all, 'SecretUsed')).toEqual([
      { name: 'session.id', stepId: 'open', attempt: 1, replay: false, robotId: 'robot-headers', epoch: 1 },
      { name: 'api.token', stepId: 'open', attempt: 1, replay: false, robotId: 'robot-headers', epoch: 1 },
    ]);
    const used = all.find((r) => r.event.type === 'SecretUsed')!;
    const result = all.find(
      (r) => r.event.type === 'StepSucceeded' && (r.event.data as Data<'StepSucceeded'>).stepId === 'open',
    )!;
    expect(used.metadata.commandId).toBe(result.metadata.commandId);

    // The navigations took restore points, which are stored while the session is open: without the cookie.
    expect(ofType(all, 'SessionCheckpointed').length).toBeGreaterThan(0);
    const stored = await everythingStored();
    expect(stored.messages).toBeGreaterThan(10);
    expect(stored.text).toContain('api.token');
    expectNoCanary(stored.text);

    const closing = await handler.handle({ ...driver.command('RequestClose', sessionId), reason: 'done' });
    await driver.publishClose(sessionId, closing.events[0]!.eventId);
    await untilEvent(sessionId, 'SessionClosed');

    expectNoCanary((await everythingStored()).text);
    const document = await driver.document(sessionId);
    expect(document?.status).toBe('closed');
    expectNoCanary(JSON.stringify(document));
    const logs = logLines.join('');
    expect(logs).toContain('step succeeded');
    expectNoCanary(logs);
    const metrics = (await Promise.all(registries.map((r) => r.metrics()))).join('\n');
    expect(metrics).toContain('rpa_robot_');
    expectNoCanary(metrics);
  });

  it('parks a session taken over by a robot that lacks a secret its restore point needs, naming the step', async () => {
    const sessionId = randomUUID();
    const opened = await handler.handle({
      ...driver.command('OpenSession', sessionId),
      labels: { suite: 'navigate-secrets' },
      browser: {},
      idleTimeoutMs: null,
      onStepFailure: 'continue',
    });
    await driver.publishAssignment(sessionId, opened.events[0]!.eventId, {
      openedAt: opened.events[0]!.metadata.occurredAt,
    });
    await driver.submit(sessionId, [
      {
        stepId: 'login',
        step: {
          action: 'navigate',
          url: `${app.url}/account`,
          headers: { 'X-Api-Token': { secret: 'api.token' } },
          cookies: [{ name: 'session', secret: 'session.id' }],
        },
      },
      { stepId: 'read', step: { action: 'extractText', selector: '#account' } },
    ]);
    const ran = await untilEvent(sessionId, 'StepSucceeded', 'read');
    expect(ofType(ran, 'SessionCheckpointed').map((c) => c.afterStepSeq)).toEqual([1]);

    // The robot that holds the secrets hands the session over; the only other robot holds none.
    const registry = new Registry();
    registries.push(registry);
    const bare = createRobot({
      nc,
      store,
      topology,
      robotId: 'robot-without-secrets',
      logger: capturingLogger(logLines, 'trace'),
      registry,
      chromiumPath: resolveChromiumPath(process.env.CHROMIUM_PATH),
      egress: { allow: allowOrigins(app.url, other.url) },
      maxSessions: 1,
      ackWaitMs: ACK_WAIT_MS,
      pullExpiresMs: 1_000,
      heartbeatIntervalMs: 500,
    });
    robots.push(bare);
    await robots[0]!.stop({ graceMs: 5_000 });
    await bare.start();

    const all = await untilEvent(sessionId, 'SessionNeedsAttention');
    const [flag] = ofType(all, 'SessionNeedsAttention');
    expect(flag).toMatchObject({
      code: 'REPLAY_FAILED',
      stepIds: ['login'],
      robotId: 'robot-without-secrets',
    });
    expect(flag!.reason).toContain('SECRET_NOT_FOUND');
    expect(flag!.reason).toContain('session.id');
    // Nothing was loaded without the credentials, and nothing is recorded as used that was not read.
    expect(ofType(all, 'SessionRecovered')).toEqual([]);
    expect(ofType(all, 'SecretUsed').filter((u) => u.robotId === 'robot-without-secrets')).toEqual([]);
    await waitFor(() => bare.openContexts() === 0, {
      timeoutMs: 10_000,
      description: 'the context to close',
    });
    expect((await driver.document(sessionId))?.status).toBe('needs_attention');
    expectNoCanary((await everythingStored()).text);
    expectNoCanary(logLines.join(''));
  });
});
