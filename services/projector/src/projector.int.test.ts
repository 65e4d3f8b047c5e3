import { randomUUID } from 'node:crypto';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import {
  applyToDocument,
  AssignmentMessage,
  connectNats,
  decodeMessage,
  decodeSessionEvent,
  openEventStore,
  SessionCommandHandler,
  SessionDocument,
  sessionStreamId,
  SessionWorkMessage,
  silentLogger,
  Topology,
  type CommandResult,
  type EventStore,
  type NatsConnection,
  type SessionCommand,
} from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpointKey } from './checkpoints.js';
import { buildOpsServer } from './opsServer.js';
import { createProjector, openProjectorBuckets, SUBSCRIPTIONS, type Projector } from './projector.js';

const actor = { kind: 'api-key', id: 'author-1' } as const;
const robotActor = { kind: 'robot', id: 'robot-1' } as const;

/** Drives sessions through the real command handler, with increasing command times. */
class Driver {
  private clock = Date.UTC(2025, 0, 1, 9, 0, 0);
  readonly eventIds = new Map<string, string[]>();
  lastPosition = 0;

  constructor(private readonly handler: SessionCommandHandler) {}

  async run(
    command: DistributiveOmit<SessionCommand, 'commandId' | 'at'>,
    commandId: string = randomUUID(),
  ): Promise<CommandResult> {
    this.clock += 1_000;
    const result = await this.handler.handle({
      ...command,
      commandId,
      at: new Date(this.clock).toISOString(),
    } as SessionCommand);
    const ids = this.eventIds.get(command.sessionId) ?? [];
    ids.push(...result.events.map((e) => e.eventId));
    this.eventIds.set(command.sessionId, ids);
    this.lastPosition = Math.max(this.lastPosition, result.position);
    return result;
  }
}
type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

interface WorkMessage {
  seq: number;
  subject: string;
  msgId: string | undefined;
  body: unknown;
}

async function workMessages(jsm: JetStreamManager, topology: Topology): Promise<WorkMessage[]> {
  const info = await jsm.streams.info(topology.workStream);
  const out: WorkMessage[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(topology.workStream, { seq });
    if (!m) continue;
    const body = m.subject.startsWith(`${topology.prefix}.work.assign.`)
      ? decodeMessage(AssignmentMessage, m.data)
      : decodeMessage(SessionWorkMessage, m.data);
    out.push({ seq: m.seq, subject: m.subject, msgId: m.header?.get('Nats-Msg-Id'), body });
  }
  return out;
}

async function document(kv: KV, topology: Topology, tenantId: string, sessionId: string) {
  const entry = await kv.get(topology.sessionKey(tenantId, sessionId));
  if (!entry || entry.operation !== 'PUT') return null;
  return SessionDocument.parse(entry.json());
}

/** The document a from-scratch fold of the session's stream yields: what the KV must converge to. */
async function foldedFromStore(store: EventStore, sessionId: string): Promise<SessionDocument | null> {
  let doc: SessionDocument | null = null;
  for (const e of await store.readStream(sessionStreamId(sessionId))) {
    const decoded = decodeSessionEvent(e);
    if (decoded) doc = applyToDocument(doc, decoded);
  }
  return doc;
}

async function counter(registry: Registry, name: string, labels: Record<string, string> = {}) {
  const metric = await registry.getSingleMetric(name)?.get();
  return (metric?.values ?? [])
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((sum, v) => sum + v.value, 0);
}

describe('projector on nats-server with the JetStream event store', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'projector-test');
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  async function setup() {
    const topology = new Topology(uniquePrefix());
    const store = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
    const driver = new Driver(new SessionCommandHandler({ store }));
    const started: Projector[] = [];
    const startProjector = async () => {
      const registry = new Registry();
      const projector = createProjector({
        nc,
        store,
        topology,
        logger: silentLogger,
        registry,
        settings: { retry: { initialDelayMs: 10, maxDelayMs: 200 } },
      });
      await projector.start();
      started.push(projector);
      return { projector, registry };
    };
    const buckets = await openProjectorBuckets(nc, topology);
    const jsm = await jetstreamManager(nc);
    const cleanup = async () => {
      await Promise.all(started.map((p) => p.close()));
      await store.close();
    };
    return { topology, store, driver, startProjector, buckets, jsm, cleanup };
  }

  /** One session through its whole life, another left open with one step; returns nothing but the driver's record. */
  async function driveTwoSessions(driver: Driver) {
    await driver.run({
      type: 'OpenSession',
      sessionId: 's1',
      tenantId: 'acme',
      actor,
      labels: { team: 'ops' },
      browser: { locale: 'en-US' },
      idleTimeoutMs: 600_000,
      // The failing step b must not pause the session: the test closes it afterwards.
      onStepFailure: 'continue',
    });
    await driver.run({
      type: 'OpenSession',
      sessionId: 's2',
      tenantId: 'globex',
      actor,
      labels: {},
      browser: {},
      idleTimeoutMs: null,
    });
    await driver.run({
      type: 'SubmitSteps',
      sessionId: 's1',
      tenantId: 'acme',
      actor,
      steps: [
        { stepId: 'a', step: { action: 'navigate', url: 'https://example.com/' } },
        { stepId: 'b', step: { action: 'click', selector: '#go' } },
        { stepId: 'c', step: { action: 'extractText', selector: 'h1' } },
      ],
    });
    await driver.run({
      type: 'SubmitSteps',
      sessionId: 's2',
      tenantId: 'globex',
      actor,
      steps: [{ stepId: 'x', step: { action: 'fill', selector: '#q', value: 'hello' } }],
    });
    const robot = { sessionId: 's1', tenantId: 'acme', actor: robotActor, robotId: 'robot-1' };
    const claimed = await driver.run({ type: 'ClaimSession', ...robot });
    const epoch =
      claimed.events[0]!.event.type === 'SessionClaimed' ? claimed.events[0]!.event.data.epoch : 0;
    await driver.run({ type: 'StartStep', ...robot, epoch, stepId: 'a', attempt: 1 });
    await driver.run({
      type: 'CompleteStep',
      ...robot,
      epoch,
      stepId: 'a',
      attempt: 1,
      durationMs: 250,
      outcome: {
        status: 'succeeded',
        output: { kind: 'navigation', url: 'https://example.com/', status: 200, title: 'Example' },
      },
    });
    await driver.run({ type: 'StartStep', ...robot, epoch, stepId: 'b', attempt: 1 });
    await driver.run({
      type: 'CompleteStep',
      ...robot,
      epoch,
      stepId: 'b',
      attempt: 1,
      durationMs: 900,
      outcome: { status: 'failed', error: { code: 'SELECTOR_NOT_FOUND', message: 'no #go' } },
    });
    await driver.run({ type: 'RequestClose', sessionId: 's1', tenantId: 'acme', actor, reason: 'done' });
    await driver.run({ type: 'ConfirmClose', ...robot, epoch });
  }

  it('projects each session into its KV document and publishes its work once, in order, keyed by event id', async () => {
    const { topology, store, driver, startProjector, buckets, jsm, cleanup } = await setup();
    try {
      const { projector, registry } = await startProjector();
      await driveTwoSessions(driver);

      const s1 = await waitFor(
        async () => {
          const doc = await document(buckets.sessions, topology, 'acme', 's1');
          return doc?.status === 'closed' && doc;
        },
        { description: 's1 closed in the read model' },
      );
      expect(s1).toMatchObject({
        sessionId: 's1',
        tenantId: 'acme',
        status: 'closed',
        robotId: 'robot-1',
        epoch: 1,
        labels: { team: 'ops' },
        browser: { locale: 'en-US' },
        idleTimeoutMs: 600_000,
        createdAt: '2025-01-01T09:00:01.000Z',
        closedAt: '2025-01-01T09:00:11.000Z',
        updatedAt: '2025-01-01T09:00:11.000Z',
        stepCounts: { total: 3, queued: 1, running: 0, succeeded: 1, failed: 1 },
        version: 11,
      });
      expect(s1.steps).toEqual([
        {
          stepId: 'a',
          seq: 1,
          action: 'navigate',
          replay: 'safe',
          status: 'succeeded',
          attempts: 1,
          output: { kind: 'navigation', url: 'https://example.com/', status: 200, title: 'Example' },
          error: null,
          submittedAt: '2025-01-01T09:00:03.000Z',
          startedAt: '2025-01-01T09:00:06.000Z',
          finishedAt: '2025-01-01T09:00:07.000Z',
          durationMs: 250,
          nextAttemptAt: null,
          deadLetter: null,
        },
        {
          stepId: 'b',
          seq: 2,
          action: 'click',
          replay: 'safe',
          status: 'failed',
          attempts: 1,
          output: null,
          error: { code: 'SELECTOR_NOT_FOUND', message: 'no #go' },
          submittedAt: '2025-01-01T09:00:03.000Z',
          startedAt: '2025-01-01T09:00:08.000Z',
          finishedAt: '2025-01-01T09:00:09.000Z',
          durationMs: 900,
          nextAttemptAt: null,
          deadLetter: { reason: 'not_retryable', attempts: 1, at: '2025-01-01T09:00:09.000Z' },
        },
        {
          stepId: 'c',
          seq: 3,
          action: 'extractText',
          replay: 'safe',
          status: 'queued',
          attempts: 0,
          output: null,
          error: null,
          submittedAt: '2025-01-01T09:00:03.000Z',
          startedAt: null,
          finishedAt: null,
          durationMs: null,
          nextAttemptAt: null,
          deadLetter: null,
        },
      ]);
      expect(s1).toEqual(await foldedFromStore(store, 's1'));
      const s2 = await waitFor(
        async () => {
          const doc = await document(buckets.sessions, topology, 'globex', 's2');
          return doc?.stepCounts.total === 1 && doc;
        },
        { description: 's2 with its step' },
      );
      expect(s2).toMatchObject({ status: 'queued', robotId: null, epoch: 0, version: 1 });
      expect(s2).toEqual(await foldedFromStore(store, 's2'));

      const work = await waitFor(
        async () => {
          const messages = await workMessages(jsm, topology);
          return messages.length === 7 && messages;
        },
        { description: 'seven work messages' },
      );
      const s1Ids = driver.eventIds.get('s1')!;
      const s2Ids = driver.eventIds.get('s2')!;
      const assignments = work.filter((m) => m.subject === topology.assignSubject);
      expect(assignments.map((m) => [m.msgId, (m.body as AssignmentMessage).sessionId])).toEqual([
        [s1Ids[0], 's1'],
        [s2Ids[0], 's2'],
      ]);
      expect(assignments[0]!.body).toEqual({
        v: 1,
        sessionId: 's1',
        tenantId: 'acme',
        reason: 'opened',
        labels: { team: 'ops' },
        browser: { locale: 'en-US' },
        openedAt: '2025-01-01T09:00:01.000Z',
        requires: {},
      });
      const s1Work = work.filter((m) => m.subject === topology.stepsSubject('s1'));
      expect(s1Work.map((m) => m.body)).toEqual([
        {
          v: 1,
          kind: 'step',
          sessionId: 's1',
          tenantId: 'acme',
          stepId: 'a',
          seq: 1,
          step: { action: 'navigate', url: 'https://example.com/' },
        },
        {
          v: 1,
          kind: 'step',
          sessionId: 's1',
          tenantId: 'acme',
          stepId: 'b',
          seq: 2,
          step: { action: 'click', selector: '#go' },
        },
        {
          v: 1,
          kind: 'step',
          sessionId: 's1',
          tenantId: 'acme',
          stepId: 'c',
          seq: 3,
          step: { action: 'extractText', selector: 'h1' },
        },
        { v: 1, kind: 'close', sessionId: 's1', tenantId: 'acme' },
      ]);
      // Event ids of s1: opened, a, b, c (one append), claimed, started, succeeded, started, failed, dead-lettered,
      // close requested, closed.
      expect(s1Work.map((m) => m.msgId)).toEqual([s1Ids[1], s1Ids[2], s1Ids[3], s1Ids[10]]);
      const s2Work = work.filter((m) => m.subject === topology.stepsSubject('s2'));
      expect(s2Work.map((m) => [m.msgId, (m.body as { stepId: string }).stepId])).toEqual([[s2Ids[1], 'x']]);

      // Ops surface: ready, with the counters the dashboards read.
      const ops = buildOpsServer({ registry, checks: projector.checks });
      const ready = await ops.inject({ method: 'GET', url: '/readyz' });
      expect(ready.statusCode).toBe(200);
      const metrics = (await ops.inject({ method: 'GET', url: '/metrics' })).body;
      expect(metrics).toContain('projector_events_projected_total');
      expect(metrics).toContain('projector_checkpoint_position');
      await ops.close();
      expect(await counter(registry, 'projector_dispatch_publishes_total', { duplicate: 'false' })).toBe(7);
      expect(
        await counter(registry, 'projector_events_projected_total', {
          subscription: SUBSCRIPTIONS.readModel,
        }),
      ).toBe(14);
    } finally {
      await cleanup();
    }
  });

  it('resumes from its checkpoints, and a rebuild from zero yields identical documents and no duplicate work', async () => {
    const { topology, store, driver, startProjector, buckets, jsm, cleanup } = await setup();
    try {
      const first = await startProjector();
      await driveTwoSessions(driver);
      await waitFor(
        async () =>
          (await document(buckets.sessions, topology, 'acme', 's1'))?.position === driver.lastPosition,
        { description: 'read model caught up' },
      );
      await waitFor(async () => (await workMessages(jsm, topology)).length === 7, {
        description: 'work published',
      });
      await first.projector.close();
      // Both checkpoints were saved on close at the last event.
      for (const name of Object.values(SUBSCRIPTIONS)) {
        const entry = await buckets.checkpoints.get(checkpointKey(name));
        expect(entry?.json<{ position: number }>().position).toBe(driver.lastPosition);
      }
      const snapshot = {
        s1: await document(buckets.sessions, topology, 'acme', 's1'),
        s2: await document(buckets.sessions, topology, 'globex', 's2'),
      };
      const workBefore = await workMessages(jsm, topology);

      // Restart from the checkpoints: only what came after is handled.
      const second = await startProjector();
      await driver.run({
        type: 'OpenSession',
        sessionId: 's3',
        tenantId: 'acme',
        actor,
        labels: {},
        browser: {},
        idleTimeoutMs: null,
      });
      await waitFor(async () => (await document(buckets.sessions, topology, 'acme', 's3')) !== null, {
        description: 's3 projected',
      });
      await waitFor(async () => (await workMessages(jsm, topology)).length === 8, {
        description: 's3 assignment',
      });
      expect(await counter(second.registry, 'projector_events_projected_total')).toBe(2);
      expect(await counter(second.registry, 'projector_dispatch_publishes_total')).toBe(1);

      // Another writer touches a document the projector has cached: its next write conflicts, re-reads, re-applies.
      const s2Key = topology.sessionKey('globex', 's2');
      const submit = (stepId: string) =>
        driver.run({
          type: 'SubmitSteps',
          sessionId: 's2',
          tenantId: 'globex',
          actor,
          steps: [{ stepId, step: { action: 'screenshot' } }],
        });
      const s2Steps = async (n: number) =>
        waitFor(
          async () => (await document(buckets.sessions, topology, 'globex', 's2'))?.stepCounts.total === n,
          { description: `s2 with ${n} steps` },
        );
      await submit('y');
      await s2Steps(2);
      const cached = await buckets.sessions.get(s2Key);
      await buckets.sessions.put(s2Key, cached!.value);
      await submit('z');
      await s2Steps(3);
      expect(
        await counter(second.registry, 'projector_read_model_writes_total', { outcome: 'conflict' }),
      ).toBeGreaterThanOrEqual(1);
      await waitFor(async () => (await workMessages(jsm, topology)).length === 10, {
        description: 's2 steps published',
      });
      await second.projector.close();

      const current = {
        s1: await document(buckets.sessions, topology, 'acme', 's1'),
        s2: await document(buckets.sessions, topology, 'globex', 's2'),
        s3: await document(buckets.sessions, topology, 'acme', 's3'),
      };
      expect(current.s1).toEqual(snapshot.s1);
      expect(current.s2).toEqual(await foldedFromStore(store, 's2'));
      const workAfterResume = await workMessages(jsm, topology);
      expect(workAfterResume.slice(0, 7)).toEqual(workBefore);

      // From position zero twice: first over the existing documents (every event is a no-op), then with none.
      for (const purgeDocuments of [false, true]) {
        for (const name of Object.values(SUBSCRIPTIONS))
          await buckets.checkpoints.delete(checkpointKey(name));
        if (purgeDocuments) {
          for (const [tenant, session] of [
            ['acme', 's1'],
            ['globex', 's2'],
            ['acme', 's3'],
          ] as const) {
            await buckets.sessions.purge(topology.sessionKey(tenant, session));
          }
        }
        const again = await startProjector();
        await waitFor(
          async () => {
            const caughtUp = Object.values(again.projector.subscriptions).every(
              (s) => s.position === driver.lastPosition,
            );
            return caughtUp && (await document(buckets.sessions, topology, 'acme', 's3')) !== null;
          },
          { description: `replay from zero (purged documents: ${purgeDocuments})` },
        );
        await again.projector.close();

        expect(await document(buckets.sessions, topology, 'acme', 's1')).toEqual(current.s1);
        expect(await document(buckets.sessions, topology, 'globex', 's2')).toEqual(current.s2);
        expect(await document(buckets.sessions, topology, 'acme', 's3')).toEqual(current.s3);
        const written = await counter(again.registry, 'projector_read_model_writes_total', {
          outcome: 'written',
        });
        expect(written).toBe(purgeDocuments ? 3 : 0);
        // Every message was published again and dropped by JetStream as a duplicate.
        expect(await workMessages(jsm, topology)).toEqual(workAfterResume);
        const publishes = (duplicate: string) =>
          counter(again.registry, 'projector_dispatch_publishes_total', { duplicate });
        expect(await publishes('true')).toBe(10);
        expect(await publishes('false')).toBe(0);
      }
    } finally {
      await cleanup();
    }
  });

  it('carries on after the broker crashes and comes back', async () => {
    const own = await startNatsServer();
    if (!own.crashAndRestart) {
      await own.stop();
      return;
    }
    const ncCrash = await connectNats(own.url, 'projector-crash-test');
    const topology = new Topology(uniquePrefix());
    const store = await openEventStore(
      { EVENT_STORE: 'jetstream' },
      { nc: ncCrash, topology, logger: silentLogger },
    );
    const driver = new Driver(new SessionCommandHandler({ store }));
    const projector = createProjector({
      nc: ncCrash,
      store,
      topology,
      logger: silentLogger,
      registry: new Registry(),
      settings: { retry: { initialDelayMs: 20, maxDelayMs: 250 } },
    });
    try {
      await projector.start();
      const buckets = await openProjectorBuckets(ncCrash, topology);
      await driver.run({
        type: 'OpenSession',
        sessionId: 'c1',
        tenantId: 'acme',
        actor,
        labels: {},
        browser: {},
        idleTimeoutMs: null,
      });
      await waitFor(async () => (await document(buckets.sessions, topology, 'acme', 'c1')) !== null, {
        description: 'c1 projected',
      });

      await own.crashAndRestart();

      // The same command id on every try: a try that landed but lost its answer is not appended twice.
      const commandId = randomUUID();
      await waitFor(
        async () => {
          await driver.run(
            {
              type: 'SubmitSteps',
              sessionId: 'c1',
              tenantId: 'acme',
              actor,
              steps: [{ stepId: 'after-crash', step: { action: 'click', selector: '#x' } }],
            },
            commandId,
          );
          return true;
        },
        { timeoutMs: 15_000, intervalMs: 100, description: 'the command side to reach the restarted broker' },
      );
      const doc = await waitFor(
        async () => {
          const d = await document(buckets.sessions, topology, 'acme', 'c1');
          return d?.stepCounts.total === 1 && d;
        },
        { timeoutMs: 15_000, description: 'the step projected after the crash' },
      );
      expect(doc.steps[0]!.stepId).toBe('after-crash');
      const jsm = await jetstreamManager(ncCrash);
      await waitFor(
        async () =>
          (await workMessages(jsm, topology)).some(
            (m) => m.subject === topology.stepsSubject('c1') && m.msgId === driver.eventIds.get('c1')![1],
          ),
        { timeoutMs: 15_000, description: 'the step dispatched after the crash' },
      );
    } finally {
      await projector.close();
      await store.close();
      await ncCrash.close();
      await own.stop();
    }
  });
});
