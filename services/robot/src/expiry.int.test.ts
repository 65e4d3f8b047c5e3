import { randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CommandRejectedError,
  connectNats,
  ensureWorkTopology,
  isNotFound,
  openEventStore,
  Registry,
  SessionCommandHandler,
  silentLogger,
  Topology,
  type EventStore,
  type NatsConnection,
} from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';
import { startTestSite, type TestSite } from '../test/testSite.js';
import { allowOrigins } from '../test/egress.js';
import { WorkDriver } from '../test/workDriver.js';
import { resolveChromiumPath } from './browser.js';
import { createRobot, type Robot } from './robot.js';

const TENANT = 'tenant-x';
const ACTOR = { kind: 'api-key' as const, id: 'test-key' };
const ACK_WAIT_MS = 5_000;
const IDLE_TIMEOUT_MS = 1_500;
// Well past when the idle session expires, so that each test sees only the limit it is about.
const MAX_SESSION_DURATION_MS = 8_000;

describe('a session idle past its idle timeout', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let store: EventStore;
  let handler: SessionCommandHandler;
  let topology: Topology;
  let site: TestSite;
  let robot: Robot | null = null;
  let driver: WorkDriver;

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'expiry-test');
    js = jetstream(nc);
    jsm = await jetstreamManager(nc);
    topology = new Topology(uniquePrefix());
    store = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
    handler = new SessionCommandHandler({ store });
    driver = new WorkDriver({ js, topology, store, handler, tenantId: TENANT, actor: ACTOR });
    await ensureWorkTopology(nc, topology, { ackWaitMs: ACK_WAIT_MS, stepMaxDeliver: 5 });
    site = await startTestSite();
    robot = createRobot({
      nc,
      store,
      topology,
      robotId: 'robot-expiry',
      logger: silentLogger,
      registry: new Registry(),
      chromiumPath: resolveChromiumPath(process.env.CHROMIUM_PATH),
      egress: { allow: allowOrigins(site.url) },
      maxSessions: 2,
      ackWaitMs: ACK_WAIT_MS,
      // The shortest pull JetStream allows: the idle check runs between pulls.
      pullExpiresMs: 1_000,
      retryDelayMs: 500,
      heartbeatIntervalMs: 200,
      maxSessionDurationMs: MAX_SESSION_DURATION_MS,
    });
    await robot.start();
  });
  afterAll(async () => {
    await robot?.stop({ graceMs: 2_000 });
    await site?.close();
    await store?.close();
    await nc?.close();
    await server?.stop();
  });

  async function stepConsumerGone(sessionId: string): Promise<boolean> {
    try {
      await jsm.consumers.info(topology.workStream, topology.stepsConsumer(sessionId));
      return false;
    } catch (error) {
      if (isNotFound(error)) return true;
      throw error;
    }
  }

  /** Opens a session with one navigate step and publishes its work, as the dispatcher would. */
  async function openWithOneStep(sessionId: string, idleTimeoutMs: number | null): Promise<void> {
    const opened = await handler.handle({
      ...driver.command('OpenSession', sessionId),
      labels: {},
      browser: {},
      idleTimeoutMs,
    });
    await driver.publishAssignment(sessionId, opened.events[0]!.eventId);
    await driver.submit(sessionId, [
      { stepId: 'open', step: { action: 'navigate', url: `${site.url}/app` } },
    ]);
  }

  it('is expired by its owner: context closed, step consumer removed, and no further steps accepted', async () => {
    const sessionId = `s-${randomUUID()}`;
    await openWithOneStep(sessionId, IDLE_TIMEOUT_MS);

    const all = await waitFor(
      async () => {
        const recorded = await driver.events(sessionId);
        return recorded.some((r) => r.event.type === 'SessionExpired') ? recorded : null;
      },
      { timeoutMs: 30_000, description: `SessionExpired in ${sessionId}` },
    );
    const types = all.map((r) => r.event.type);
    expect(types.indexOf('StepSucceeded')).toBeGreaterThan(-1);
    expect(types.indexOf('StepSucceeded')).toBeLessThan(types.indexOf('SessionExpired'));
    const expired = all.find((r) => r.event.type === 'SessionExpired')!.event;
    expect(expired).toMatchObject({
      type: 'SessionExpired',
      data: { reason: 'idle', robotId: 'robot-expiry', epoch: 1 },
    });
    if (expired.type === 'SessionExpired') expect(expired.data.idleMs).toBeGreaterThan(IDLE_TIMEOUT_MS);

    // The run ends after the expiry is recorded: wait for the session to be released.
    await waitFor(async () => (robot!.sessionsHeld() === 0 ? true : null), {
      timeoutMs: 10_000,
      description: 'the robot releases the session',
    });
    expect(robot!.openContexts()).toBe(0);
    expect(await stepConsumerGone(sessionId)).toBe(true);

    const refused = await handler
      .handle({
        ...driver.command('SubmitSteps', sessionId),
        steps: [{ stepId: 'late', step: { action: 'navigate', url: `${site.url}/app` } }],
      })
      .then(
        () => null,
        (error: unknown) => error,
      );
    expect(refused).toBeInstanceOf(CommandRejectedError);
    expect((refused as CommandRejectedError).code).toBe('ILLEGAL_TRANSITION');
  });

  it('is expired past the maximum session duration even without an idle timeout', async () => {
    const sessionId = `s-${randomUUID()}`;
    await openWithOneStep(sessionId, null);

    const all = await waitFor(
      async () => {
        const recorded = await driver.events(sessionId);
        return recorded.some((r) => r.event.type === 'SessionExpired') ? recorded : null;
      },
      { timeoutMs: 30_000, description: `SessionExpired in ${sessionId}` },
    );
    const types = all.map((r) => r.event.type);
    expect(types.filter((t) => t === 'StepSucceeded')).toHaveLength(1);
    expect(all.find((r) => r.event.type === 'SessionExpired')!.event).toMatchObject({
      type: 'SessionExpired',
      data: { reason: 'max_duration', robotId: 'robot-expiry' },
    });
    await waitFor(async () => (robot!.sessionsHeld() === 0 ? true : null), {
      timeoutMs: 10_000,
      description: 'the robot releases the session',
    });
    expect(robot!.openContexts()).toBe(0);
    expect(await stepConsumerGone(sessionId)).toBe(true);
  });
});
