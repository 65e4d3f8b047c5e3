import { randomUUID } from 'node:crypto';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SchemaError } from '../errors.js';
import { connectNats, type NatsConnection } from '../nats/connection.js';
import { Topology } from '../nats/topology.js';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '../testing/index.js';
import { EventStoreUnavailableError, InvalidAppendError, WrongExpectedVersionError } from './errors.js';
import { JetStreamEventStore } from './jetstream.js';
import { commitHeaders, encodeCommitBody } from './jetstreamCommit.js';
import type { EventToAppend, RecordedEvent } from './port.js';

function event(data: unknown = { n: 1 }): EventToAppend {
  return { eventId: randomUUID(), type: 'Tested', data, metadata: {} };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the operation to be rejected');
}

describe('JetStreamEventStore on nats-server', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'jetstream-store-test');
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it('stores one append as one message on the stream subject, with revision headers', async () => {
    const topology = new Topology(uniquePrefix());
    const store = await JetStreamEventStore.create(nc, topology);
    const batch = [event(), event(), event()];
    const result = await store.append('s-1', batch, { expectedVersion: 'no_stream' });
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(topology.eventsStream);
    expect(info.state.messages).toBe(1);
    const stored = await jsm.streams.getMessage(topology.eventsStream, {
      last_by_subj: topology.eventSubject('s-1'),
    });
    expect(stored?.header.get('Rpa-Revision')).toBe('0');
    expect(stored?.header.get('Rpa-Count')).toBe('3');
    expect(stored?.header.get('Nats-Msg-Id')).toBe(batch[0]!.eventId);
    expect(result.position).toBe(stored!.seq * 4_096 + 2);
    const [read] = await store.readStream('s-1');
    expect(read!.recordedAt).toBe(stored!.time.toISOString());
    await store.close();
  });

  it('lets deduplication win over the expected-sequence check on this server (what retries rely on)', async () => {
    const topology = new Topology(uniquePrefix());
    await JetStreamEventStore.create(nc, topology);
    const js = jetstream(nc);
    const subject = topology.eventSubject('fact');
    await js.publish(subject, 'a', { msgID: 'first', expect: { lastSubjectSequence: 0 } });
    await js.publish(subject, 'b', { msgID: 'second', expect: { lastSubjectSequence: 1 } });
    const retry = await js.publish(subject, 'a', { msgID: 'first', expect: { lastSubjectSequence: 0 } });
    expect(retry).toMatchObject({ seq: 1, duplicate: true });
  });

  it('recognises a retry whose message id has left the dedup window by its place in the stream', async () => {
    const topology = new Topology(uniquePrefix());
    const store = await JetStreamEventStore.create(nc, topology);
    const jsm = await jetstreamManager(nc);
    const info = await jsm.streams.info(topology.eventsStream);
    await jsm.streams.update(topology.eventsStream, { ...info.config, duplicate_window: 200 * 1_000_000 });

    const first = [event(), event()];
    const original = await store.append('late', first, { expectedVersion: 'no_stream' });
    await store.append('late', [event()], { expectedVersion: 1 });
    const middle = [event()];
    const second = await store.append('late', middle, { expectedVersion: 2 });
    await store.append('late', [event()], { expectedVersion: 3 });
    // The window has passed once a probe published after these appends is no longer a duplicate.
    const js = jetstream(nc);
    const probe = topology.eventSubject('probe');
    await js.publish(probe, 'p', { msgID: 'probe' });
    await waitFor(async () => !(await js.publish(probe, 'p', { msgID: 'probe' })).duplicate, {
      description: 'the dedup window to expire',
    });

    expect(await store.append('late', first, { expectedVersion: 'no_stream' })).toEqual(original);
    expect(await store.append('late', middle, { expectedVersion: 2 })).toEqual(second);
    const other = await rejection(store.append('late', [event()], { expectedVersion: 2 }));
    expect(other).toBeInstanceOf(WrongExpectedVersionError);
    expect(await store.readStream('late')).toHaveLength(5);
    await store.close();
  });

  it('answers a retry whose first attempt landed unseen (a lost acknowledgement) with the original result', async () => {
    const topology = new Topology(uniquePrefix());
    const first = await JetStreamEventStore.create(nc, topology);
    const retrying = await JetStreamEventStore.create(nc, topology);
    await first.append('lost-ack', [event()], { expectedVersion: 'no_stream' });
    // The retrying store knows the stream at version 0; the append it retries landed through another path.
    expect(await retrying.readStream('lost-ack')).toHaveLength(1);
    const batch = [event(), event()];
    const original = await first.append('lost-ack', batch, { expectedVersion: 0 });
    expect(await retrying.append('lost-ack', batch, { expectedVersion: 0 })).toEqual(original);
    expect(await retrying.readStream('lost-ack')).toHaveLength(3);
    await first.close();
    await retrying.close();
  });

  it('reads and appends correctly from a second store that has never seen the stream', async () => {
    const topology = new Topology(uniquePrefix());
    const writer = await JetStreamEventStore.create(nc, topology);
    const reader = await JetStreamEventStore.create(nc, topology);
    const written: EventToAppend[] = [];
    let version = -1;
    for (let i = 0; i < 12; i++) {
      const batch = Array.from({ length: 1 + (i % 3) }, () => event({ i }));
      written.push(...batch);
      version = (await writer.append('long', batch, { expectedVersion: version < 0 ? 'no_stream' : version }))
        .nextExpectedVersion;
      await writer.append(`noise-${i}`, [event()], { expectedVersion: 'any' });
    }
    for (const from of [0, 1, 7, 20, version]) {
      const read = await reader.readStream('long', { fromRevision: from });
      expect(read.map((e) => e.eventId)).toEqual(written.slice(from).map((e) => e.eventId));
    }
    // The reader learned the stream's end; the writer's cache is now stale and the server corrects it.
    const byReader = await reader.append('long', [event()], { expectedVersion: version });
    const conflict = await rejection(writer.append('long', [event()], { expectedVersion: version }));
    expect(conflict).toMatchObject({ actual: byReader.nextExpectedVersion });
    const byWriter = await writer.append('long', [event()], { expectedVersion: 'any' });
    expect(byWriter.nextExpectedVersion).toBe(byReader.nextExpectedVersion + 1);
    expect((await reader.readStream('long')).map((e) => e.revision)).toEqual(
      Array.from({ length: version + 3 }, (_, i) => i),
    );
    const jsm = await jetstreamManager(nc);
    await waitFor(async () => (await jsm.streams.info(topology.eventsStream)).state.consumer_count === 0, {
      description: 'read consumers to be deleted',
    });
    await writer.close();
    await reader.close();
  });

  it('lets exactly one of two stores racing on the same expected version win', async () => {
    const topology = new Topology(uniquePrefix());
    const left = await JetStreamEventStore.create(nc, topology);
    const right = await JetStreamEventStore.create(nc, topology);
    let version = -1;
    for (let round = 0; round < 20; round++) {
      const expectedVersion = version < 0 ? 'no_stream' : version;
      const outcomes = await Promise.allSettled([
        left.append('duel', [event({ round })], { expectedVersion }),
        right.append('duel', [event({ round })], { expectedVersion }),
      ]);
      const won = outcomes.filter((o) => o.status === 'fulfilled');
      const lost = outcomes.filter((o) => o.status === 'rejected');
      expect(won).toHaveLength(1);
      expect(lost[0]?.reason).toBeInstanceOf(WrongExpectedVersionError);
      version = won[0]!.value.nextExpectedVersion;
    }
    expect((await left.readStream('duel')).map((e) => e.revision)).toEqual(
      Array.from({ length: 20 }, (_, i) => i),
    );
    await left.close();
    await right.close();
  });

  it('refuses an append larger than the server accepts, and stores nothing', async () => {
    const store = await JetStreamEventStore.create(nc, new Topology(uniquePrefix()));
    const big = event({ blob: 'x'.repeat(1_100_000) });
    expect(await rejection(store.append('big', [big], { expectedVersion: 'any' }))).toBeInstanceOf(
      InvalidAppendError,
    );
    expect(await store.readStream('big')).toEqual([]);
    await store.close();
  });

  it('throws SchemaError for a message on an event subject that this adapter did not write', async () => {
    const topology = new Topology(uniquePrefix());
    const store = await JetStreamEventStore.create(nc, topology);
    const h = headers();
    h.set('Rpa-Count', '1');
    await jetstream(nc).publish(topology.eventSubject('forged'), '[]', { headers: h });
    const error = await rejection(store.readStream('forged'));
    expect(error).toBeInstanceOf(SchemaError);
    expect((error as SchemaError).issues.map((i) => i.path)).toContain('Rpa-Revision');

    const subscription = store.subscribeToAll({ from: 'start' });
    const failure = await rejection(
      (async () => {
        for await (const e of subscription) void e;
      })(),
    );
    expect(failure).toBeInstanceOf(SchemaError);
    await store.close();
  });

  it('starts a read at its hint: nothing before the hinted commit is scanned', async () => {
    const topology = new Topology(uniquePrefix());
    const writer = await JetStreamEventStore.create(nc, topology);
    const js = jetstream(nc);
    const subject = topology.eventSubject('hinted');
    // A message no reader can map to revisions, then commits as the adapter writes them.
    await js.publish(subject, 'not a commit');
    const first = event({ n: 0 });
    const ack = await js.publish(subject, encodeCommitBody([first]), { headers: commitHeaders(0, 1) });
    await writer.append('hinted', [event({ n: 1 }), event({ n: 2 })], { expectedVersion: 0 });
    await writer.close();

    const unhinted = await JetStreamEventStore.create(nc, topology);
    expect(await rejection(unhinted.readStream('hinted'))).toBeInstanceOf(SchemaError);
    await unhinted.close();

    const reader = await JetStreamEventStore.create(nc, topology);
    const read = await reader.readStream('hinted', { hint: { revision: 0, position: ack.seq * 4_096 } });
    expect(read.map((e) => [e.revision, e.data])).toEqual([
      [0, { n: 0 }],
      [1, { n: 1 }],
      [2, { n: 2 }],
    ]);
    // A hint past the revision asked for is noticed: the read starts again where it would have without it.
    const wrong = { revision: 0, position: (ack.seq + 1) * 4_096 };
    expect(await reader.readStream('hinted', { hint: wrong })).toEqual(read);
    await reader.close();
    const fresh = await JetStreamEventStore.create(nc, topology);
    expect(await rejection(fresh.readStream('hinted', { hint: wrong }))).toBeInstanceOf(SchemaError);
    await fresh.close();
  });

  it('ends open subscriptions on close, refuses further calls, and leaves the connection open', async () => {
    const store = await JetStreamEventStore.create(nc, new Topology(uniquePrefix()));
    await store.append('c-1', [event()], { expectedVersion: 'no_stream' });
    const subscription = store.subscribeToAll({ from: 'start' });
    const seen: RecordedEvent[] = [];
    const done = (async () => {
      for await (const e of subscription) seen.push(e);
    })();
    await waitFor(() => seen.length === 1, { description: 'the first event' });
    await store.close();
    await done;
    await store.close();
    expect(await rejection(store.append('c-1', [event()], { expectedVersion: 0 }))).toBeInstanceOf(
      EventStoreUnavailableError,
    );
    expect(await rejection(store.ping())).toBeInstanceOf(EventStoreUnavailableError);
    expect(nc.isClosed()).toBe(false);
  });

  it('keeps a subscription going across a broker crash, with no gap and no duplicate', async () => {
    const own = await startNatsServer({ ...process.env, NATS_URL: '' });
    const conn = await connectNats(own.url, 'jetstream-crash-test');
    try {
      // A short request deadline: a request that reaches the server before JetStream recovered goes unanswered.
      const store = await JetStreamEventStore.create(conn, new Topology(uniquePrefix()), {
        requestTimeoutMs: 1_000,
      });
      const before = [event(), event()];
      await store.append('crash', before, { expectedVersion: 'no_stream' });
      const subscription = store.subscribeToAll({ from: 'start' });
      const seen: RecordedEvent[] = [];
      const done = (async () => {
        for await (const e of subscription) seen.push(e);
      })();
      await waitFor(() => seen.length === 2, { description: 'events before the crash' });
      await own.crashAndRestart!();
      await waitFor(() => store.ping().then(() => true), {
        timeoutMs: 20_000,
        description: 'the store again',
      });
      const after = [event()];
      await store.append('crash', after, { expectedVersion: 1 });
      await waitFor(() => seen.length >= 3, { timeoutMs: 20_000, description: 'the event after the crash' });
      expect(seen.map((e) => e.eventId)).toEqual([...before, ...after].map((e) => e.eventId));
      await subscription.close();
      await done;
      await store.close();
    } finally {
      await conn.close();
      await own.stop();
    }
  });

  it('maps an unreachable server to EventStoreUnavailableError', async () => {
    const own = await startNatsServer({ ...process.env, NATS_URL: '' });
    const conn = await connectNats(own.url, 'jetstream-unavailable-test');
    try {
      const store = await JetStreamEventStore.create(conn, new Topology(uniquePrefix()), {
        requestTimeoutMs: 500,
      });
      await store.append('u-1', [event()], { expectedVersion: 'no_stream' });
      await own.stop();
      for (const call of [
        () => store.ping(),
        () => store.readStream('u-1'),
        () => store.append('u-1', [event()], { expectedVersion: 0 }),
      ]) {
        expect(await rejection(call())).toBeInstanceOf(EventStoreUnavailableError);
      }
      await store.close();
    } finally {
      await conn.close();
      await own.stop();
    }
  });
});
