import { randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connectNats,
  decodeSessionEvent,
  openEventStore,
  Registry,
  SessionCommandHandler,
  SessionDocument,
  sessionStreamId,
  silentLogger,
  Topology,
  type EventStore,
  type NatsConnection,
  type RecordedSessionEvent,
  type SessionCommand,
  type SessionPriority,
  type StepSpec,
  type WorkSettings,
} from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';
import { Kvm } from '@nats-io/kv';
import { createProjector, type Projector, type ProjectorSettings } from '../../projector/src/projector.js';
import { startTestSite, type TestSite } from '../test/testSite.js';
import { allowOrigins } from '../test/egress.js';
import { resolveChromiumPath } from './browser.js';
import { createRobot, type Robot } from './robot.js';

const ACTOR = { kind: 'api-key' as const, id: 'test-key' };
const ACK_WAIT_MS = 30_000;

/**
 * Scheduling through the real pipeline in one process: commands through the shared command handler, the projector
 * (dispatcher, tenant gate, reconciler, max-deliveries advisories) and robots with Chromium, on a real nats-server.
 */
describe('scheduling: priorities, tenant caps, reconciliation', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let site: TestSite;
  const cleanups: Array<() => Promise<unknown>> = [];

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'scheduling-test');
    site = await startTestSite();
  });
  afterAll(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => {});
    await site?.close();
    await nc?.close();
    await server?.stop();
  });

  async function setup(options: { projector?: Partial<ProjectorSettings>; work?: WorkSettings } = {}) {
    const topology = new Topology(uniquePrefix());
    const store: EventStore = await openEventStore(
      { EVENT_STORE: 'jetstream' },
      { nc, topology, logger: silentLogger },
    );
    const handler = new SessionCommandHandler({ store });
    const work = options.work ?? { ackWaitMs: ACK_WAIT_MS, stepMaxDeliver: 15 };
    const projector: Projector = createProjector({
      nc,
      store,
      topology,
      logger: silentLogger,
      registry: new Registry(),
      settings: { retry: { initialDelayMs: 10, maxDelayMs: 200 }, work, ...options.projector },
    });
    await projector.start();
    cleanups.push(() => store.close());
    cleanups.push(() => projector.close());
    const base = (type: SessionCommand['type'], sessionId: string, tenantId: string) => ({
      type,
      commandId: randomUUID(),
      sessionId,
      tenantId,
      at: new Date().toISOString(),
      actor: ACTOR,
    });
    const events = async (sessionId: string): Promise<RecordedSessionEvent[]> =>
      (await store.readStream(sessionStreamId(sessionId))).flatMap((r) => decodeSessionEvent(r) ?? []);
    const sessionsKv = await new Kvm(nc).open(topology.sessionsBucket);
    return {
      topology,
      store,
      handler,
      projector,
      events,
      async open(
        tenantId: string,
        priority: SessionPriority = 'normal',
        requires: Record<string, string> = {},
      ) {
        const sessionId = `s-${randomUUID()}`;
        await handler.handle({
          ...base('OpenSession', sessionId, tenantId),
          type: 'OpenSession',
          labels: {},
          browser: {},
          idleTimeoutMs: null,
          priority,
          requires,
          onStepFailure: 'continue',
        });
        return sessionId;
      },
      async submit(sessionId: string, tenantId: string, steps: Array<{ stepId: string; step: StepSpec }>) {
        await handler.handle({ ...base('SubmitSteps', sessionId, tenantId), type: 'SubmitSteps', steps });
      },
      async close(sessionId: string, tenantId: string) {
        await handler.handle({
          ...base('RequestClose', sessionId, tenantId),
          type: 'RequestClose',
          reason: null,
        });
      },
      async claimedAt(sessionId: string): Promise<number | null> {
        const claimed = (await events(sessionId)).find((e) => e.event.type === 'SessionClaimed');
        return claimed ? claimed.position : null;
      },
      async hasEvent(sessionId: string, type: string): Promise<boolean> {
        return (await events(sessionId)).some((e) => e.event.type === type);
      },
      async document(tenantId: string, sessionId: string): Promise<SessionDocument | null> {
        const entry = await sessionsKv.get(topology.sessionKey(tenantId, sessionId));
        return entry && entry.operation === 'PUT' ? SessionDocument.parse(entry.json()) : null;
      },
      async robot(
        robotId: string,
        maxSessions: number,
        labels: Record<string, string> = {},
        pullExpiresMs = 1_000,
      ) {
        const robot: Robot = createRobot({
          nc,
          store,
          topology,
          robotId,
          logger: silentLogger,
          registry: new Registry(),
          chromiumPath: resolveChromiumPath(process.env.CHROMIUM_PATH),
          egress: { allow: allowOrigins(site.url) },
          maxSessions,
          labels,
          ackWaitMs: work.ackWaitMs,
          stepMaxDeliver: work.stepMaxDeliver,
          pullExpiresMs,
          mismatchDelayMs: 1_000,
        });
        await robot.start();
        cleanups.push(() => robot.stop({ graceMs: 2_000 }));
        return robot;
      },
    };
  }

  it('serves high-priority sessions before normal ones when a slot frees', async () => {
    const t = await setup();
    await t.robot('robot-prio', 1);
    const busy = await t.open('acme');
    await waitFor(() => t.claimedAt(busy), { timeoutMs: 20_000, description: 'the busy session claimed' });

    const n1 = await t.open('acme', 'normal');
    const n2 = await t.open('acme', 'normal');
    const h = await t.open('acme', 'high');
    // All three wait in the stream while the only slot is taken.
    await waitFor(() => t.document('acme', h).then((d) => d?.status === 'queued'), {
      description: 'H queued in the read model',
    });

    await t.close(busy, 'acme');
    const hAt = await waitFor(() => t.claimedAt(h), { timeoutMs: 20_000, description: 'H claimed' });
    expect(await t.claimedAt(n1)).toBeNull();
    expect(await t.claimedAt(n2)).toBeNull();

    await t.close(h, 'acme');
    const n1At = await waitFor(() => t.claimedAt(n1), { timeoutMs: 20_000, description: 'N1 claimed' });
    await t.close(n1, 'acme');
    const n2At = await waitFor(() => t.claimedAt(n2), { timeoutMs: 20_000, description: 'N2 claimed' });
    expect(hAt).toBeLessThan(n1At);
    expect(n1At).toBeLessThan(n2At);
  });

  it('takes each waiting session as soon as a slot frees, without waiting for a sweep', async () => {
    const t = await setup();
    // Sweeps (which also find handed-back assignments) come every 10 minutes here: only the pending counts,
    // read fresh each time a slot frees, can find the waiting sessions within the test.
    await t.robot('robot-backlog', 1, {}, 600_000);
    const sessions = [await t.open('acme'), await t.open('acme'), await t.open('acme')];
    for (const [i, sessionId] of sessions.entries()) {
      await waitFor(() => t.claimedAt(sessionId), {
        timeoutMs: 20_000,
        description: `session ${i + 1} of 3 claimed`,
      });
      await t.close(sessionId, 'acme');
      await waitFor(() => t.hasEvent(sessionId, 'SessionClosed'), {
        timeoutMs: 20_000,
        description: `session ${i + 1} of 3 closed`,
      });
    }
  });

  it('holds a tenant’s third session queued at a cap of 2 until one of the first two ends', async () => {
    const t = await setup({ projector: { tenantLimits: { defaultMax: 0, perTenant: { capped: 2 } } } });
    await t.robot('robot-cap', 4);
    const s1 = await t.open('capped');
    const s2 = await t.open('capped');
    const s3 = await t.open('capped');
    await waitFor(async () => (await t.claimedAt(s1)) && (await t.claimedAt(s2)), {
      timeoutMs: 20_000,
      description: 'the first two claimed',
    });
    await waitFor(() => t.projector.gate?.waiting('capped'), { description: 'the gate' });
    expect((await t.projector.gate!.waiting('capped')).map((w) => w.sessionId)).toEqual([s3]);
    expect(await t.claimedAt(s3)).toBeNull();
    expect((await t.document('capped', s3))?.status).toBe('queued');
    // Another tenant is not held back by this one's cap.
    const other = await t.open('free');
    await waitFor(() => t.claimedAt(other), { timeoutMs: 20_000, description: 'another tenant’s session' });
    expect(await t.claimedAt(s3)).toBeNull();

    await t.close(s1, 'capped');
    await waitFor(() => t.claimedAt(s3), { timeoutMs: 20_000, description: 'the third claimed' });
    await t.submit(s3, 'capped', [{ stepId: 'nav', step: { action: 'navigate', url: `${site.url}/form` } }]);
    await waitFor(() => t.hasEvent(s3, 'StepSucceeded'), {
      timeoutMs: 20_000,
      description: 'the third runs',
    });
  });

  it('leaves a session queued until a robot with the labels it requires runs, and beats the labels', async () => {
    const t = await setup();
    const wrong = await t.robot('robot-us', 2, { region: 'us' });
    const sessionId = await t.open('acme', 'normal', { region: 'eu' });
    const robots = await new Kvm(nc).open(t.topology.robotsBucket);
    await waitFor(
      async () => {
        const entry = await robots.get(t.topology.robotKey(wrong.robotId));
        return entry?.operation === 'PUT' && entry.json<{ labels?: unknown }>().labels;
      },
      { description: 'the heartbeat with labels' },
    ).then((labels) => expect(labels).toEqual({ region: 'us' }));
    // The assignment is handed back (with a delay) each time robot-us gets it.
    await waitFor(
      async () => {
        const jsm = await jetstreamManager(nc);
        const info = await jsm.consumers.info(
          t.topology.workStream,
          t.topology.assignmentsConsumerFor('normal'),
        );
        return info.delivered.consumer_seq >= 2;
      },
      { timeoutMs: 15_000, description: 'the assignment offered and handed back' },
    );
    expect(await t.claimedAt(sessionId)).toBeNull();
    expect((await t.document('acme', sessionId))?.status).toBe('queued');

    await t.robot('robot-eu', 1, { region: 'eu', proxy: 'none' });
    await waitFor(() => t.claimedAt(sessionId), { timeoutMs: 20_000, description: 'claimed by robot-eu' });
    const claimed = (await t.events(sessionId)).find((e) => e.event.type === 'SessionClaimed');
    expect(claimed?.event.data).toMatchObject({ robotId: 'robot-eu' });
  });

  it('re-dispatches a step whose message was lost, and the step completes', async () => {
    const t = await setup({ projector: { reconcile: { intervalMs: 200, afterMs: 600 } } });
    const jsm = await jetstreamManager(nc);
    const sessionId = await t.open('acme');
    await t.submit(sessionId, 'acme', [
      { stepId: 'nav', step: { action: 'navigate', url: `${site.url}/form` } },
    ]);
    const subject = t.topology.stepsSubject(sessionId);
    const original = await waitFor(
      () => jsm.streams.getMessage(t.topology.workStream, { last_by_subj: subject }),
      { description: 'the step message' },
    );
    // A lost publish: the stream no longer holds the message.
    await jsm.streams.deleteMessage(t.topology.workStream, original.seq);
    const resent = await waitFor(
      () => jsm.streams.getMessage(t.topology.workStream, { last_by_subj: subject }),
      { timeoutMs: 15_000, description: 'the step message sent again' },
    );
    expect(resent.seq).toBeGreaterThan(original.seq);
    expect(resent.header?.get('Nats-Msg-Id')).toMatch(/\.reconcile\.\d+$/);

    await t.robot('robot-reconcile', 1);
    await waitFor(() => t.hasEvent(sessionId, 'StepSucceeded'), {
      timeoutMs: 20_000,
      description: 'the step succeeded',
    });
    const metric = await t.projector.registry.getSingleMetric('projector_reconciled_messages_total')?.get();
    expect(metric?.values.find((v) => v.labels.kind === 'step')?.value).toBeGreaterThanOrEqual(1);
  });

  it('dead-letters a step whose message ran out of deliveries without a result', async () => {
    const work = { ackWaitMs: 1_000, stepMaxDeliver: 2 };
    const t = await setup({ work });
    const jsm = await jetstreamManager(nc);
    const js = jetstream(nc);
    const sessionId = await t.open('acme');
    await t.submit(sessionId, 'acme', [
      { stepId: 'nav', step: { action: 'navigate', url: `${site.url}/form` } },
    ]);
    // A consumer that takes the step and never reports: every delivery is handed back.
    await jsm.consumers.add(t.topology.workStream, t.topology.stepsConsumerConfig(sessionId, work));
    const consumer = await js.consumers.get(t.topology.workStream, t.topology.stepsConsumer(sessionId));
    await waitFor(
      async () => {
        const messages = await consumer.fetch({ max_messages: 1, expires: 1_000 });
        for await (const m of messages) m.nak();
        return t.hasEvent(sessionId, 'StepDeadLettered');
      },
      { timeoutMs: 20_000, intervalMs: 0, description: 'the step dead-lettered' },
    );
    const events = await t.events(sessionId);
    const deadLettered = events.find((e) => e.event.type === 'StepDeadLettered');
    expect(deadLettered?.event.data).toMatchObject({ stepId: 'nav', reason: 'max_deliveries' });
    expect(events.find((e) => e.event.type === 'StepFailed')?.event.data).toMatchObject({
      final: true,
      error: { code: 'DELIVERY_EXHAUSTED' },
    });
    // The stuck message is gone from the work stream.
    await waitFor(
      async () =>
        (await jsm.streams.getMessage(t.topology.workStream, {
          last_by_subj: t.topology.stepsSubject(sessionId),
        })) === null,
      { description: 'the stuck message removed' },
    );
  });
});
