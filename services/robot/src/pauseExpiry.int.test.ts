import { randomUUID } from 'node:crypto';
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
} from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';
import { html, page, startOrigin, type TestOrigin } from '../test/origin.js';
import { allowOrigins } from '../test/egress.js';
import { WorkDriver } from '../test/workDriver.js';
import { resolveChromiumPath } from './browser.js';
import { createRobot, type Robot } from './robot.js';

const TENANT = 'tenant-a';
const ACK_WAIT_MS = 2_000;
const MAX_SESSION_DURATION_MS = 4_000;

describe('a paused session held past the maximum session duration', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let store: EventStore;
  let driver: WorkDriver;
  let handler: SessionCommandHandler;
  let topology: Topology;
  let robot: Robot;
  let origin: TestOrigin;

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'robot-pause-expiry-test');
    jsm = await jetstreamManager(nc);
    topology = new Topology(uniquePrefix());
    store = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
    handler = new SessionCommandHandler({ store });
    driver = new WorkDriver({
      js: jetstream(nc),
      topology,
      store,
      handler,
      tenantId: TENANT,
      actor: { kind: 'api-key', id: 'test-key' },
    });
    await ensureWorkTopology(nc, topology, { ackWaitMs: ACK_WAIT_MS, stepMaxDeliver: 15 });
    origin = await startOrigin((path, res) => html(res, 200, page('Fine', `<p id="path">${path}</p>`)));
    robot = createRobot({
      nc,
      store,
      topology,
      robotId: 'robot-pause-expiry',
      logger: silentLogger,
      registry: new Registry(),
      chromiumPath: resolveChromiumPath(process.env.CHROMIUM_PATH),
      egress: { allow: allowOrigins(origin.url) },
      maxSessions: 1,
      ackWaitMs: ACK_WAIT_MS,
      pullExpiresMs: 1_000,
      maxSessionDurationMs: MAX_SESSION_DURATION_MS,
      // Far beyond the test: only the session's deadline can wake the held step.
      pausePollMs: 600_000,
    });
    await robot.start();
  });

  afterAll(async () => {
    await robot?.stop({ graceMs: 5_000 });
    await origin?.close();
    await store?.close();
    await nc?.close();
    await server?.stop();
  });

  it('expires while its next step is held: context closed, step never started, work removed', async () => {
    const sessionId = randomUUID();
    const opened = await handler.handle({
      ...driver.command('OpenSession', sessionId),
      labels: {},
      browser: {},
      idleTimeoutMs: null,
    });
    await driver.publishAssignment(sessionId, opened.events[0]!.eventId);
    await driver.submit(sessionId, [{ stepId: 'a', step: { action: 'navigate', url: `${origin.url}/a` } }]);
    await waitFor(
      async () => (await driver.events(sessionId)).some((r) => r.event.type === 'StepSucceeded'),
      { timeoutMs: 15_000, description: 'the first step to succeed' },
    );
    await handler.handle(driver.command('PauseSession', sessionId));
    await driver.submit(sessionId, [{ stepId: 'b', step: { action: 'extractText', selector: '#path' } }]);

    const all = await waitFor(
      async () => {
        const recorded = await driver.events(sessionId);
        return recorded.some((r) => r.event.type === 'SessionExpired') && recorded;
      },
      { timeoutMs: 20_000, description: 'the paused session to expire' },
    );
    expect(all.find((r) => r.event.type === 'SessionExpired')!.event.data).toMatchObject({
      reason: 'max_duration',
    });
    expect(
      all
        .filter((r) => r.event.type === 'StepStarted')
        .map((r) => (r.event.data as { stepId: string }).stepId),
    ).toEqual(['a']);
    await waitFor(() => robot.sessionsHeld() === 0 && robot.openContexts() === 0, {
      timeoutMs: 10_000,
      description: 'the robot to let the expired session go',
    });
    expect((await driver.document(sessionId))?.status).toBe('expired');
    await expect(
      jsm.consumers.info(topology.workStream, topology.stepsConsumer(sessionId)),
    ).rejects.toThrow();
  });
});
