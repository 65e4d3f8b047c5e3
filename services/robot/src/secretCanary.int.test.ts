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
const SECRET_NAME = 'login.password';
// Short, so that the session of a crashed robot is offered again soon; progress signals keep live work held.
const ACK_WAIT_MS = 3_000;
/** The secret's value: a string that appears nowhere unless it leaked. */
const CANARY = `canary-${randomBytes(12).toString('hex')}`;

type Data<T extends SessionEvent['type']> = Extract<SessionEvent, { type: T }>['data'];

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

/**
 * A login page that misbehaves once in two ways: its first load answers 503 (the navigation is retried), and its
 * password field stays disabled until the test lets it be enabled (the page polls /ready), so the first attempt to
 * type the secret times out and is retried. The form's target accepts only user alice with the canary password; it
 * never echoes what it was sent.
 */
function loginPage(state: { loads: number; ready: boolean; logins: Array<{ ok: boolean }> }) {
  return (path: string, res: Parameters<Parameters<typeof startOrigin>[0]>[1], req: IncomingMessage) => {
    if (path === '/login') {
      state.loads += 1;
      if (state.loads === 1) return html(res, 503, page('Unavailable', 'try again'));
      return html(
        res,
        200,
        page(
          'Log in',
          `<form method="post" action="/session">
             <input id="user" name="user">
             <input id="password" name="password" type="password" disabled>
             <button id="submit" type="submit">Log in</button>
           </form>
           <script>
             const timer = setInterval(async () => {
               const answer = await fetch('/ready').then((r) => r.text()).catch(() => 'no');
               if (answer === 'yes') {
                 document.getElementById('password').disabled = false;
                 clearInterval(timer);
               }
             }, 50);
           </script>`,
        ),
      );
    }
    if (path === '/ready') {
      res
        .writeHead(200, { 'content-type': 'text/plain', connection: 'close' })
        .end(state.ready ? 'yes' : 'no');
      return;
    }
    if (path === '/session' && req.method === 'POST') {
      void readBody(req).then((body) => {
        const form = new URLSearchParams(body);
        const ok = form.get('user') === 'alice' && form.get('password') === CANARY;
        state.logins.push({ ok });
        if (ok) html(res, 200, page('Welcome', '<h1 id="welcome">Welcome alice</h1>'));
        else html(res, 401, page('Denied', '<p id="denied">wrong user or password</p>'));
      });
      return;
    }
    html(res, 404, page('Not found', 'nothing here'));
  };
}

describe('secrets by reference: a canary secret leaks nowhere', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let store: EventStore;
  let handler: SessionCommandHandler;
  let driver: WorkDriver;
  let topology: Topology;
  let robot: Robot;
  const robots: Robot[] = [];
  let origin: TestOrigin;
  const login = { loads: 0, ready: false, logins: [] as Array<{ ok: boolean }> };
  /** The metrics registry of each robot started. */
  const registries: Registry[] = [];
  const metricsText = async () => (await Promise.all(registries.map((r) => r.metrics()))).join('\n');
  const logLines: string[] = [];

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'secret-canary-test');
    jsm = await jetstreamManager(nc);
    topology = new Topology(uniquePrefix());
    store = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
    handler = new SessionCommandHandler({ store });
    driver = new WorkDriver({ js: jetstream(nc), topology, store, handler, tenantId: TENANT, actor: ACTOR });
    await ensureWorkTopology(nc, topology, { ackWaitMs: ACK_WAIT_MS, stepMaxDeliver: 15 });
    origin = await startOrigin(loginPage(login));
    robot = await startRobot('robot-canary');
  });

  afterAll(async () => {
    for (const started of robots) await started.stop({ graceMs: 5_000 });
    await origin?.close();
    await store?.close();
    await nc?.close();
    await server?.stop();
  });

  /** A robot whose every log line is captured, holding the canary as secret login.password. */
  async function startRobot(robotId: string, conn = { nc, store }): Promise<Robot> {
    const registry = new Registry();
    registries.push(registry);
    const started = createRobot({
      nc: conn.nc,
      store: conn.store,
      topology,
      robotId,
      // Every line the robot writes, at its most talkative level.
      logger: capturingLogger(logLines, 'trace'),
      registry,
      chromiumPath: resolveChromiumPath(process.env.CHROMIUM_PATH),
      // The login page is on loopback, which the egress policy refuses unless allowed.
      egress: { allow: allowOrigins(origin.url) },
      maxSessions: 2,
      ackWaitMs: ACK_WAIT_MS,
      pullExpiresMs: 1_000,
      heartbeatIntervalMs: 500,
      secrets: new EnvSecretProvider({ SECRET_LOGIN_PASSWORD: CANARY }),
    });
    robots.push(started);
    await started.start();
    return started;
  }

  async function openSession(sessionId: string): Promise<void> {
    const result = await handler.handle({
      ...driver.command('OpenSession', sessionId),
      labels: { suite: 'secrets' },
      browser: {},
      idleTimeoutMs: null,
      onStepFailure: 'continue',
    });
    const opened = result.events[0]!;
    await driver.publishAssignment(sessionId, opened.eventId, { openedAt: opened.metadata.occurredAt });
  }

  async function closeSession(sessionId: string): Promise<void> {
    const result = await handler.handle({ ...driver.command('RequestClose', sessionId), reason: 'done' });
    await driver.publishClose(sessionId, result.events[0]!.eventId);
    await waitFor(
      async () => (await driver.events(sessionId)).some((r) => r.event.type === 'SessionClosed'),
      { timeoutMs: 15_000, description: 'the session to close' },
    );
  }

  const ofType = <T extends SessionEvent['type']>(all: RecordedSessionEvent[], type: T, stepId?: string) =>
    all
      .filter((r) => r.event.type === type)
      .filter((r) => stepId === undefined || (r.event.data as { stepId?: string }).stepId === stepId)
      .map((r) => r.event.data as Data<T>);

  const untilEvent = (sessionId: string, type: SessionEvent['type'], stepId?: string, timeoutMs = 40_000) =>
    waitFor(
      async () => {
        const all = await driver.events(sessionId);
        return ofType(all, type, stepId).length > 0 && all;
      },
      { timeoutMs, description: `${type} of ${stepId ?? sessionId}` },
    );

  const everythingStored = () => natsContents(jsm);

  it('logs in with the secret through a failed and retried navigation and fill, and the canary is nowhere', async () => {
    const sessionId = randomUUID();
    await openSession(sessionId);
    const quickRetry = { maxAttempts: 3, backoff: 'fixed', initialMs: 1_000, maxMs: 1_000 } as const;
    const steps: Array<{ stepId: string; step: StepSpec }> = [
      { stepId: 'open', step: { action: 'navigate', url: `${origin.url}/login`, retry: quickRetry } },
      { stepId: 'user', step: { action: 'fill', selector: '#user', value: 'alice' } },
      {
        stepId: 'password',
        step: {
          action: 'fill',
          selector: '#password',
          secret: SECRET_NAME,
          // The first attempt spends all of it on the disabled field; the second has it (and the retry delay) for
          // the page to notice it may enable the field, with room to spare on a busy machine.
          timeoutMs: 3_000,
          retry: { maxAttempts: 3, backoff: 'fixed', initialMs: 1_500, maxMs: 1_500 },
        },
      },
      { stepId: 'submit', step: { action: 'click', selector: '#submit' } },
      { stepId: 'welcome', step: { action: 'extractText', selector: '#welcome' } },
    ];
    await driver.submit(sessionId, steps);

    // The first attempt to type the secret fails (the field is disabled); only then may the page enable it.
    const afterFirstTry = await untilEvent(sessionId, 'StepFailed', 'password');
    login.ready = true;
    expect(ofType(afterFirstTry, 'StepFailed', 'password')).toEqual([
      expect.objectContaining({
        attempt: 1,
        final: false,
        error: expect.objectContaining({ code: 'TIMEOUT' }),
      }),
    ]);
    const all = await untilEvent(sessionId, 'StepSucceeded', 'welcome');

    // It logged in: the page got the canary, once, from the second attempt.
    expect(ofType(all, 'StepSucceeded', 'welcome')[0]!.output).toEqual({
      kind: 'text',
      text: 'Welcome alice',
    });
    expect(login.logins).toEqual([{ ok: true }]);
    // The navigation failed once (503) and was retried.
    expect(ofType(all, 'StepFailed', 'open')).toEqual([
      expect.objectContaining({
        attempt: 1,
        final: false,
        error: expect.objectContaining({ code: 'NAVIGATION_FAILED' }),
      }),
    ]);
    expect(ofType(all, 'StepSucceeded', 'open')[0]!.attempt).toBe(2);
    expect(ofType(all, 'StepSucceeded', 'password')[0]!.attempt).toBe(2);

    // Each attempt that typed the secret is on record, by name, appended with that attempt's result.
    expect(ofType(all, 'SecretUsed')).toEqual([
      { name: SECRET_NAME, stepId: 'password', attempt: 1, replay: false, robotId: 'robot-canary', epoch: 1 },
      { name: SECRET_NAME, stepId: 'password', attempt: 2, replay: false, robotId: 'robot-canary', epoch: 1 },
    ]);
    for (const attempt of [1, 2]) {
      const used = all.find(
        (r) => r.event.type === 'SecretUsed' && (r.event.data as Data<'SecretUsed'>).attempt === attempt,
      )!;
      const result = all.find(
        (r) =>
          (r.event.type === 'StepFailed' || r.event.type === 'StepSucceeded') &&
          (r.event.data as Data<'StepFailed'>).stepId === 'password' &&
          (r.event.data as Data<'StepFailed'>).attempt === attempt,
      )!;
      expect(used.metadata.commandId).toBe(result.metadata.commandId);
    }
    // The step with a literal value used no secret.
    expect(ofType(all, 'SecretUsed', 'user')).toEqual([]);

    await closeSession(sessionId);

    // Not in any event as stored, nor anywhere else in NATS (work messages, KV buckets, object stores).
    const stored = await everythingStored();
    expect(stored.messages).toBeGreaterThan(20);
    expect(stored.text).toContain(SECRET_NAME);
    expect(stored.text).not.toContain(CANARY);
    // Not in the session's read model.
    const document = await driver.document(sessionId);
    expect(document?.status).toBe('closed');
    expect(JSON.stringify(document)).not.toContain(CANARY);
    // Not in any error message.
    const errors = [...ofType(all, 'StepFailed'), ...ofType(all, 'StepDeadLettered')].map(
      (e) => e.error.message,
    );
    expect(errors.length).toBeGreaterThanOrEqual(2);
    for (const message of errors) expect(message).not.toContain(CANARY);
    // Not in a log line, nor in the metrics.
    const logs = logLines.join('');
    expect(logs).toContain('step failed: retried later');
    expect(logs).not.toContain(CANARY);
    const metrics = await metricsText();
    expect(metrics).toContain('rpa_robot_');
    expect(metrics).not.toContain(CANARY);
  });

  it('fails a step naming a secret the robot does not hold with SECRET_NOT_FOUND, once, naming the secret', async () => {
    const sessionId = randomUUID();
    await openSession(sessionId);
    const quickRetry = { maxAttempts: 3, backoff: 'fixed', initialMs: 200, maxMs: 200 } as const;
    await driver.submit(sessionId, [
      { stepId: 'open', step: { action: 'navigate', url: `${origin.url}/login`, retry: quickRetry } },
      {
        stepId: 'token',
        step: { action: 'fill', selector: '#user', secret: 'missing.token', retry: quickRetry },
      },
    ]);
    const all = await untilEvent(sessionId, 'StepDeadLettered', 'token');
    expect(ofType(all, 'StepFailed', 'token')).toEqual([
      expect.objectContaining({
        attempt: 1,
        final: true,
        error: { code: 'SECRET_NOT_FOUND', message: 'secret "missing.token" is not held by environment' },
      }),
    ]);
    expect(ofType(all, 'StepDeadLettered', 'token')).toEqual([
      expect.objectContaining({ reason: 'not_retryable', attempts: 1 }),
    ]);
    // Nothing was resolved, so nothing was used.
    expect(ofType(all, 'SecretUsed', 'token')).toEqual([]);
    await closeSession(sessionId);
    expect(logLines.join('')).not.toContain(CANARY);
  });
  it('records the secret typed again by recovery on another robot, and the canary is still nowhere', async () => {
    // Only the robots of this test take the session.
    await robot.stop({ graceMs: 5_000 });
    robots.splice(robots.indexOf(robot), 1);
    // Robot A has its own connection: closing it is a crash as far as NATS and the event store can tell.
    const ncA = await connectNats(server.url, 'robot-a');
    const storeA = await openEventStore(
      { EVENT_STORE: 'jetstream' },
      { nc: ncA, topology, logger: silentLogger },
    );
    await startRobot('robot-a', { nc: ncA, store: storeA });
    const sessionId = randomUUID();
    await openSession(sessionId);
    await driver.submit(sessionId, [
      { stepId: 'open', step: { action: 'navigate', url: `${origin.url}/login` } },
      { stepId: 'user', step: { action: 'fill', selector: '#user', secret: SECRET_NAME } },
    ]);
    const before = await untilEvent(sessionId, 'StepSucceeded', 'user');
    expect(ofType(before, 'SecretUsed', 'user')).toEqual([
      { name: SECRET_NAME, stepId: 'user', attempt: 1, replay: false, robotId: 'robot-a', epoch: 1 },
    ]);

    await startRobot('robot-b');
    await ncA.close();
    const recovered = await untilEvent(sessionId, 'SessionRecovered');
    expect(ofType(recovered, 'SessionRecovered')[0]).toMatchObject({
      replayedSteps: 1,
      robotId: 'robot-b',
      epoch: 2,
    });
    // The replay typed the secret again: a use of its own, by the new owner.
    expect(ofType(recovered, 'SecretUsed', 'user')).toEqual([
      { name: SECRET_NAME, stepId: 'user', attempt: 1, replay: false, robotId: 'robot-a', epoch: 1 },
      { name: SECRET_NAME, stepId: 'user', attempt: 1, replay: true, robotId: 'robot-b', epoch: 2 },
    ]);
    await closeSession(sessionId);

    const stored = await everythingStored();
    expect(stored.text).not.toContain(CANARY);
    expect(JSON.stringify(await driver.document(sessionId))).not.toContain(CANARY);
    expect(logLines.join('')).not.toContain(CANARY);
    expect(await metricsText()).not.toContain(CANARY);
    await storeA.close();
  });
});
