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
  type StepSpec,
} from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';
import { allowOrigin } from '../../test/egress.js';
import { html, page, startOrigin, type TestOrigin } from '../../test/origin.js';
import { WorkDriver } from '../../test/workDriver.js';
import { resolveChromiumPath } from '../browser.js';
import { createRobot, type Robot } from '../robot.js';
import { capturingLogger } from '../../test/logCapture.js';

const ACK_WAIT_MS = 5_000;
const ACTOR = { kind: 'api-key' as const, id: 'test-key' };

describe('a robot under the egress policy', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let store: EventStore;
  let handler: SessionCommandHandler;
  let topology: Topology;
  let robot: Robot;
  let site: TestOrigin;
  let tenantSite: TestOrigin;
  const drivers = new Map<string, WorkDriver>();
  const logLines: string[] = [];
  const registry = new Registry();

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'robot-egress-test');
    topology = new Topology(uniquePrefix());
    store = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
    handler = new SessionCommandHandler({ store });
    for (const tenantId of ['tenant-a', 'tenant-b'])
      drivers.set(
        tenantId,
        new WorkDriver({ js: jetstream(nc), topology, store, handler, tenantId, actor: ACTOR }),
      );
    await ensureWorkTopology(nc, topology, { ackWaitMs: ACK_WAIT_MS, stepMaxDeliver: 15 });
    site = await startOrigin((path, res) => html(res, 200, page('Shared', path)));
    tenantSite = await startOrigin((path, res) => html(res, 200, page('Tenant B only', path)));
    robot = createRobot({
      nc,
      store,
      topology,
      robotId: 'robot-egress',
      logger: capturingLogger(logLines),
      registry,
      chromiumPath: resolveChromiumPath(process.env.CHROMIUM_PATH),
      egress: {
        allow: [allowOrigin(site.url)],
        tenantAllow: new Map([['tenant-b', [allowOrigin(tenantSite.url)]]]),
      },
      maxSessions: 2,
      ackWaitMs: ACK_WAIT_MS,
      pullExpiresMs: 1_000,
    });
    await robot.start();
  });

  afterAll(async () => {
    await robot?.stop({ graceMs: 5_000 });
    await site?.close();
    await tenantSite?.close();
    await store?.close();
    await nc?.close();
    await server?.stop();
  });

  /** Opens a session of `tenantId` that carries on after a failed step, and runs `steps` in it. */
  async function runSession(tenantId: string, steps: StepSpec[]) {
    const driver = drivers.get(tenantId)!;
    const sessionId = randomUUID();
    const opened = await handler.handle({
      ...driver.command('OpenSession', sessionId),
      labels: {},
      browser: {},
      idleTimeoutMs: null,
      onStepFailure: 'continue',
    });
    await driver.publishAssignment(sessionId, opened.events[0]!.eventId);
    await driver.submit(
      sessionId,
      steps.map((step, i) => ({ stepId: `s${i + 1}`, step })),
    );
    const events = await waitFor(
      async () => {
        const recorded = await driver.events(sessionId);
        const done = recorded.filter(
          (r) => r.event.type === 'StepSucceeded' || r.event.type === 'StepDeadLettered',
        );
        return done.length === steps.length && recorded;
      },
      { timeoutMs: 30_000, description: `the ${steps.length} steps of ${tenantId}'s session to finish` },
    );
    return { sessionId, events: events.map((r) => r.event) };
  }

  it('fails a refused navigation as EGRESS_DENIED at once (no retry), and lets each tenant reach its own allow-list', async () => {
    const a = await runSession('tenant-a', [
      { action: 'navigate', url: `${site.url}/a` },
      { action: 'navigate', url: 'http://169.254.169.254/latest/meta-data/iam/?token=q-secret' },
      { action: 'navigate', url: `${tenantSite.url}/from-a` },
      { action: 'navigate', url: `${site.url}/redirect-free` },
    ]);
    const failed = a.events.filter((e) => e.type === 'StepFailed').map((e) => e.data);
    expect(failed).toEqual([
      expect.objectContaining({
        stepId: 's2',
        attempt: 1,
        final: true,
        retryInMs: null,
        error: { code: 'EGRESS_DENIED', message: 'egress denied: link-local 169.254.169.254 refused' },
      }),
      expect.objectContaining({
        stepId: 's3',
        attempt: 1,
        final: true,
        error: { code: 'EGRESS_DENIED', message: 'egress denied: loopback 127.0.0.1 refused' },
      }),
    ]);
    const succeeded = a.events.filter((e) => e.type === 'StepSucceeded');
    expect(succeeded.map((e) => (e.data as { stepId: string }).stepId)).toEqual(['s1', 's4']);
    expect(tenantSite.count('/from-a')).toBe(0);

    const b = await runSession('tenant-b', [{ action: 'navigate', url: `${tenantSite.url}/from-b` }]);
    expect(b.events.find((e) => e.type === 'StepSucceeded')?.data).toMatchObject({
      output: { kind: 'navigation', title: 'Tenant B only', status: 200 },
    });
    expect(tenantSite.count('/from-b')).toBe(1);

    // Every refusal is logged with the session and its tenant, never the URL's path or query.
    const denials = logLines
      .map((l) => JSON.parse(l) as { msg: string; egress?: Record<string, unknown> })
      .filter((l) => l.egress);
    expect(denials.map((l) => l.egress)).toEqual([
      expect.objectContaining({
        host: '169.254.169.254',
        rule: 'link-local',
        tenantId: 'tenant-a',
        sessionId: a.sessionId,
      }),
      expect.objectContaining({
        host: '127.0.0.1',
        rule: 'loopback',
        tenantId: 'tenant-a',
        sessionId: a.sessionId,
      }),
    ]);
    const metrics = await registry.metrics();
    expect(metrics).toContain('rpa_robot_egress_denied_total{rule="link-local"} 1');
    expect(metrics).toContain('rpa_robot_egress_denied_total{rule="loopback"} 1');
    const all = logLines.join('');
    expect(all).not.toContain('q-secret');
    expect(all).not.toContain('/latest/meta-data');
  });
});
