import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { jetstream, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connectNats,
  ensureWorkTopology,
  openEventStore,
  Registry,
  SessionCommandHandler,
  silentLogger,
  singleTenantAuthenticator,
  Topology,
  type EventStore,
  type NatsConnection,
  type RecordedSessionEvent,
  type SessionEvent,
  type StepSpec,
} from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';
import { buildApp } from '../../command-api/src/app.js';
import { html, page, startOrigin, type TestOrigin } from '../test/origin.js';
import { allowOrigin } from '../test/egress.js';
import type { AllowEntry } from './egress/allowList.js';
import { WorkDriver } from '../test/workDriver.js';
import { defaultBreakerSettings, type BreakerState } from './breakers.js';
import { resolveChromiumPath } from './browser.js';
import { createRobot, type Robot } from './robot.js';
import { capturingLogger } from '../test/logCapture.js';

const TENANT = 'tenant-a';
const ACTOR = { kind: 'api-key' as const, id: 'test-key' };
// Short, so that a step lasting several ack waits shows that progress signals keep its message in hand.
const ACK_WAIT_MS = 2_000;
const RESET_TIMEOUT_MS = 1_500;

type Data<T extends SessionEvent['type']> = Extract<SessionEvent, { type: T }>['data'];

describe('robot resilience: step retries, origin breakers, pause and cancel', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let store: EventStore;
  let handler: SessionCommandHandler;
  let driver: WorkDriver;
  let topology: Topology;
  let robot: Robot;
  let api: FastifyInstance;
  const origins: TestOrigin[] = [];
  /** The robot's egress allow-list: each origin a test starts is added to it (the proxy reads it at each request). */
  const egressAllow: AllowEntry[] = [];
  const registry = new Registry();
  const logLines: string[] = [];
  /** Every origin breaker state change, in order, with when it happened. */
  const transitions: Array<{ name: string; state: BreakerState; at: number }> = [];
  const onOpen = new Map<string, () => void>();

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'robot-resilience-test');
    jsm = await jetstreamManager(nc);
    topology = new Topology(uniquePrefix());
    store = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
    handler = new SessionCommandHandler({ store });
    driver = new WorkDriver({ js: jetstream(nc), topology, store, handler, tenantId: TENANT, actor: ACTOR });
    await ensureWorkTopology(nc, topology, { ackWaitMs: ACK_WAIT_MS, stepMaxDeliver: 15 });
    api = await buildApp({
      handler: new SessionCommandHandler({ store }),
      authenticator: singleTenantAuthenticator(TENANT),
      logger: silentLogger,
      registry: new Registry(),
      readiness: [],
    });
    const breakerSettings = defaultBreakerSettings();
    breakerSettings.origin = {
      timeoutMs: false,
      resetTimeoutMs: RESET_TIMEOUT_MS,
      errorThresholdPercentage: 50,
      volumeThreshold: 5,
    };
    breakerSettings.onStateChange = (name, state) => {
      transitions.push({ name, state, at: Date.now() });
      if (state === 'open') onOpen.get(name)?.();
    };
    robot = createRobot({
      nc,
      store,
      topology,
      robotId: 'robot-resilience',
      logger: capturingLogger(logLines, 'debug'),
      registry,
      chromiumPath: resolveChromiumPath(process.env.CHROMIUM_PATH),
      egress: { allow: egressAllow },
      maxSessions: 4,
      ackWaitMs: ACK_WAIT_MS,
      pullExpiresMs: 1_000,
      heartbeatIntervalMs: 500,
      pausePollMs: 1_000,
      breakerSettings,
    });
    await robot.start();
  });

  afterAll(async () => {
    if (process.env.ROBOT_TEST_LOG) writeFileSync(process.env.ROBOT_TEST_LOG, logLines.join(''));
    await robot?.stop({ graceMs: 5_000 });
    await api?.close();
    for (const origin of origins) await origin.close();
    await store?.close();
    await nc?.close();
    await server?.stop();
  });

  async function origin(respond: Parameters<typeof startOrigin>[0]): Promise<TestOrigin> {
    const started = await startOrigin(respond);
    origins.push(started);
    egressAllow.push(allowOrigin(started.url));
    return started;
  }

  async function openSession(
    sessionId: string,
    onStepFailure: 'pause' | 'fail' | 'continue' = 'pause',
  ): Promise<void> {
    const result = await handler.handle({
      ...driver.command('OpenSession', sessionId),
      labels: { suite: 'resilience' },
      browser: {},
      idleTimeoutMs: null,
      onStepFailure,
    });
    const opened = result.events[0]!;
    await driver.publishAssignment(sessionId, opened.eventId, { openedAt: opened.metadata.occurredAt });
  }

  async function closeSession(sessionId: string): Promise<void> {
    const result = await handler.handle({ ...driver.command('RequestClose', sessionId), reason: 'done' });
    await driver.publishClose(sessionId, result.events[0]!.eventId);
    await waitFor(
      async () => {
        const all = await driver.events(sessionId);
        return all.some((r) => r.event.type === 'SessionClosed') && robot.sessionsHeld() === 0;
      },
      { timeoutMs: 15_000, description: 'the session to close' },
    );
    expect(robot.openContexts()).toBe(0);
  }

  const ofType = <T extends SessionEvent['type']>(all: RecordedSessionEvent[], type: T, stepId?: string) =>
    all
      .filter((r) => r.event.type === type)
      .filter((r) => stepId === undefined || (r.event.data as { stepId?: string }).stepId === stepId)
      .map((r) => ({ data: r.event.data as Data<T>, at: Date.parse(r.metadata.occurredAt) }));

  const untilEvent = (sessionId: string, type: SessionEvent['type'], stepId: string, timeoutMs = 30_000) =>
    waitFor(
      async () => {
        const all = await driver.events(sessionId);
        return ofType(all, type, stepId).length > 0 && all;
      },
      { timeoutMs, description: `${type} of ${stepId}` },
    );

  it('waits for an open origin breaker without burning attempts, probes once, then goes on', async () => {
    let healthy = false;
    const target = await origin((path, res) => {
      if (!healthy) return html(res, 503, page('Down', 'unavailable'));
      html(res, 200, page('Up', '<h1 id="ok">ok</h1>'));
    });
    const breakerName = `origin:${target.url}`;
    // The origin recovers while its breaker is open: the half-open probe is what finds out.
    onOpen.set(breakerName, () => {
      healthy = true;
    });
    const sessionId = randomUUID();
    await openSession(sessionId);
    await driver.submit(sessionId, [
      {
        stepId: 'nav',
        step: {
          action: 'navigate',
          url: `${target.url}/`,
          retry: { maxAttempts: 10, backoff: 'fixed', initialMs: 100, maxMs: 100 },
        },
      },
      { stepId: 'check', step: { action: 'extractText', selector: '#ok' } },
    ]);
    const all = await untilEvent(sessionId, 'StepSucceeded', 'check');

    const mine = transitions.filter((t) => t.name === breakerName);
    expect(mine.map((t) => t.state)).toEqual(['closed', 'open', 'half_open', 'closed']);
    const [, opened, halfOpen, closed] = mine as [unknown, { at: number }, { at: number }, { at: number }];
    // Nothing reached the origin while its breaker was open, and exactly one probe while it was half-open.
    expect(target.requests.filter((r) => r.at >= opened.at && r.at < halfOpen.at)).toEqual([]);
    expect(target.requests.filter((r) => r.at >= halfOpen.at && r.at <= closed.at)).toHaveLength(1);
    // No attempt was burned while open: the failures before it, then the probe.
    const started = ofType(all, 'StepStarted', 'nav');
    expect(started.filter((s) => s.at >= opened.at && s.at < halfOpen.at)).toEqual([]);
    const failed = ofType(all, 'StepFailed', 'nav');
    expect(failed.length).toBeGreaterThanOrEqual(5);
    expect(failed.every((f) => f.data.final === false && f.data.error.code === 'NAVIGATION_FAILED')).toBe(
      true,
    );
    expect(started.map((s) => s.data.attempt)).toEqual(started.map((_, i) => i + 1));
    expect(started).toHaveLength(failed.length + 1);
    expect(target.requests).toHaveLength(started.length);
    expect(ofType(all, 'SessionWaiting')).toEqual([
      {
        data: expect.objectContaining({ reason: 'ORIGIN_UNAVAILABLE', origin: target.url, stepId: 'nav' }),
        at: expect.any(Number),
      },
    ]);
    expect(ofType(all, 'StepSucceeded', 'nav')[0]!.data.attempt).toBe(started.length);
    // The breaker's state is exported per state.
    const gauge = (await registry.getSingleMetric('rpa_robot_breaker_in_state')!.get()).values;
    expect(gauge).toContainEqual({ labels: { breaker: breakerName, state: 'closed' }, value: 1 });
    expect(gauge).toContainEqual({ labels: { breaker: breakerName, state: 'open' }, value: 0 });
    await closeSession(sessionId);
  });

  it('retries a poison step with backoff, dead-letters it, survives a broker restart, and runs it after an operator retry', async () => {
    let healthy = false;
    const target = await origin((path, res) => {
      if (path === '/poison' && !healthy) return html(res, 503, page('Down', 'unavailable'));
      html(res, 200, page('Fine', `<p id="path">${path}</p>`));
    });
    const sessionId = randomUUID();
    await openSession(sessionId);
    const poison: StepSpec = {
      action: 'navigate',
      url: `${target.url}/poison`,
      retry: { maxAttempts: 4, backoff: 'exponential', initialMs: 1_000, maxMs: 8_000 },
    };
    await driver.submit(sessionId, [{ stepId: 'poison', step: poison }]);
    const all = await untilEvent(sessionId, 'StepDeadLettered', 'poison', 40_000);

    const started = ofType(all, 'StepStarted', 'poison');
    const failed = ofType(all, 'StepFailed', 'poison');
    expect(started.map((s) => s.data.attempt)).toEqual([1, 2, 3, 4]);
    expect(target.count('/poison')).toBe(4);
    expect(failed.map((f) => f.data.final)).toEqual([false, false, false, true]);
    // Each redelivery came after the delay the decider recorded (JetStream's nak delay), within ±25%.
    for (let i = 0; i < 3; i++) {
      const retryInMs = failed[i]!.data.retryInMs!;
      const gap = started[i + 1]!.at - failed[i]!.at;
      expect(gap, `gap after attempt ${i + 1} (retryInMs ${retryInMs})`).toBeGreaterThanOrEqual(
        retryInMs * 0.75,
      );
      expect(gap, `gap after attempt ${i + 1} (retryInMs ${retryInMs})`).toBeLessThanOrEqual(
        retryInMs * 1.25,
      );
    }
    expect(ofType(all, 'StepDeadLettered')).toEqual([
      {
        data: expect.objectContaining({ stepId: 'poison', reason: 'attempts_exhausted', attempts: 4 }),
        at: expect.any(Number),
      },
    ]);
    expect(ofType(all, 'SessionPaused').map((p) => p.data)).toEqual([
      { reason: 'step_failed', stepId: 'poison' },
    ]);
    expect((await driver.document(sessionId))?.status).toBe('paused');

    // A broker restart on the same store: the terminated step message must not come back.
    const consumer = topology.stepsConsumer(sessionId);
    const before = await waitFor(
      async () => {
        const info = await jsm.consumers.info(topology.workStream, consumer);
        return info.num_ack_pending === 0 && info.num_waiting > 0 && info;
      },
      { timeoutMs: 10_000, description: 'the poison message to be settled' },
    );
    // Four deliveries of the one message, nothing else.
    expect(before.delivered.consumer_seq).toBe(4);
    await server.restart!();
    // Positive signal: the robot reconnected and its session runner is pulling from the consumer again.
    const after = await waitFor(
      async () => {
        const info = await jsm.consumers.info(topology.workStream, consumer);
        return info.num_waiting > 0 && info;
      },
      { timeoutMs: 20_000, description: 'the robot to pull again after the restart' },
    );
    expect(after.delivered.consumer_seq).toBe(4);
    expect(after.num_ack_pending).toBe(0);
    expect(after.num_pending).toBe(0);
    expect(after.num_redelivered).toBe(0);
    expect(ofType(await driver.events(sessionId), 'StepStarted', 'poison')).toHaveLength(4);
    expect(target.count('/poison')).toBe(4);

    // The origin is fixed; an operator retries the step through the API, and the session goes on.
    healthy = true;
    const retried = await api.inject({
      method: 'POST',
      url: `/v1/sessions/${sessionId}/steps/poison/retry`,
      payload: {},
    });
    expect(retried.statusCode, retried.body).toBe(202);
    expect(retried.json()).toEqual({ sessionId, stepId: 'poison', status: 'open' });
    // The dispatcher's part: the retry message (with the event's id) and the notice.
    const retriedEvent = (await driver.events(sessionId)).find((r) => r.event.type === 'StepRetried')!;
    const { stepId, seq } = retriedEvent.event.data as Data<'StepRetried'>;
    await driver.publishRetry(sessionId, { stepId, seq }, retriedEvent.eventId);
    await driver.publishNotice(nc, sessionId, 'StepRetried');
    await untilEvent(sessionId, 'StepSucceeded', 'poison');
    await driver.submit(sessionId, [{ stepId: 'next', step: { action: 'extractText', selector: '#path' } }]);
    const done = await untilEvent(sessionId, 'StepSucceeded', 'next');
    expect(ofType(done, 'StepStarted', 'poison').map((s) => s.data.attempt)).toEqual([1, 2, 3, 4, 5]);
    expect(ofType(done, 'StepSucceeded', 'next')[0]!.data.output).toEqual({ kind: 'text', text: '/poison' });
    expect(target.count('/poison')).toBe(5);
    // Since the restart: the retry message and the next step, each delivered once; the poison message never again.
    expect((await jsm.consumers.info(topology.workStream, consumer)).delivered.consumer_seq).toBe(6);
    const doc = await driver.document(sessionId);
    expect(doc?.status).toBe('open');
    expect(doc?.steps.map((s) => [s.stepId, s.status])).toEqual([
      ['poison', 'succeeded'],
      ['next', 'succeeded'],
    ]);
    await closeSession(sessionId);
  });

  it('runs a re-queued earlier step before the step in hand; its retry message is then acked unrun', async () => {
    let healthy = false;
    const target = await origin((path, res) => {
      if (path === '/flaky' && !healthy) return html(res, 503, page('Down', 'unavailable'));
      html(res, 200, page('Fine', `<p id="path">${path}</p>`));
    });
    const sessionId = randomUUID();
    await openSession(sessionId, 'continue');
    await driver.submit(sessionId, [
      {
        stepId: 'flaky',
        step: {
          action: 'navigate',
          url: `${target.url}/flaky`,
          retry: { maxAttempts: 1, backoff: 'fixed', initialMs: 100, maxMs: 100 },
        },
      },
    ]);
    await untilEvent(sessionId, 'StepDeadLettered', 'flaky');
    healthy = true;
    const result = await handler.handle({ ...driver.command('RetryStep', sessionId), stepId: 'flaky' });
    const retried = result.events[0]!;
    expect(retried.event.type).toBe('StepRetried');
    // The later step's message arrives before the retry message.
    await driver.submit(sessionId, [{ stepId: 'later', step: { action: 'extractText', selector: '#path' } }]);
    await untilEvent(sessionId, 'StepSucceeded', 'later');
    await driver.publishRetry(sessionId, { stepId: 'flaky', seq: 1 }, retried.eventId);
    await waitFor(
      async () => {
        const info = await jsm.consumers.info(topology.workStream, topology.stepsConsumer(sessionId));
        return info.num_pending === 0 && info.num_ack_pending === 0 && info.delivered.stream_seq > 0;
      },
      { timeoutMs: 10_000, description: 'the retry message to be acked' },
    );
    const all = await driver.events(sessionId);
    const order = all
      .filter((r) => r.event.type === 'StepStarted' || r.event.type === 'StepSucceeded')
      .map((r) => `${r.event.type}:${(r.event.data as { stepId: string }).stepId}`);
    expect(order).toEqual([
      'StepStarted:flaky',
      'StepStarted:flaky',
      'StepSucceeded:flaky',
      'StepStarted:later',
      'StepSucceeded:later',
    ]);
    expect(ofType(all, 'StepSucceeded', 'later')[0]!.data.output).toEqual({ kind: 'text', text: '/flaky' });
    expect(target.count('/flaky')).toBe(2);
    await closeSession(sessionId);
  });

  it('keeps a step that runs for three ack waits in hand: no redelivery', async () => {
    const lateMs = 3 * ACK_WAIT_MS;
    const target = await origin((_path, res) =>
      html(
        res,
        200,
        page(
          'Slow',
          `<script>setTimeout(() => { const p = document.createElement('p'); p.id = 'late'; p.textContent = 'late'; document.body.append(p); }, ${lateMs});</script>`,
        ),
      ),
    );
    const sessionId = randomUUID();
    await openSession(sessionId);
    await driver.submit(sessionId, [
      { stepId: 'nav', step: { action: 'navigate', url: `${target.url}/` } },
      { stepId: 'slow', step: { action: 'waitFor', selector: '#late', timeoutMs: lateMs * 3 } },
    ]);
    const all = await untilEvent(sessionId, 'StepSucceeded', 'slow');
    const started = ofType(all, 'StepStarted', 'slow');
    expect(started).toHaveLength(1);
    const succeeded = ofType(all, 'StepSucceeded', 'slow')[0]!;
    expect(succeeded.data.durationMs).toBeGreaterThanOrEqual(lateMs - 1_000);
    const info = await jsm.consumers.info(topology.workStream, topology.stepsConsumer(sessionId));
    // Two messages, each delivered once.
    expect(info.delivered.consumer_seq).toBe(2);
    expect(info.num_redelivered).toBe(0);
    await closeSession(sessionId);
  });

  it('holds the next step of a paused session and runs it once resumed', async () => {
    const target = await origin((path, res) => html(res, 200, page('Fine', `<p id="path">${path}</p>`)));
    const sessionId = randomUUID();
    await openSession(sessionId);
    await driver.submit(sessionId, [{ stepId: 'p1', step: { action: 'navigate', url: `${target.url}/a` } }]);
    await untilEvent(sessionId, 'StepSucceeded', 'p1');
    await handler.handle(driver.command('PauseSession', sessionId));
    await driver.publishNotice(nc, sessionId, 'SessionPaused');
    const holdsBefore = logLines.filter((l) => l.includes(sessionId) && l.includes('holding its next step'));
    expect(holdsBefore).toEqual([]);
    await driver.submit(sessionId, [{ stepId: 'p2', step: { action: 'extractText', selector: '#path' } }]);
    // Positive signal: StartStep was refused and the robot holds the message (in progress, not redelivered).
    await waitFor(() => logLines.some((l) => l.includes(sessionId) && l.includes('holding its next step')), {
      timeoutMs: 10_000,
      description: 'the robot to hold the step of the paused session',
    });
    const consumer = topology.stepsConsumer(sessionId);
    expect((await jsm.consumers.info(topology.workStream, consumer)).num_ack_pending).toBe(1);
    expect(ofType(await driver.events(sessionId), 'StepStarted', 'p2')).toEqual([]);
    expect((await driver.document(sessionId))?.status).toBe('paused');
    expect(robot.openContexts()).toBe(1);

    await handler.handle({ ...driver.command('ResumeSession', sessionId) });
    await driver.publishNotice(nc, sessionId, 'SessionResumed');
    const all = await untilEvent(sessionId, 'StepSucceeded', 'p2');
    const types = all.map((r) => r.event.type);
    expect(types.indexOf('SessionPaused')).toBeLessThan(types.indexOf('SessionResumed'));
    expect(types.indexOf('SessionResumed')).toBeLessThan(
      all.findIndex((r) => r.event.type === 'StepStarted' && r.event.data.stepId === 'p2'),
    );
    expect(ofType(all, 'StepStarted', 'p2')).toHaveLength(1);
    const doc = await driver.document(sessionId);
    expect(doc).toMatchObject({ status: 'open', pause: null });
    expect(doc?.steps.map((s) => [s.stepId, s.status])).toEqual([
      ['p1', 'succeeded'],
      ['p2', 'succeeded'],
    ]);
    expect(robot.openContexts()).toBe(1);
    await closeSession(sessionId);
  });

  it('aborts a running step on cancellation: nothing reported, context closed, session cleaned up', async () => {
    const target = await origin((path, res) => html(res, 200, page('Fine', `<p id="path">${path}</p>`)));
    const sessionId = randomUUID();
    await openSession(sessionId);
    await driver.submit(sessionId, [
      { stepId: 'c1', step: { action: 'navigate', url: `${target.url}/` } },
      // Far longer than the test waits: only the cancellation can end it in time.
      { stepId: 'c2', step: { action: 'waitFor', selector: '#never', timeoutMs: 120_000 } },
    ]);
    await untilEvent(sessionId, 'StepStarted', 'c2');
    expect(robot.openContexts()).toBe(1);
    await handler.handle({ ...driver.command('CancelSession', sessionId), reason: 'no longer needed' });
    await driver.publishNotice(nc, sessionId, 'SessionCancelled');
    await waitFor(() => robot.sessionsHeld() === 0 && robot.openContexts() === 0, {
      timeoutMs: 15_000,
      description: 'the robot to abandon the step and close the context',
    });
    const all = await driver.events(sessionId);
    expect(ofType(all, 'StepSucceeded', 'c2')).toEqual([]);
    expect(ofType(all, 'StepFailed', 'c2')).toEqual([]);
    expect(all.at(-1)!.event.type).toBe('SessionCancelled');
    const doc = await driver.document(sessionId);
    expect(doc?.status).toBe('cancelled');
    expect(doc?.steps.find((s) => s.stepId === 'c1')?.status).toBe('succeeded');
    // The read model shows the interrupted step cancelled, not failed: no result was ever reported for it.
    expect(doc?.steps.find((s) => s.stepId === 'c2')?.status).toBe('cancelled');
    expect(doc?.stepCounts).toMatchObject({ succeeded: 1, cancelled: 1, failed: 0 });
    // Cleaned up like a close: the session's step consumer is gone.
    await expect(
      jsm.consumers.info(topology.workStream, topology.stepsConsumer(sessionId)),
    ).rejects.toThrow();
  });
});
