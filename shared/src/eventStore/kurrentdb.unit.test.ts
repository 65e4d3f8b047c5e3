import { randomUUID } from 'node:crypto';
import {
  ANY,
  NO_STREAM,
  START,
  STREAM_EXISTS,
  StreamNotFoundError,
  UnavailableError,
  WrongExpectedVersionError as ClientWrongExpectedVersionError,
  type AppendResult as ClientAppendResult,
  type AppendToStreamOptions,
  type EventData,
  type Position,
  type ReadStreamOptions,
  type ResolvedEvent,
  type SubscribeToAllOptions,
} from '@kurrent/kurrentdb-client';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../errors.js';
import { silentLogger } from '../logging/logger.js';
import { freePort } from '../testing/index.js';
import { waitFor } from '../testing/waitFor.js';
import { openEventStore } from './factory.js';
import { EventStoreUnavailableError, InvalidAppendError, WrongExpectedVersionError } from './errors.js';
import { KurrentDbEventStore, type KurrentClientLike } from './kurrentdb.js';
import {
  mapClientError,
  numberToPosition,
  PositionOutOfRangeError,
  positionToNumber,
  revisionToNumber,
  StreamNames,
  toActualVersion,
  toEventData,
  toRecordedEvent,
  toStreamState,
  tryPositionToNumber,
} from './kurrentdbMapping.js';
import type { RecordedEvent } from './port.js';

const at = (n: bigint, prepare = n): Position => ({ commit: n, prepare });

/** A resolved event as the client yields it from a read or a subscription. */
function resolved(
  streamId: string,
  revision: number,
  position: number,
  overrides: Record<string, unknown> = {},
): ResolvedEvent {
  return {
    event: {
      streamId,
      id: randomUUID(),
      isJson: true,
      revision: BigInt(revision),
      type: 'Tested',
      created: new Date('2026-01-02T03:04:05.678Z'),
      data: { n: revision },
      metadata: { tenantId: 'acme' },
      position: at(BigInt(position)),
      ...overrides,
    },
    commitPosition: BigInt(position),
  } as ResolvedEvent;
}

/** A minimal in-process KurrentDB: one log, streams by name, the server's conflict and idempotency rules. */
class FakeClient implements KurrentClientLike {
  readonly log: ResolvedEvent[] = [];
  readonly appends: Array<{ streamName: string; events: EventData[]; options: AppendToStreamOptions }> = [];
  readonly subscriptions: Array<{ options: SubscribeToAllOptions; unsubscribed: boolean }> = [];
  /** Positions as the server would report them on an append; `undefined` drops them (as an idempotent retry does). */
  reportPosition = true;
  failNext: Error | undefined;
  disposed = false;
  private nextPosition = 1_000n;

  stream(name: string): ResolvedEvent[] {
    return this.log.filter((r) => r.event!.streamId === name);
  }

  async appendToStream(
    streamName: string,
    events: EventData[],
    options: AppendToStreamOptions,
  ): Promise<ClientAppendResult> {
    this.appends.push({ streamName, events, options });
    if (this.failNext) {
      const error = this.failNext;
      this.failNext = undefined;
      throw error;
    }
    const stream = this.stream(streamName);
    const current = stream.length === 0 ? NO_STREAM : BigInt(stream.length - 1);
    const state = options.streamState ?? ANY;
    const ok =
      state === ANY ||
      (state === NO_STREAM && current === NO_STREAM) ||
      (state === STREAM_EXISTS && current !== NO_STREAM) ||
      state === current;
    if (!ok) {
      throw new ClientWrongExpectedVersionError(undefined, { streamName, expected: state, current });
    }
    let position: Position | undefined;
    for (const e of events) {
      const p = this.nextPosition;
      this.nextPosition += 137n;
      const r = resolved(streamName, this.stream(streamName).length, Number(p), {
        id: e.id,
        type: e.type,
        data: e.data,
        metadata: e.metadata,
      });
      this.log.push(r);
      // Like the server, one position for the whole write (here: that of its first event).
      position ??= at(p);
    }
    return {
      success: true,
      nextExpectedRevision: BigInt(this.stream(streamName).length - 1),
      ...(this.reportPosition ? { position } : {}),
    };
  }

  async *readStream(streamName: string, options: ReadStreamOptions): AsyncIterable<ResolvedEvent> {
    const stream = this.stream(streamName);
    if (stream.length === 0) throw new StreamNotFoundError(undefined, streamName);
    const from = Number(options.fromRevision === START ? 0n : (options.fromRevision as bigint));
    const max = options.maxCount === undefined ? Infinity : Number(options.maxCount);
    yield* stream.slice(from, from + max);
  }

  subscribeToAll(options: SubscribeToAllOptions) {
    const record = { options, unsubscribed: false };
    this.subscriptions.push(record);
    const log = this.log;
    let destroyed = false;
    let wake: (() => void) | undefined;
    return {
      async unsubscribe() {
        record.unsubscribed = true;
      },
      destroy() {
        destroyed = true;
        wake?.();
        return this;
      },
      async *[Symbol.asyncIterator]() {
        // The fake delivers the whole log from its start; the adapter must filter and skip as needed.
        let i = 0;
        while (!destroyed) {
          if (i < log.length) {
            yield log[i++]!;
            continue;
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
            setImmediate(resolve);
          });
        }
        throw new Error('Premature close');
      },
    } as unknown as ReturnType<KurrentClientLike['subscribeToAll']>;
  }

  async dispose(): Promise<void> {
    this.disposed = true;
  }
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a rejection');
}

function toAppend(type = 'Tested') {
  return { eventId: randomUUID(), type, data: { a: [1, 'b', null] }, metadata: { tenantId: 'acme' } };
}

describe('KurrentDB position mapping', () => {
  it('maps a position with equal commit and prepare to that number and back, exactly', () => {
    for (const n of [0, 1, 4096, 123_456_789_012, Number.MAX_SAFE_INTEGER]) {
      const position = numberToPosition(n);
      expect(position).toEqual({ commit: BigInt(n), prepare: BigInt(n) });
      expect(positionToNumber(position)).toBe(n);
    }
  });

  it('refuses a position it cannot carry exactly instead of rounding it', () => {
    expect(() => positionToNumber(at(10n, 5n))).toThrow(PositionOutOfRangeError);
    expect(() => positionToNumber(at(BigInt(Number.MAX_SAFE_INTEGER) + 1n))).toThrow(/at most/);
    expect(() => positionToNumber(undefined)).toThrow(PositionOutOfRangeError);
    // An idempotent retry reports no position, or an out-of-range one: "unknown", not an error.
    expect(tryPositionToNumber(undefined)).toBeUndefined();
    expect(tryPositionToNumber(at(2n ** 64n - 1n))).toBeUndefined();
    expect(tryPositionToNumber(at(7n))).toBe(7);
  });

  it('refuses to turn a non-integer or negative number into a position', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.MAX_SAFE_INTEGER + 2])
      expect(() => numberToPosition(bad)).toThrow(RangeError);
  });

  it('maps revisions within the safe range and refuses others', () => {
    expect(revisionToNumber(0n)).toBe(0);
    expect(revisionToNumber(41n)).toBe(41);
    expect(() => revisionToNumber(-1n)).toThrow(PositionOutOfRangeError);
    expect(() => revisionToNumber(BigInt(Number.MAX_SAFE_INTEGER) + 1n)).toThrow(PositionOutOfRangeError);
  });
});

describe('KurrentDB expected versions and errors', () => {
  it('maps every expected version to the stream state of the client', () => {
    expect(toStreamState('any')).toBe(ANY);
    expect(toStreamState('no_stream')).toBe(NO_STREAM);
    expect(toStreamState('stream_exists')).toBe(STREAM_EXISTS);
    expect(toStreamState(0)).toBe(0n);
    expect(toStreamState(17)).toBe(17n);
    expect(() => toStreamState(-1)).toThrow(InvalidAppendError);
    expect(() => toStreamState(1.5)).toThrow(InvalidAppendError);
  });

  it("maps the stream's actual state, including the wire's -1 for no stream", () => {
    expect(toActualVersion(NO_STREAM)).toBe('no_stream');
    expect(toActualVersion(-1n)).toBe('no_stream');
    expect(toActualVersion(3n)).toBe(3);
    expect(toActualVersion(undefined)).toBe('unknown');
  });

  it("maps the client's wrong-expected-version error to the port's conflict", () => {
    const error = new ClientWrongExpectedVersionError(undefined, {
      streamName: 'ns:cart-1',
      expected: 0n,
      current: 1n,
    });
    const mapped = mapClientError(error, { operation: 'append', streamId: 'cart-1', expected: 0 });
    expect(mapped).toBeInstanceOf(WrongExpectedVersionError);
    expect(mapped).toMatchObject({
      code: 'WRONG_EXPECTED_VERSION',
      streamId: 'cart-1',
      expected: 0,
      actual: 1,
    });

    const absent = new ClientWrongExpectedVersionError(undefined, {
      streamName: 'cart-2',
      expected: STREAM_EXISTS,
      current: NO_STREAM,
    });
    expect(
      mapClientError(absent, { operation: 'append', streamId: 'cart-2', expected: 'stream_exists' }),
    ).toMatchObject({ expected: 'stream_exists', actual: 'no_stream' });
  });

  it('maps an unreachable server to a retryable error and a refused request to an invalid append', () => {
    const down = mapClientError(new UnavailableError(undefined, 'connection refused'), {
      operation: 'append',
      streamId: 's-1',
    });
    expect(down).toBeInstanceOf(EventStoreUnavailableError);
    expect(down.message).toContain('connection refused');
    const refused = mapClientError(
      Object.assign(new Error('too big'), { type: 'maximum-append-size-exceeded' }),
      {
        operation: 'append',
      },
    );
    expect(refused).toBeInstanceOf(InvalidAppendError);
    expect(mapClientError('boom', { operation: 'read' })).toBeInstanceOf(EventStoreUnavailableError);
    const own = new InvalidAppendError('mine');
    expect(mapClientError(own, { operation: 'append' })).toBe(own);
  });
});

describe('KurrentDB events and stream names', () => {
  it('writes JSON data and metadata under the caller-given event id', () => {
    const e = toAppend();
    const data = toEventData(e);
    expect(data).toMatchObject({
      id: e.eventId,
      type: 'Tested',
      contentType: 'application/json',
      data: e.data,
      metadata: e.metadata,
    });
  });

  it("reads an event back as the port's event: stream id without namespace, numbers, ISO time", () => {
    const names = new StreamNames('t1');
    const r = resolved('t1:session-9', 4, 8_192, { metadata: undefined });
    const recorded = toRecordedEvent(r, names);
    expect(recorded).toEqual({
      eventId: r.event!.id,
      type: 'Tested',
      data: { n: 4 },
      metadata: undefined,
      streamId: 'session-9',
      revision: 4,
      position: 8_192,
      recordedAt: '2026-01-02T03:04:05.678Z',
    } satisfies RecordedEvent);
  });

  it('ignores what is not one of ours: no event, binary events, system and foreign streams', () => {
    const names = new StreamNames('t1');
    expect(toRecordedEvent({}, names)).toBeUndefined();
    expect(toRecordedEvent(resolved('t1:s-1', 0, 1, { isJson: false }), names)).toBeUndefined();
    expect(toRecordedEvent(resolved('$stats-0.0.0.0:2113', 0, 1), names)).toBeUndefined();
    expect(toRecordedEvent(resolved('t2:s-1', 0, 1), names)).toBeUndefined();
    expect(toRecordedEvent(resolved('s-1', 0, 1), new StreamNames())).toMatchObject({ streamId: 's-1' });
    expect(toRecordedEvent(resolved('$$s-1', 0, 1), new StreamNames())).toBeUndefined();
  });

  it('builds namespaced names and subscription prefixes that cannot overlap', () => {
    const names = new StreamNames('t1');
    expect(names.toKurrent('session-1')).toBe('t1:session-1');
    expect(names.filterPrefix('session-')).toBe('t1:session-');
    expect(names.filterPrefix(undefined)).toBe('t1:');
    expect(new StreamNames().filterPrefix(undefined)).toBeUndefined();
    expect(new StreamNames().filterPrefix('session-')).toBe('session-');
    expect(() => new StreamNames('a:b')).toThrow(RangeError);
  });
});

describe('KurrentDbEventStore over a fake client', () => {
  function setup() {
    const client = new FakeClient();
    const store = new KurrentDbEventStore(client, { namespace: 'ns' });
    return { client, store };
  }

  it('appends with the expected revision and the caller event ids, and reports the last event', async () => {
    const { client, store } = setup();
    const one = toAppend();
    expect(await store.append('s-1', [one], { expectedVersion: 'no_stream' })).toEqual({
      nextExpectedVersion: 0,
      position: 1_000,
    });
    const batch = [toAppend(), toAppend(), toAppend()];
    // The server reports the write's position; the adapter reads the last event's own.
    const result = await store.append('s-1', batch, { expectedVersion: 0 });
    expect(result).toEqual({ nextExpectedVersion: 3, position: 1_000 + 3 * 137 });
    expect(client.appends.map((a) => [a.streamName, a.options.streamState])).toEqual([
      ['ns:s-1', NO_STREAM],
      ['ns:s-1', 0n],
    ]);
    expect(client.appends[1]!.events.map((e) => e.id)).toEqual(batch.map((e) => e.eventId));
  });

  it('reads the position back when the append reports none (an idempotent retry)', async () => {
    const { client, store } = setup();
    client.reportPosition = false;
    const e = toAppend();
    const result = await store.append('s-2', [e], { expectedVersion: 'no_stream' });
    expect(result).toEqual({ nextExpectedVersion: 0, position: 1_000 });

    // A reported revision that holds another event is not silently accepted.
    client.appendToStream = async () => ({ success: true, nextExpectedRevision: 0n });
    const error = await rejection(store.append('s-2', [toAppend()], { expectedVersion: 'any' }));
    expect(error).toBeInstanceOf(EventStoreUnavailableError);
    expect((error as Error).message).toContain(e.eventId);
  });

  it('maps a conflict, also one reported instead of thrown', async () => {
    const { client, store } = setup();
    await store.append('s-4', [toAppend(), toAppend()], { expectedVersion: 'no_stream' });
    const thrown = await rejection(store.append('s-4', [toAppend()], { expectedVersion: 0 }));
    expect(thrown).toBeInstanceOf(WrongExpectedVersionError);
    expect(thrown).toMatchObject({ streamId: 's-4', expected: 0, actual: 1 });

    client.appendToStream = async () => ({ success: false, nextExpectedRevision: -1n });
    const reported = await rejection(store.append('s-5', [toAppend()], { expectedVersion: 2 }));
    expect(reported).toMatchObject({ streamId: 's-5', expected: 2, actual: 'no_stream' });
  });

  it('validates an append before calling the server and maps transport failures', async () => {
    const { client, store } = setup();
    expect(await rejection(store.append('bad id', [toAppend()], { expectedVersion: 'any' }))).toBeInstanceOf(
      InvalidAppendError,
    );
    expect(client.appends).toHaveLength(0);
    client.failNext = new UnavailableError(undefined, 'no leader');
    expect(await rejection(store.append('s-6', [toAppend()], { expectedVersion: 'any' }))).toBeInstanceOf(
      EventStoreUnavailableError,
    );
  });

  it('reads from a revision with a maximum, and an absent stream as empty', async () => {
    const { store } = setup();
    const batch = [toAppend(), toAppend(), toAppend(), toAppend()];
    await store.append('s-7', batch, { expectedVersion: 'no_stream' });
    const read = await store.readStream('s-7', {
      fromRevision: 1,
      maxCount: 2,
      hint: { revision: 0, position: 0 },
    });
    expect(read.map((e) => [e.eventId, e.revision, e.streamId])).toEqual([
      [batch[1]!.eventId, 1, 's-7'],
      [batch[2]!.eventId, 2, 's-7'],
    ]);
    expect(read[0]!.metadata).toEqual({ tenantId: 'acme' });
    expect(await store.readStream('s-7', { maxCount: 0 })).toEqual([]);
    expect(await store.readStream('absent')).toEqual([]);
  });

  it('subscribes to $all with a prefix filter from a position, strictly after it, and ends on close', async () => {
    const { client, store } = setup();
    const first = await store.append('session-1', [toAppend()], { expectedVersion: 'no_stream' });
    await store.append('other-1', [toAppend()], { expectedVersion: 'no_stream' });
    const second = await store.append('session-2', [toAppend(), toAppend()], {
      expectedVersion: 'no_stream',
    });

    const subscription = store.subscribeToAll({
      from: { position: first.position },
      streamPrefix: 'session-',
    });
    const seen: RecordedEvent[] = [];
    const done = (async () => {
      for await (const e of subscription) seen.push(e);
    })();
    await waitFor(() => seen.length === 2, { timeoutMs: 5_000, description: 'two events' });
    const { options } = client.subscriptions[0]!;
    expect(options.fromPosition).toEqual(at(BigInt(first.position)));
    expect(options.filter).toMatchObject({ filterOn: 'streamName', prefixes: ['ns:session-'] });
    // The fake ignores the start position and the filter: the adapter's own guard keeps the result exact.
    expect(seen.map((e) => e.streamId)).toEqual(['session-2', 'session-2']);
    expect(seen[1]!.position).toBe(second.position);

    await subscription.close();
    await done;
    expect(client.subscriptions[0]!.unsubscribed).toBe(true);
  });

  it('subscribes from the start without a prefix, excluding system streams on the server', async () => {
    const client = new FakeClient();
    const store = new KurrentDbEventStore(client);
    const subscription = store.subscribeToAll({ from: 'start' });
    expect(client.subscriptions[0]!.options.fromPosition).toBe(START);
    expect(client.subscriptions[0]!.options.filter).toMatchObject({
      filterOn: 'streamName',
      regex: '^[^$]',
    });
    await subscription.close();
  });

  it('answers ping when the server says the probe stream does not exist, and closes everything', async () => {
    const { client, store } = setup();
    await expect(store.ping()).resolves.toBeUndefined();
    const subscription = store.subscribeToAll({ from: 'start' });
    await store.close();
    expect(client.subscriptions[0]!.unsubscribed).toBe(true);
    expect(client.disposed).toBe(true);
    await subscription.close();

    client.readStream = () => {
      throw new UnavailableError(undefined, 'unreachable');
    };
    await expect(store.ping()).rejects.toBeInstanceOf(EventStoreUnavailableError);
  });

  it('gives up a ping the server never answers, after its deadline', async () => {
    const client = new FakeClient();
    client.readStream = () => ({
      [Symbol.asyncIterator]: () => ({ next: () => new Promise<IteratorResult<ResolvedEvent>>(() => {}) }),
    });
    const store = new KurrentDbEventStore(client, { deadlineMs: 20 });
    await expect(store.ping()).rejects.toThrow(/did not answer a ping within 20 ms/);
  });
});

describe('KurrentDbEventStore with the real client and no server', () => {
  it('refuses a malformed KURRENTDB_URL, and openEventStore needs one', async () => {
    expect(() => KurrentDbEventStore.connect('http://localhost:2113')).toThrow(ConfigError);
    expect(() => KurrentDbEventStore.connect('http://localhost:2113')).toThrow(/KURRENTDB_URL/);
    await expect(
      openEventStore(
        { EVENT_STORE: 'kurrentdb' },
        { nc: {} as never, topology: {} as never, logger: silentLogger },
      ),
    ).rejects.toThrow(/KURRENTDB_URL is required/);
  });

  it('reports an unreachable server as unavailable on every call, and closes', async () => {
    const port = await freePort();
    const store = KurrentDbEventStore.connect(`kurrentdb://127.0.0.1:${port}?tls=false`, {
      deadlineMs: 2_000,
    });
    await expect(store.ping()).rejects.toBeInstanceOf(EventStoreUnavailableError);
    await expect(store.append('s-1', [toAppend()], { expectedVersion: 'any' })).rejects.toBeInstanceOf(
      EventStoreUnavailableError,
    );
    await expect(store.readStream('s-1')).rejects.toBeInstanceOf(EventStoreUnavailableError);
    const subscription = store.subscribeToAll({ from: 'start', streamPrefix: 'session-' });
    await expect(subscription[Symbol.asyncIterator]().next()).rejects.toBeInstanceOf(
      EventStoreUnavailableError,
    );
    await store.close();
  });
});
