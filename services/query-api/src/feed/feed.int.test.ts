import type { AddressInfo } from 'node:net';
import { Kvm, type KV } from '@nats-io/kv';
import { Objm, type ObjectStore } from '@nats-io/obj';
import type { FastifyInstance } from 'fastify';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import {
  connectNats,
  createMetricsRegistry,
  openEventStore,
  silentLogger,
  singleTenantAuthenticator,
  Topology,
  type EventStore,
  type NatsConnection,
} from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';
import { buildApp } from '../app.js';
import { RobotIndex } from '../index/robotIndex.js';
import { SessionIndex } from '../index/sessionIndex.js';
import { putDocument, sessionDocument } from '../testing/sessionFixtures.js';
import type { FeedOptions } from './feedHub.js';
import { FeedClient } from '../testing/feedClient.js';

describe('WebSocket feed over a real sessions bucket', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  let artifacts: ObjectStore;
  let eventStore: EventStore;
  const cleanups: Array<() => Promise<unknown> | unknown> = [];

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'feed-test');
    const topology = new Topology(uniquePrefix());
    artifacts = await new Objm(nc).create(topology.artifactsBucket);
    eventStore = await openEventStore({ EVENT_STORE: 'jetstream' }, { nc, topology, logger: silentLogger });
  });
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
  afterAll(async () => {
    await eventStore?.close();
    await nc?.close();
    await server?.stop();
  });

  interface Fixture {
    kv: KV;
    topology: Topology;
    /** Feed URL of an app serving `tenant`. */
    feedUrl(tenant: string, feed?: Partial<FeedOptions>): Promise<string>;
    apps: FastifyInstance[];
    connect(url: string): Promise<FeedClient>;
  }

  async function fixture(): Promise<Fixture> {
    const topology = new Topology(uniquePrefix());
    const kv = await new Kvm(nc).create(topology.sessionsBucket);
    const index = new SessionIndex({ kv, logger: silentLogger });
    index.start();
    await index.ready;
    cleanups.push(() => index.stop());
    // The feed does not read the fleet: an unwatched robot index over an empty bucket will do.
    const robots = new RobotIndex({
      kv: await new Kvm(nc).create(topology.robotsBucket, topology.robotsBucketOptions()),
      logger: silentLogger,
    });
    const apps: FastifyInstance[] = [];
    return {
      kv,
      topology,
      apps,
      async feedUrl(tenant, feed) {
        const app = await buildApp({
          index,
          robots,
          eventStore,
          artifacts,
          authenticator: singleTenantAuthenticator(tenant),
          logger: silentLogger,
          registry: createMetricsRegistry('feed-test'),
          readiness: [],
          feed,
        });
        await app.listen({ port: 0, host: '127.0.0.1' });
        apps.push(app);
        cleanups.push(() => app.close());
        return `ws://127.0.0.1:${(app.server.address() as AddressInfo).port}/v1/feed`;
      },
      async connect(url) {
        const client = await FeedClient.connect(url);
        cleanups.push(() => client.close());
        return client;
      },
    };
  }

  it('sends the current document on subscribing to a session, then each of its changes and nothing else', async () => {
    const f = await fixture();
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'a', position: 1 }));
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'b', position: 2 }));
    const client = await f.connect(await f.feedUrl('acme'));
    client.send({ subscribe: { session: 'a' } });

    expect(await client.next()).toEqual({ type: 'subscribed', subscription: { session: 'a' } });
    expect(await client.nextDocument()).toMatchObject({ sessionId: 'a', position: 1 });

    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'a', status: 'closing', position: 3 }));
    expect(await client.nextDocument()).toMatchObject({ sessionId: 'a', status: 'closing', position: 3 });

    // Changes arrive in order, so b's change not showing up before a's next one proves it was not sent.
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'b', position: 4 }));
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'a', status: 'closed', position: 5 }));
    expect(await client.nextDocument()).toMatchObject({ sessionId: 'a', status: 'closed', position: 5 });

    // A session that does not exist yet can be followed; its creation arrives.
    client.send({ subscribe: { session: 'later' } });
    expect(await client.next()).toEqual({ type: 'subscribed', subscription: { session: 'later' } });
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'later', position: 6 }));
    expect(await client.nextDocument()).toMatchObject({ sessionId: 'later' });

    // After unsubscribing, a's changes stop.
    client.send({ unsubscribe: { session: 'a' } });
    expect(await client.next()).toEqual({ type: 'unsubscribed', subscription: { session: 'a' } });
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'a', position: 7 }));
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'later', position: 8 }));
    expect(await client.nextDocument()).toMatchObject({ sessionId: 'later', position: 8 });

    // A deleted session is announced to its subscribers.
    await f.kv.delete(f.topology.sessionKey('acme', 'later'));
    expect(await client.next()).toEqual({ type: 'sessionRemoved', sessionId: 'later' });
  });

  it("pushes every change of the caller's tenant to an all-subscriber and none of another tenant's", async () => {
    const f = await fixture();
    const acme = await f.connect(await f.feedUrl('acme'));
    const other = await f.connect(await f.feedUrl('other'));
    acme.send({ subscribe: { all: true } });
    other.send({ subscribe: { all: true } });
    expect(await acme.next()).toEqual({ type: 'subscribed', subscription: { all: true } });
    expect(await other.next()).toEqual({ type: 'subscribed', subscription: { all: true } });
    // The other tenant subscribing to an acme session by id gets an ack and nothing more.
    other.send({ subscribe: { session: 'a1' } });
    expect(await other.next()).toEqual({ type: 'subscribed', subscription: { session: 'a1' } });

    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'a1', position: 1 }));
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'o1', tenantId: 'other', position: 2 }));
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'a2', position: 3 }));
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'a1', status: 'closed', position: 4 }));
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'o2', tenantId: 'other', position: 5 }));

    const seenByAcme = [await acme.nextDocument(), await acme.nextDocument(), await acme.nextDocument()].map(
      (d) => [d.tenantId, d.sessionId, d.position],
    );
    expect(seenByAcme).toEqual([
      ['acme', 'a1', 1],
      ['acme', 'a2', 3],
      ['acme', 'a1', 4],
    ]);
    const seenByOther = [await other.nextDocument(), await other.nextDocument()].map((d) => [
      d.tenantId,
      d.sessionId,
    ]);
    expect(seenByOther).toEqual([
      ['other', 'o1'],
      ['other', 'o2'],
    ]);
    // o2 came last of all writes: had acme been sent an "other" document, it would be queued before it.
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'a3', position: 6 }));
    expect(await acme.nextDocument()).toMatchObject({ sessionId: 'a3' });
    expect(acme.received.every((m) => m.type !== 'session' || m.document.tenantId === 'acme')).toBe(true);
  });

  it('resumes from a position: sends only newer documents, oldest change first, then live ones', async () => {
    const f = await fixture();
    for (const [id, position] of [
      ['r1', 10],
      ['r2', 30],
      ['r3', 20],
      ['r4', 5],
    ] as const)
      await putDocument(f.kv, f.topology, sessionDocument({ sessionId: id, position }));
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'x', tenantId: 'other', position: 99 }));
    const client = await f.connect(await f.feedUrl('acme'));

    client.send({ subscribe: { all: true, fromPosition: 10 } });
    expect(await client.next()).toEqual({ type: 'subscribed', subscription: { all: true } });
    expect([await client.nextDocument(), await client.nextDocument()].map((d) => d.sessionId)).toEqual([
      'r3',
      'r2',
    ]);

    // A session already seen at its current position is not sent again; the ack of the next request comes first.
    client.send({ subscribe: { session: 'r2', fromPosition: 30 } });
    client.send({ subscribe: { session: 'r1', fromPosition: 9 } });
    expect(await client.next()).toEqual({ type: 'subscribed', subscription: { session: 'r2' } });
    expect(await client.next()).toEqual({ type: 'subscribed', subscription: { session: 'r1' } });
    expect(await client.nextDocument()).toMatchObject({ sessionId: 'r1', position: 10 });

    // Live changes follow; one document change reaches a client once, though two subscriptions match it.
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'r1', position: 40 }));
    await putDocument(f.kv, f.topology, sessionDocument({ sessionId: 'r4', position: 41 }));
    expect(await client.nextDocument()).toMatchObject({ sessionId: 'r1', position: 40 });
    expect(await client.nextDocument()).toMatchObject({ sessionId: 'r4', position: 41 });
  });

  it('answers malformed and unknown messages with an error frame and stays open; closes on an oversized one', async () => {
    const f = await fixture();
    const client = await f.connect(await f.feedUrl('acme', { maxSubscriptions: 2 }));

    client.send('{"subscribe": ');
    expect(await client.next()).toEqual({
      type: 'error',
      error: { code: 'INVALID_JSON', message: 'the message is not valid JSON' },
    });

    client.send({ hello: 'there' });
    const unknown = await client.next();
    expect(unknown).toMatchObject({ type: 'error', error: { code: 'INVALID_MESSAGE' } });
    expect(unknown.type === 'error' && unknown.error.message).toContain('hello');

    client.send({ subscribe: { session: 'a', all: true } });
    expect(await client.next()).toMatchObject({
      type: 'error',
      error: { code: 'INVALID_MESSAGE', message: expect.stringContaining('subscribe') },
    });
    client.send({ subscribe: { session: 'no spaces allowed' } });
    expect(await client.next()).toMatchObject({
      type: 'error',
      error: { code: 'INVALID_MESSAGE', message: expect.stringContaining('subscribe.session') },
    });
    client.send({ subscribe: { all: true, fromPosition: -1 } });
    expect(await client.next()).toMatchObject({
      type: 'error',
      error: { code: 'INVALID_MESSAGE', message: expect.stringContaining('subscribe.fromPosition') },
    });

    // Still open and serving.
    client.send({ subscribe: { session: 'a' } });
    client.send({ subscribe: { all: true } });
    client.send({ subscribe: { session: 'b' } });
    expect(await client.next()).toMatchObject({ type: 'subscribed' });
    expect(await client.next()).toMatchObject({ type: 'subscribed' });
    expect(await client.next()).toMatchObject({ type: 'error', error: { code: 'SUBSCRIPTION_LIMIT' } });

    client.send(JSON.stringify({ subscribe: { session: 'a' }, pad: 'x'.repeat(70 * 1024) }));
    expect(await client.next()).toMatchObject({ type: 'error', error: { code: 'MESSAGE_TOO_LARGE' } });
    expect(await client.closed).toEqual({ code: 1009, reason: 'message too large' });
  });

  it('drops a client that stops reading with 1013, and closes everyone with 1001 on shutdown', async () => {
    const f = await fixture();
    const url = await f.feedUrl('acme', { maxBufferedBytes: 64 * 1024 });
    const slow = await f.connect(url);
    const fine = await f.connect(url);
    slow.send({ subscribe: { all: true } });
    fine.send({ subscribe: { session: 'quiet' } });
    expect(await slow.next()).toMatchObject({ type: 'subscribed' });
    expect(await fine.next()).toMatchObject({ type: 'subscribed' });

    slow.ws.pause();
    const big = 'y'.repeat(400 * 1024);
    const dropped = async () =>
      /rpa_query_feed_slow_consumers_dropped\{[^}]*\} 1/.test(
        (await f.apps[0]!.inject({ method: 'GET', url: '/metrics' })).body,
      );
    for (let n = 1; n <= 80 && !(await dropped()); n++) {
      const doc = sessionDocument({ sessionId: 'busy', position: n });
      doc.steps[0]!.output = { kind: 'text', text: big };
      await putDocument(f.kv, f.topology, doc);
    }
    await waitFor(dropped, { description: 'the slow client dropped' });
    slow.ws.resume();
    expect((await slow.closed).code).toBe(1013);
    expect(slow.ws.readyState).toBe(WebSocket.CLOSED);

    // The other client was unaffected.
    expect(fine.ws.readyState).toBe(WebSocket.OPEN);
    await f.apps[0]!.close();
    expect(await fine.closed).toEqual({ code: 1001, reason: 'server shutting down' });
  });
});
