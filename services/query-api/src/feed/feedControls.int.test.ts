import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Kvm } from '@nats-io/kv';
import { Objm, type ObjectStore } from '@nats-io/obj';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  connectNats,
  createMetricsRegistry,
  openEventStore,
  SessionCommandHandler,
  sessionStreamId,
  silentLogger,
  Topology,
  type Authenticator,
  type EventStore,
  type NatsConnection,
  type SessionCommand,
} from '@rpa/shared';
import { startNatsServer, uniquePrefix, type NatsServerHandle } from '@rpa/shared/testing';
import { buildApp } from '../app.js';
import { RobotIndex } from '../index/robotIndex.js';
import { SessionIndex } from '../index/sessionIndex.js';
import { FeedClient } from '../testing/feedClient.js';

/** Every connection of an app is one tenant's, acting as one operator. */
const operatorOf =
  (tenantId: string): Authenticator =>
  async () => ({
    tenantId,
    actor: { kind: 'api-key', id: `ops-${tenantId}` },
    scopes: ['sessions:read', 'sessions:write'],
  });

describe('session controls over the WebSocket feed', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let topology: Topology;
  let artifacts: ObjectStore;
  let eventStore: EventStore;
  let index: SessionIndex;
  let robots: RobotIndex;
  /** The command side, as the command API and robots write: a separate handler on the same store. */
  let writer: SessionCommandHandler;
  const cleanups: Array<() => Promise<unknown> | unknown> = [];

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'feed-controls-test');
    topology = new Topology(uniquePrefix());
    artifacts = await new Objm(nc).create(topology.artifactsBucket);
    eventStore = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
    index = new SessionIndex({ kv: await new Kvm(nc).create(topology.sessionsBucket), logger: silentLogger });
    index.start();
    await index.ready;
    robots = new RobotIndex({
      kv: await new Kvm(nc).create(topology.robotsBucket, topology.robotsBucketOptions()),
      logger: silentLogger,
    });
    writer = new SessionCommandHandler({ store: eventStore });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    await index?.stop();
    await eventStore?.close();
    await nc?.close();
    await server?.stop();
  });

  /** A listening query API for `tenant` whose feed issues controls through its own handler on the store. */
  async function connect(tenant: string, withControls = true): Promise<FeedClient> {
    const app = await buildApp({
      index,
      robots,
      eventStore,
      artifacts,
      authenticator: operatorOf(tenant),
      logger: silentLogger,
      registry: createMetricsRegistry('feed-controls-test'),
      readiness: [],
      ...(withControls ? { commands: new SessionCommandHandler({ store: eventStore }) } : {}),
    });
    await app.listen({ port: 0, host: '127.0.0.1' });
    cleanups.push(() => app.close());
    const client = await FeedClient.connect(
      `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/v1/feed`,
    );
    cleanups.push(() => client.close());
    return client;
  }

  const command = (sessionId: string, body: Record<string, unknown>) =>
    writer.handle({
      commandId: randomUUID(),
      sessionId,
      tenantId: 'acme',
      at: new Date().toISOString(),
      actor: { kind: 'robot', id: 'robot-1' },
      robotId: 'robot-1',
      epoch: 1,
      ...body,
    } as SessionCommand);

  /** An acme session with one step. */
  async function session(): Promise<{ sessionId: string; stepId: string }> {
    const sessionId = randomUUID();
    const stepId = randomUUID();
    await command(sessionId, { type: 'OpenSession', labels: {}, browser: {}, idleTimeoutMs: null });
    await command(sessionId, {
      type: 'SubmitSteps',
      steps: [{ stepId, step: { action: 'click', selector: '#a' } }],
    });
    return { sessionId, stepId };
  }

  const events = (sessionId: string) => eventStore.readStream(sessionStreamId(sessionId));

  it('pauses, resumes, retries a failed step and cancels, answering each with a control-result', async () => {
    const client = await connect('acme');
    const { sessionId, stepId } = await session();

    client.send({ type: 'pause', sessionId, requestId: 'r1' });
    expect(await client.next()).toEqual({
      type: 'control-result',
      requestId: 'r1',
      control: 'pause',
      sessionId,
      ok: true,
      status: 'paused',
    });
    client.send({ type: 'resume', sessionId });
    expect(await client.next()).toMatchObject({ type: 'control-result', ok: true, status: 'open' });

    // The step has not failed: the decider refuses, and the answer carries its code.
    client.send({ type: 'retry', sessionId, stepId, requestId: 'r3' });
    expect(await client.next()).toMatchObject({
      type: 'control-result',
      requestId: 'r3',
      control: 'retry',
      stepId,
      ok: false,
      error: { code: 'ILLEGAL_TRANSITION' },
    });

    await command(sessionId, { type: 'ClaimSession' });
    await command(sessionId, { type: 'StartStep', stepId, attempt: 1 });
    await command(sessionId, {
      type: 'CompleteStep',
      stepId,
      attempt: 1,
      durationMs: 4,
      outcome: { status: 'failed', error: { code: 'SELECTOR_NOT_FOUND', message: 'no #a' } },
    });
    client.send({ type: 'retry', sessionId, stepId, requestId: 'r4' });
    expect(await client.next()).toMatchObject({ requestId: 'r4', ok: true, status: 'open' });

    client.send({ type: 'cancel', sessionId, reason: 'done here', requestId: 'r5' });
    expect(await client.next()).toMatchObject({ requestId: 'r5', ok: true, status: 'cancelled' });

    const recorded = await events(sessionId);
    expect(recorded.map((e) => e.type)).toEqual([
      'SessionOpened',
      'StepSubmitted',
      'SessionPaused',
      'SessionResumed',
      'SessionClaimed',
      'StepStarted',
      'StepFailed',
      'StepDeadLettered',
      'SessionPaused',
      'StepRetried',
      'SessionResumed',
      'SessionCancelled',
    ]);
    // Issued as the connection's operator, like the command API's routes.
    expect(recorded[2]?.metadata).toMatchObject({
      tenantId: 'acme',
      commandType: 'PauseSession',
      actor: { kind: 'api-key', id: 'ops-acme' },
    });
    expect(recorded.at(-1)?.data).toEqual({ reason: 'done here' });
  });

  it('answers a malformed control with an error frame naming the field, appending nothing', async () => {
    const client = await connect('acme');
    const { sessionId } = await session();
    const before = (await events(sessionId)).length;

    client.send({ type: 'retry', sessionId, requestId: 'bad-1' });
    const missingStep = await client.next();
    expect(missingStep).toMatchObject({
      type: 'error',
      requestId: 'bad-1',
      error: { code: 'INVALID_MESSAGE' },
    });
    expect(missingStep.type === 'error' && missingStep.error.message).toMatch(/^stepId: /);

    client.send({ type: 'pause', sessionId: 'not a session id!' });
    const badId = await client.next();
    expect(badId.type === 'error' && badId.error.message).toMatch(/^sessionId: /);

    client.send({ type: 'explode', sessionId });
    const badType = await client.next();
    expect(badType.type === 'error' && badType.error.message).toMatch(/^type: /);

    client.send({ type: 'pause', sessionId, force: true });
    const extra = await client.next();
    expect(extra.type === 'error' && extra.error.message).toContain('force');

    // The connection still serves controls after refusing those.
    client.send({ type: 'pause', sessionId, requestId: 'ok-1' });
    expect(await client.next()).toMatchObject({ requestId: 'ok-1', ok: true, status: 'paused' });
    expect((await events(sessionId)).map((e) => e.type).slice(before)).toEqual(['SessionPaused']);
  });

  it('scopes controls to the connection’s tenant: another tenant’s session is not found', async () => {
    const globex = await connect('globex');
    const { sessionId, stepId } = await session();
    globex.send({ type: 'cancel', sessionId, requestId: 'x' });
    expect(await globex.next()).toMatchObject({
      requestId: 'x',
      ok: false,
      error: { code: 'SESSION_NOT_FOUND' },
    });
    globex.send({ type: 'retry', sessionId, stepId });
    expect(await globex.next()).toMatchObject({ ok: false, error: { code: 'SESSION_NOT_FOUND' } });
    expect((await events(sessionId)).map((e) => e.type)).toEqual(['SessionOpened', 'StepSubmitted']);
  });

  it('answers CONTROLS_UNAVAILABLE when the feed has no command handler, and still serves subscriptions', async () => {
    const client = await connect('acme', false);
    const { sessionId } = await session();
    client.send({ type: 'pause', sessionId, requestId: 'r' });
    expect(await client.next()).toMatchObject({
      type: 'error',
      requestId: 'r',
      error: { code: 'CONTROLS_UNAVAILABLE' },
    });
    client.send({ subscribe: { session: sessionId } });
    expect(await client.next()).toEqual({ type: 'subscribed', subscription: { session: sessionId } });
    expect((await events(sessionId)).map((e) => e.type)).toEqual(['SessionOpened', 'StepSubmitted']);
  });
});
