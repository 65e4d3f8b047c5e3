import { randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm } from '@nats-io/kv';
import { Objm } from '@nats-io/obj';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connectNats,
  ensureWorkTopology,
  isNotFound,
  openEventStore,
  Registry,
  RobotHeartbeat,
  SessionCommandHandler,
  silentLogger,
  Topology,
  type EventStore,
  type NatsConnection,
  type RecordedSessionEvent,
  type SessionCommand,
  type SessionEvent,
  type StepSpec,
} from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';
import { APP_COOKIE, startTestSite, type TestSite } from '../test/testSite.js';
import { allowOrigins } from '../test/egress.js';
import { WorkDriver } from '../test/workDriver.js';
import { resolveChromiumPath } from './browser.js';
import { NatsRestorePointStore, RESTORE_POINT_MAX_AGE_MS } from './restorePoints.js';
import { createRobot, type Robot } from './robot.js';
import { capturingLogger } from '../test/logCapture.js';

const TENANT = 'tenant-r';
const ACTOR = { kind: 'api-key' as const, id: 'test-key' };
// Short, so that a crashed robot's session is offered again soon; progress signals keep live work held.
const ACK_WAIT_MS = 3_000;

type Step = { stepId: string; step: StepSpec };
type DataOf<T extends SessionEvent['type']> = Extract<SessionEvent, { type: T }>['data'];

describe('recovery of sessions taken over from another robot', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let jsm: JetStreamManager;
  let store: EventStore;
  let handler: SessionCommandHandler;
  let topology: Topology;
  let site: TestSite;
  let restorePoints: NatsRestorePointStore;
  const robots: Robot[] = [];
  let driver: WorkDriver;
  const logLines: string[] = [];

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'recovery-test');
    js = jetstream(nc);
    jsm = await jetstreamManager(nc);
    topology = new Topology(uniquePrefix());
    store = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
    handler = new SessionCommandHandler({ store });
    driver = new WorkDriver({ js, topology, store, handler, tenantId: TENANT, actor: ACTOR });
    await ensureWorkTopology(nc, topology, { ackWaitMs: ACK_WAIT_MS, stepMaxDeliver: 5 });
    restorePoints = await NatsRestorePointStore.open(nc, topology, { readTimeoutMs: 2_000 });
    site = await startTestSite();
  });
  afterAll(async () => {
    for (const robot of robots) await robot.stop({ graceMs: 2_000 });
    await site?.close();
    await store?.close();
    await nc?.close();
    await server?.stop();
  });

  async function startRobot(robotId: string, conn = { nc, store }): Promise<Robot> {
    const robot = createRobot({
      nc: conn.nc,
      store: conn.store,
      topology,
      robotId,
      logger: capturingLogger(logLines, 'debug'),
      registry: new Registry(),
      chromiumPath: resolveChromiumPath(process.env.CHROMIUM_PATH),
      egress: { allow: allowOrigins(site.url) },
      maxSessions: 2,
      ackWaitMs: ACK_WAIT_MS,
      pullExpiresMs: 1_000,
      retryDelayMs: 500,
      heartbeatIntervalMs: 200,
    });
    robots.push(robot);
    await robot.start();
    return robot;
  }

  async function openSession(): Promise<string> {
    const sessionId = `s-${randomUUID()}`;
    const result = await handler.handle({
      ...driver.command('OpenSession', sessionId),
      labels: {},
      browser: { viewport: { width: 1024, height: 700 }, locale: 'en-US' },
      idleTimeoutMs: null,
    });
    await driver.publishAssignment(sessionId, result.events[0]!.eventId);
    return sessionId;
  }

  const submit = (sessionId: string, steps: Step[]) => driver.submit(sessionId, steps);
  const events = (sessionId: string) => driver.events(sessionId);
  const command = <T extends SessionCommand['type']>(type: T, sessionId: string) =>
    driver.command(type, sessionId);

  /** Waits for an event of the type (and matching `where`) in the session's stream; resolves with all events. */
  async function waitForEvent<T extends SessionEvent['type']>(
    sessionId: string,
    type: T,
    where: (data: DataOf<T>) => boolean = () => true,
    timeoutMs = 30_000,
  ): Promise<{ data: DataOf<T>; all: RecordedSessionEvent[] }> {
    return waitFor(
      async () => {
        const all = await events(sessionId);
        for (const { event } of all) {
          if (event.type === type && where(event.data as DataOf<T>))
            return { data: event.data as DataOf<T>, all };
        }
        return null;
      },
      { timeoutMs, description: `${type} in ${sessionId}` },
    );
  }

  const succeededStep = (stepId: string) => (d: { stepId?: string }) => d.stepId === stepId;

  function outputOf(all: RecordedSessionEvent[], stepId: string): unknown {
    const found = all.find((r) => r.event.type === 'StepSucceeded' && r.event.data.stepId === stepId);
    return found?.event.type === 'StepSucceeded' ? found.event.data.output : undefined;
  }

  async function assignmentsIdle(): Promise<boolean> {
    const info = await jsm.consumers.info(topology.workStream, topology.assignmentsConsumer);
    return info.num_ack_pending === 0 && info.num_pending === 0;
  }

  async function restorePointGone(key: string): Promise<boolean> {
    const info = await (await new Objm(nc).open(topology.restorePointsBucket)).info(key);
    return info === null || info.deleted;
  }

  async function heartbeatOf(robotId: string): Promise<RobotHeartbeat | null> {
    const kv = await new Kvm(nc).open(topology.robotsBucket);
    const entry = await kv.get(topology.robotKey(robotId));
    return entry && entry.operation === 'PUT' ? RobotHeartbeat.parse(entry.json()) : null;
  }

  let robotB: Robot;

  it('rebuilds a crashed robot’s session from its last document boundary, replaying only the tail', async () => {
    // Robot A has its own connection: closing it is a crash as far as NATS and the event store can tell.
    const ncA = await connectNats(server.url, 'robot-a');
    const storeA = await openEventStore(
      { EVENT_STORE: 'jetstream' },
      { nc: ncA, topology, logger: silentLogger },
    );
    const robotA = await startRobot('robot-a', { nc: ncA, store: storeA });
    const sessionId = await openSession();
    await submit(sessionId, [
      { stepId: 'open', step: { action: 'navigate', url: `${site.url}/app` } },
      { stepId: 'add1', step: { action: 'click', selector: '#add' } },
      { stepId: 'push', step: { action: 'click', selector: '#push' } },
      { stepId: 'next', step: { action: 'click', selector: '#next' } },
      { stepId: 'add2', step: { action: 'click', selector: '#add' } },
      { stepId: 'inc', step: { action: 'click', selector: '#inc' } },
      { stepId: 'read', step: { action: 'extractText', selector: '#items' } },
    ]);
    const before = await waitForEvent(sessionId, 'StepSucceeded', succeededStep('read'));
    expect(outputOf(before.all, 'read')).toEqual({ kind: 'text', text: '2' });
    const checkpoints = before.all.flatMap((r) =>
      r.event.type === 'SessionCheckpointed' ? [r.event.data] : [],
    );
    // The history-API URL change (push) is no document boundary; the link to the next page is.
    expect(checkpoints).toEqual([
      {
        afterStepSeq: 1,
        stateKey: topology.restorePointKey(sessionId, 1, 1),
        url: `${site.url}/app`,
        trigger: 'document',
        robotId: 'robot-a',
        epoch: 1,
      },
      {
        afterStepSeq: 4,
        stateKey: topology.restorePointKey(sessionId, 4, 1),
        url: `${site.url}/app?page=2`,
        trigger: 'document',
        robotId: 'robot-a',
        epoch: 1,
      },
    ]);
    // The newest restore point holds the cookie and the storage as they were after step 4; the older one is gone.
    const point = await restorePoints.get(topology.restorePointKey(sessionId, 4, 1));
    expect(point?.cookies).toContainEqual(expect.objectContaining(APP_COOKIE));
    expect(point?.origins).toEqual([{ origin: site.url, localStorage: [{ name: 'items', value: '[1]' }] }]);
    await waitFor(() => restorePointGone(topology.restorePointKey(sessionId, 1, 1)), {
      description: 'the superseded restore point to be deleted',
    });

    const bucket = await (await new Objm(nc).open(topology.restorePointsBucket)).status();
    expect(bucket.ttl).toBe(RESTORE_POINT_MAX_AGE_MS * 1_000_000);

    robotB = await startRobot('robot-b');
    await ncA.close();
    const recovered = await waitForEvent(sessionId, 'SessionRecovered');
    expect(recovered.data).toMatchObject({
      fromCheckpoint: { afterStepSeq: 4, stateKey: topology.restorePointKey(sessionId, 4, 1) },
      // add2 and inc; read only reads the page.
      replayedSteps: 2,
      skippedSteps: 0,
      robotId: 'robot-b',
      epoch: 2,
    });

    await submit(sessionId, [
      { stepId: 'items', step: { action: 'extractText', selector: '#items' } },
      { stepId: 'count', step: { action: 'extractText', selector: '#count' } },
    ]);
    const after = await waitForEvent(sessionId, 'StepSucceeded', succeededStep('count'));
    // Storage restored once (not re-applied by a replay of add1) plus add2 replayed; the counter rebuilt by replay.
    expect(outputOf(after.all, 'items')).toEqual({ kind: 'text', text: '2' });
    expect(outputOf(after.all, 'count')).toEqual({ kind: 'text', text: '1' });
    const succeeded = after.all.flatMap((r) => (r.event.type === 'StepSucceeded' ? [r.event.data] : []));
    expect(succeeded.map((d) => d.stepId)).toEqual([
      'open',
      'add1',
      'push',
      'next',
      'add2',
      'inc',
      'read',
      'items',
      'count',
    ]);
    expect(succeeded.filter((d) => d.robotId === 'robot-b').map((d) => d.stepId)).toEqual(['items', 'count']);

    const closeResult = await handler.handle({ ...command('RequestClose', sessionId), reason: null });
    await driver.publishClose(sessionId, closeResult.events[0]!.eventId);
    const closed = await waitForEvent(sessionId, 'SessionClosed');
    expect(closed.data).toEqual({ robotId: 'robot-b', epoch: 2 });
    await waitFor(() => restorePointGone(topology.restorePointKey(sessionId, 4, 1)), {
      description: 'the closed session’s restore point to be deleted',
    });

    // Cookies live in the restore point only: never in an event, never in a log line.
    expect(JSON.stringify(closed.all)).not.toContain(APP_COOKIE.value);
    expect(logLines.join('')).not.toContain(APP_COOKIE.value);

    await robotA.stop({ graceMs: 1_000 });
    await storeA.close().catch(() => undefined);
  });

  let parkedToResume = '';
  let parkedToCancel = '';
  let robotC: Robot;

  it('parks sessions whose tail holds a step that must not run twice, and lets the assignment go', async () => {
    const steps: Step[] = [
      { stepId: 'open', step: { action: 'navigate', url: `${site.url}/app` } },
      { stepId: 'pay', step: { action: 'click', selector: '#add', replay: 'never' } },
    ];
    parkedToResume = await openSession();
    parkedToCancel = await openSession();
    await submit(parkedToResume, steps);
    await submit(parkedToCancel, steps);
    await waitForEvent(parkedToResume, 'StepSucceeded', succeededStep('pay'));
    await waitForEvent(parkedToCancel, 'StepSucceeded', succeededStep('pay'));

    // A graceful hand-over is a take-over too: the next robot's browser has none of the session's state.
    await robotB.stop({ graceMs: 5_000 });
    robotC = await startRobot('robot-c');
    for (const sessionId of [parkedToResume, parkedToCancel]) {
      const flagged = await waitForEvent(sessionId, 'SessionNeedsAttention');
      expect(flagged.data).toMatchObject({
        code: 'UNSAFE_REPLAY',
        stepIds: ['pay'],
        robotId: 'robot-c',
        epoch: 2,
      });
      expect(flagged.data.reason).toContain('pay');
    }
    await waitFor(async () => robotC.sessionsHeld() === 0 && (await assignmentsIdle()), {
      description: 'both assignments to be let go',
    });
    expect(robotC.openContexts()).toBe(0);
    const stoppedB = await heartbeatOf('robot-b');
    expect(stoppedB).toMatchObject({ status: 'stopped', sessions: [], capacity: { sessionsHeld: 0 } });
  });

  it('recovers a resumed session without the step the operator said to skip, then finishes it', async () => {
    const sessionId = parkedToResume;
    const resumed = await handler.handle(command('ResumeSession', sessionId));
    await driver.publishAssignment(sessionId, resumed.events[0]!.eventId, { reason: 'resumed' });
    const recovered = await waitForEvent(sessionId, 'SessionRecovered');
    expect(recovered.data).toMatchObject({
      fromCheckpoint: { afterStepSeq: 1, stateKey: topology.restorePointKey(sessionId, 1, 1) },
      replayedSteps: 0,
      skippedSteps: 1,
      // The robot that parked it claims it again: still the owner, at the same epoch.
      robotId: 'robot-c',
      epoch: 2,
    });

    const beat = await waitFor(
      async () => {
        const hb = await heartbeatOf('robot-c');
        // A beat taken between the claim and the rebuilt page lists the session with no context yet: wait for one
        // taken after recovery.
        return hb?.sessions.some((s) => s.sessionId === sessionId) && hb.browser.contexts > 0 && hb;
      },
      { description: 'the heartbeat to list the held session with its page' },
    );
    expect(beat).toMatchObject({
      status: 'running',
      ttlMs: 600,
      capacity: { maxSessions: 2, sessionsHeld: 1 },
      sessions: [{ sessionId, tenantId: TENANT, epoch: 2 }],
      browser: { connected: true, contexts: 1 },
    });
    expect(beat.breakers).toContainEqual({ name: 'event-store', state: 'closed' });
    expect(beat.browser.memoryBytes === null || beat.browser.memoryBytes > 0).toBe(true);

    await submit(sessionId, [{ stepId: 'items', step: { action: 'extractText', selector: '#items' } }]);
    const after = await waitForEvent(sessionId, 'StepSucceeded', succeededStep('items'));
    // The skipped step's effect is not applied again: the restore point is from before it.
    expect(outputOf(after.all, 'items')).toEqual({ kind: 'text', text: '0' });
    const closeResult = await handler.handle({ ...command('RequestClose', sessionId), reason: null });
    await driver.publishClose(sessionId, closeResult.events[0]!.eventId);
    expect((await waitForEvent(sessionId, 'SessionClosed')).data).toEqual({ robotId: 'robot-c', epoch: 2 });
  });

  it('cleans up a parked session that is cancelled: consumer, leftover messages and restore point', async () => {
    const sessionId = parkedToCancel;
    await expect(
      jsm.consumers.info(topology.workStream, topology.stepsConsumer(sessionId)),
    ).resolves.toBeTruthy();
    const cancelled = await handler.handle({ ...command('CancelSession', sessionId), reason: 'operator' });
    const eventId = cancelled.events[0]!.eventId;
    await driver.publishClose(sessionId, eventId);
    await driver.publishAssignment(sessionId, `${eventId}.assign`, { reason: 'cancelled' });
    await waitFor(
      () =>
        jsm.consumers
          .info(topology.workStream, topology.stepsConsumer(sessionId))
          .then(() => false)
          .catch((error: unknown) => isNotFound(error)),
      { description: 'the cancelled session’s consumer to be deleted' },
    );
    // Its close message is purged: nobody will ever consume it.
    await waitFor(
      () =>
        jsm.streams
          .getMessage(topology.workStream, { last_by_subj: topology.stepsSubject(sessionId) })
          .then((msg) => msg === null)
          .catch(() => true),
      { description: 'the cancelled session’s close message to be purged' },
    );
    await waitFor(
      async () =>
        (await restorePointGone(topology.restorePointKey(sessionId, 1, 1))) && (await assignmentsIdle()),
      { description: 'the restore point to be deleted and the cancel’s assignment terminated' },
    );
    const all = await events(sessionId);
    expect(all.filter((r) => r.event.type === 'SessionClaimed')).toHaveLength(2);
    expect(all.at(-1)!.event.type).toBe('SessionCancelled');
  });

  it('ends a running session that is cancelled: steps after it are not run, its work is removed', async () => {
    const sessionId = await openSession();
    await submit(sessionId, [{ stepId: 'open', step: { action: 'navigate', url: `${site.url}/app` } }]);
    await waitForEvent(sessionId, 'StepSucceeded', succeededStep('open'));
    const cancelled = await handler.handle({ ...command('CancelSession', sessionId), reason: null });
    const eventId = cancelled.events[0]!.eventId;
    // A step that slipped in before the cancel reached the robot is acked without running.
    await driver.publishStep(
      sessionId,
      { stepId: 'late', seq: 99, step: { action: 'click', selector: '#add' } },
      randomUUID(),
    );
    await driver.publishClose(sessionId, eventId);
    await driver.publishAssignment(sessionId, `${eventId}.assign`, { reason: 'cancelled' });
    await waitFor(
      async () =>
        robotC.sessionsHeld() === 0 &&
        robotC.openContexts() === 0 &&
        (await assignmentsIdle()) &&
        (await restorePointGone(topology.restorePointKey(sessionId, 1, 1))),
      { description: 'the cancelled session to be let go and cleaned up' },
    );
    await expect(
      jsm.consumers.info(topology.workStream, topology.stepsConsumer(sessionId)),
    ).rejects.toThrow();
    const all = await events(sessionId);
    expect(all.at(-1)!.event.type).toBe('SessionCancelled');
    expect(all.filter((r) => r.event.type === 'StepStarted')).toHaveLength(1);
  });

  it('keeps a heartbeat in the robots bucket and ends it with a stopped beat', async () => {
    const running = await heartbeatOf('robot-c');
    expect(running).toMatchObject({ v: 1, robotId: 'robot-c', status: 'running', ttlMs: 600 });
    await robotC.stop({ graceMs: 2_000 });
    expect(await heartbeatOf('robot-c')).toMatchObject({
      status: 'stopped',
      sessions: [],
      browser: { connected: false, contexts: 0 },
    });
  });
});
