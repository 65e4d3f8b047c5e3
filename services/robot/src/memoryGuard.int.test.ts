import { randomUUID } from 'node:crypto';
import { jetstream } from '@nats-io/jetstream';
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
} from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';
import { startTestSite, type TestSite } from '../test/testSite.js';
import { allowOrigins } from '../test/egress.js';
import { WorkDriver } from '../test/workDriver.js';
import { resolveChromiumPath } from './browser.js';
import { browserMemoryBytes } from './browserMemory.js';
import { createRobot, type Robot } from './robot.js';
import { capturingLogger } from '../test/logCapture.js';

const TENANT = 'tenant-m';
const ACK_WAIT_MS = 3_000;

type DataOf<T extends SessionEvent['type']> = Extract<SessionEvent, { type: T }>['data'];

describe('the browser memory guard on a real robot', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let store: EventStore;
  let handler: SessionCommandHandler;
  let topology: Topology;
  let site: TestSite;
  let driver: WorkDriver;
  let robot: Robot | undefined;

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'memory-guard-test');
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
    await ensureWorkTopology(nc, topology, { ackWaitMs: ACK_WAIT_MS, stepMaxDeliver: 5 });
    site = await startTestSite();
  });
  afterAll(async () => {
    await robot?.stop({ graceMs: 2_000 });
    await site?.close();
    await store?.close();
    await nc?.close();
    await server?.stop();
  });

  async function waitForEvent<T extends SessionEvent['type']>(
    sessionId: string,
    type: T,
    where: (data: DataOf<T>) => boolean = () => true,
  ): Promise<{ data: DataOf<T>; all: RecordedSessionEvent[] }> {
    return waitFor(
      async () => {
        const all = await driver.events(sessionId);
        for (const { event } of all)
          if (event.type === type && where(event.data as DataOf<T>))
            return { data: event.data as DataOf<T>, all };
        return null;
      },
      { timeoutMs: 30_000, description: `${type} in ${sessionId}` },
    );
  }

  it('restarts a browser past its limit; the session it held is recovered and its later steps succeed', async () => {
    const registry = new Registry();
    const logLines: string[] = [];
    // The limit is one byte, but the browser is measured (from /proc, as in production) only once armed: the guard
    // fires exactly once, at a moment the test chooses.
    let armed = false;
    robot = createRobot({
      nc,
      store,
      topology,
      robotId: 'robot-m',
      logger: capturingLogger(logLines),
      registry,
      chromiumPath: resolveChromiumPath(process.env.CHROMIUM_PATH),
      egress: { allow: allowOrigins(site.url) },
      maxSessions: 2,
      ackWaitMs: ACK_WAIT_MS,
      pullExpiresMs: 1_000,
      retryDelayMs: 300,
      heartbeatIntervalMs: 200,
      browserMemoryLimitBytes: 1,
      browserMemory: async () => {
        if (!armed) return null;
        armed = false;
        return browserMemoryBytes(process.pid);
      },
    });
    await robot.start();

    const sessionId = `s-${randomUUID()}`;
    const opened = await handler.handle({
      ...driver.command('OpenSession', sessionId),
      labels: {},
      browser: {},
      idleTimeoutMs: null,
    });
    await driver.publishAssignment(sessionId, opened.events[0]!.eventId);
    await driver.submit(sessionId, [
      { stepId: 'open', step: { action: 'navigate', url: `${site.url}/app` } },
      { stepId: 'inc', step: { action: 'click', selector: '#inc' } },
    ]);
    await waitForEvent(sessionId, 'StepSucceeded', (d) => d.stepId === 'inc');
    expect(robot.openContexts()).toBe(1);

    armed = true;
    const restarts = () => registry.metrics();
    await waitFor(
      async () => (await restarts()).includes('rpa_robot_browser_restarts_total{reason="memory"} 1'),
      { timeoutMs: 10_000, description: 'the memory guard to restart the browser' },
    );
    // The new browser is up (readiness answers) and holds none of the old contexts.
    await waitFor(
      async () => {
        const check = robot!.readinessChecks().find((c) => c.name === 'browser')!;
        return check
          .check()
          .then(() => robot!.openContexts() === 0)
          .catch(() => false);
      },
      { timeoutMs: 10_000, description: 'the relaunched browser' },
    );

    // The next step finds its page gone: the session is handed back, taken again and rebuilt from its restore point.
    await driver.submit(sessionId, [
      { stepId: 'count', step: { action: 'extractText', selector: '#count' } },
    ]);
    const recovered = await waitForEvent(sessionId, 'SessionRecovered');
    expect(recovered.data).toMatchObject({
      fromCheckpoint: { afterStepSeq: 1 },
      // The click on #inc: the counter lives in the page's memory, which no restore point holds.
      replayedSteps: 1,
      // The robot takes its own session back: it still owns it, so the epoch stays.
      robotId: 'robot-m',
    });
    const after = await waitForEvent(sessionId, 'StepSucceeded', (d) => d.stepId === 'count');
    const count = after.all.find((r) => r.event.type === 'StepSucceeded' && r.event.data.stepId === 'count');
    expect(count?.event.type === 'StepSucceeded' && count.event.data.output).toEqual({
      kind: 'text',
      text: '1',
    });
    const succeeded = after.all.flatMap((r) =>
      r.event.type === 'StepSucceeded' ? [r.event.data.stepId] : [],
    );
    expect(succeeded).toEqual(['open', 'inc', 'count']);

    expect(await restarts()).toContain('rpa_robot_browser_restarts_total{reason="memory"} 1');
    const warned = logLines
      .map((l) => JSON.parse(l) as { msg: string; memoryBytes?: number; limitBytes?: number })
      .find((l) => l.msg.startsWith('browser memory over its limit'));
    expect(warned?.limitBytes).toBe(1);
    expect(warned?.memoryBytes).toBeGreaterThan(1);
  });
});
