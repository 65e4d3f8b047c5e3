import { randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager, type JetStreamClient } from '@nats-io/jetstream';
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
  type SessionCommand,
  type StepSpec,
} from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';
import { startTestSite, TABLE_HEADERS, TABLE_ROWS, type TestSite } from '../test/testSite.js';
import { allowOrigins } from '../test/egress.js';
import { WorkDriver } from '../test/workDriver.js';
import { resolveChromiumPath } from './browser.js';
import { createRobot, type Robot } from './robot.js';
import { capturingLogger } from '../test/logCapture.js';

const TENANT = 'tenant-a';
const ACTOR = { kind: 'api-key' as const, id: 'test-key' };
// Long enough that a session reaching the next robot quickly can only have been handed back, not timed out.
const ACK_WAIT_MS = 60_000;

describe('robot on real NATS, the JetStream event store and Chromium', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let js: JetStreamClient;
  let store: EventStore;
  let handler: SessionCommandHandler;
  let driver: WorkDriver;
  let topology: Topology;
  let site: TestSite;
  let robot: Robot;
  let closedSessionId = '';
  const logLines: string[] = [];
  const registry = new Registry();

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'robot-test');
    js = jetstream(nc);
    topology = new Topology(uniquePrefix());
    store = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
    handler = new SessionCommandHandler({ store });
    driver = new WorkDriver({ js, topology, store, handler, tenantId: TENANT, actor: ACTOR });
    await ensureWorkTopology(nc, topology, { ackWaitMs: ACK_WAIT_MS, stepMaxDeliver: 5 });
    site = await startTestSite();
    robot = newRobot('robot-test-1');
    await robot.start();
  });
  afterAll(async () => {
    await robot?.stop({ graceMs: 5_000 });
    await site?.close();
    await store?.close();
    await nc?.close();
    await server?.stop();
  });

  function newRobot(robotId: string): Robot {
    return createRobot({
      nc,
      store,
      topology,
      robotId,
      logger: capturingLogger(logLines, 'debug'),
      registry: robotId === 'robot-test-1' ? registry : new Registry(),
      chromiumPath: resolveChromiumPath(process.env.CHROMIUM_PATH),
      egress: { allow: allowOrigins(site.url) },
      maxSessions: 2,
      ackWaitMs: ACK_WAIT_MS,
      pullExpiresMs: 1_000,
    });
  }

  const BROWSER = { viewport: { width: 1024, height: 700 }, locale: 'en-US' };
  const command = <T extends SessionCommand['type']>(type: T, sessionId: string) =>
    driver.command(type, sessionId);
  const events = (sessionId: string) => driver.events(sessionId);
  const submit = (sessionId: string, steps: Array<{ stepId: string; step: StepSpec }>) =>
    driver.submit(sessionId, steps);
  // The assignment as the dispatcher publishes it for SessionOpened, with the session's options.
  const publishAssignment = (sessionId: string, msgID: string, openedAt: string) =>
    driver.publishAssignment(sessionId, msgID, { labels: { suite: 'robot' }, browser: BROWSER, openedAt });

  async function openSession(sessionId: string): Promise<void> {
    const result = await handler.handle({
      ...command('OpenSession', sessionId),
      labels: { suite: 'robot' },
      browser: BROWSER,
      idleTimeoutMs: null,
      // The failing step of the first test is about the run going on: a failure must not pause the session.
      onStepFailure: 'continue',
    });
    const opened = result.events[0]!;
    await publishAssignment(sessionId, opened.eventId, opened.metadata.occurredAt);
  }

  async function requestClose(sessionId: string): Promise<void> {
    const result = await handler.handle({ ...command('RequestClose', sessionId), reason: 'done' });
    await driver.publishClose(sessionId, result.events[0]!.eventId);
  }

  const robotEvents = (all: RecordedSessionEvent[]) =>
    all
      .map((r) => r.event)
      .filter((e) => e.type === 'StepStarted' || e.type === 'StepSucceeded' || e.type === 'StepFailed')
      .map((e) => ({ type: e.type, stepId: e.data.stepId }));

  it('claims a session, runs its steps in order, survives a failing step, skips a redelivered one, closes', async () => {
    const sessionId = `s-${randomUUID()}`;
    closedSessionId = sessionId;
    await openSession(sessionId);
    const steps: Array<{ stepId: string; step: StepSpec }> = [
      { stepId: 'nav', step: { action: 'navigate', url: `${site.url}/form` } },
      { stepId: 'fill', step: { action: 'fill', selector: '#q', value: 'blue staplers' } },
      { stepId: 'press', step: { action: 'press', selector: '#q', key: 'Enter' } },
      { stepId: 'wait', step: { action: 'waitFor', selector: '#result' } },
      { stepId: 'text', step: { action: 'extractText', selector: '#result' } },
      { stepId: 'missing', step: { action: 'click', selector: '#does-not-exist', timeoutMs: 500 } },
      { stepId: 'nav2', step: { action: 'navigate', url: `${site.url}/table` } },
      { stepId: 'table', step: { action: 'extractTable', selector: '#orders' } },
      { stepId: 'shot', step: { action: 'screenshot' } },
    ];
    await submit(sessionId, steps);

    const done = await waitFor(
      async () => {
        const all = await events(sessionId);
        return all.some((r) => r.event.type === 'StepSucceeded' && r.event.data.stepId === 'shot') && all;
      },
      { timeoutMs: 40_000, description: 'the last step to succeed' },
    );

    const claims = done.filter((r) => r.event.type === 'SessionClaimed').map((r) => r.event.data);
    expect(claims).toEqual([{ robotId: 'robot-test-1', epoch: 1, previousRobotId: null }]);
    expect(robotEvents(done)).toEqual(
      steps.flatMap(({ stepId }) => [
        { type: 'StepStarted', stepId },
        { type: stepId === 'missing' ? 'StepFailed' : 'StepSucceeded', stepId },
      ]),
    );
    const result = (stepId: string) =>
      done.find(
        (r) =>
          (r.event.type === 'StepSucceeded' || r.event.type === 'StepFailed') &&
          r.event.data.stepId === stepId,
      )!.event.data;
    expect(result('nav')).toMatchObject({
      epoch: 1,
      attempt: 1,
      output: { kind: 'navigation', url: `${site.url}/form`, status: 200, title: 'Search' },
    });
    expect(result('text')).toMatchObject({ output: { kind: 'text', text: 'You searched: blue staplers' } });
    expect(result('missing')).toMatchObject({ error: { code: 'SELECTOR_NOT_FOUND' } });
    expect(result('table')).toMatchObject({
      output: { kind: 'table', headers: TABLE_HEADERS, rows: TABLE_ROWS },
    });
    expect(result('shot')).toMatchObject({
      output: {
        kind: 'artifact',
        artifactKey: topology.artifactKey(sessionId, 'shot'),
        contentType: 'image/png',
      },
    });
    // A fill value is typed, never logged.
    expect(logLines.join('')).not.toContain('blue staplers');
    expect(logLines.join('')).toContain('step succeeded');

    // A redelivery of a step whose result is in the stream (a crash between append and ack, a broker restart).
    const submittedText = done.find(
      (r) => r.event.type === 'StepSubmitted' && r.event.data.stepId === 'text',
    )!;
    if (submittedText.event.type !== 'StepSubmitted') throw new TypeError('not a StepSubmitted event');
    await driver.publishStep(sessionId, submittedText.event.data, randomUUID());
    await requestClose(sessionId);

    const closed = await waitFor(
      async () => {
        const all = await events(sessionId);
        return all.some((r) => r.event.type === 'SessionClosed') && all;
      },
      { timeoutMs: 15_000, description: 'SessionClosed' },
    );
    expect(
      closed.filter((r) => r.event.type === 'StepStarted' && r.event.data.stepId === 'text'),
    ).toHaveLength(1);
    const counted = (await registry.getSingleMetric('rpa_robot_steps_total')!.get()).values;
    expect(counted).toContainEqual({ labels: { action: 'extractText', outcome: 'skipped' }, value: 1 });
    expect(counted).toContainEqual({ labels: { action: 'click', outcome: 'failed' }, value: 1 });
    expect(closed.at(-1)!.event).toEqual({
      type: 'SessionClosed',
      data: { robotId: 'robot-test-1', epoch: 1 },
    });

    const jsm = await jetstreamManager(nc);
    await waitFor(
      async () => {
        const info = await jsm.consumers.info(topology.workStream, topology.assignmentsConsumer);
        return info.num_ack_pending === 0 && info.num_pending === 0 && robot.sessionsHeld() === 0;
      },
      { timeoutMs: 10_000, description: 'the assignment to be acked' },
    );
    expect(robot.openContexts()).toBe(0);
    await expect(
      jsm.consumers.info(topology.workStream, topology.stepsConsumer(sessionId)),
    ).rejects.toThrow();
  });

  it('terminates an assignment for a closed session without claiming it again', async () => {
    // Offered again, as a reconciler or a redelivery might.
    await publishAssignment(closedSessionId, randomUUID(), new Date().toISOString());
    const jsm = await jetstreamManager(nc);
    await waitFor(
      async () => {
        const info = await jsm.consumers.info(topology.workStream, topology.assignmentsConsumer);
        return info.num_ack_pending === 0 && info.num_pending === 0 && info.delivered.stream_seq > 0;
      },
      { timeoutMs: 10_000, description: 'the assignment to be terminated' },
    );
    expect((await jsm.streams.info(topology.workStream)).state.messages).toBe(0);
    const claims = (await events(closedSessionId)).filter((r) => r.event.type === 'SessionClaimed');
    expect(claims).toHaveLength(1);
  });

  it('hands held sessions back on a graceful stop so that the next robot takes them at once', async () => {
    const sessionId = `s-${randomUUID()}`;
    await openSession(sessionId);
    await waitFor(() => robot.sessionsHeld() === 1 && robot.openContexts() === 1, {
      timeoutMs: 10_000,
      description: 'the first robot to hold the session',
    });
    const first = robot;
    await first.stop({ graceMs: 5_000 });
    expect(first.openContexts()).toBe(0);
    // One Chromium at a time: the next robot starts after the first has closed its browser. It gets the session
    // well within the ack wait only because the first robot handed the assignment back.
    robot = newRobot('robot-test-2');
    await robot.start();
    await submit(sessionId, [{ stepId: 'after', step: { action: 'navigate', url: `${site.url}/` } }]);
    const all = await waitFor(
      async () => {
        const recorded = await events(sessionId);
        return recorded.some((r) => r.event.type === 'StepSucceeded') && recorded;
      },
      { timeoutMs: 20_000, description: 'the next robot to run the step' },
    );
    expect(all.filter((r) => r.event.type === 'SessionClaimed').map((r) => r.event.data)).toEqual([
      { robotId: 'robot-test-1', epoch: 1, previousRobotId: null },
      { robotId: 'robot-test-2', epoch: 2, previousRobotId: 'robot-test-1' },
    ]);
    expect(all.find((r) => r.event.type === 'StepSucceeded')!.event.data).toMatchObject({
      robotId: 'robot-test-2',
      epoch: 2,
    });
    await requestClose(sessionId);
    await waitFor(() => robot.sessionsHeld() === 0, {
      timeoutMs: 10_000,
      description: 'the session to close',
    });
  });

  it('stops a session at once, unreported, when another robot has claimed it since', async () => {
    const sessionId = `s-${randomUUID()}`;
    await openSession(sessionId);
    await waitFor(() => robot.sessionsHeld() === 1 && robot.openContexts() === 1, {
      timeoutMs: 10_000,
      description: 'the robot to hold the session',
    });
    await handler.handle({ ...command('ClaimSession', sessionId), robotId: 'robot-other' });
    await submit(sessionId, [{ stepId: 'late', step: { action: 'navigate', url: `${site.url}/` } }]);
    await waitFor(() => robot.sessionsHeld() === 0 && robot.openContexts() === 0, {
      timeoutMs: 15_000,
      description: 'the robot to let the session go',
    });
    const all = await events(sessionId);
    expect(all.filter((r) => r.event.type === 'SessionClaimed').map((r) => r.event.data)).toEqual([
      { robotId: 'robot-test-2', epoch: 1, previousRobotId: null },
      { robotId: 'robot-other', epoch: 2, previousRobotId: 'robot-test-2' },
    ]);
    expect(robotEvents(all)).toEqual([]);
  });
});
