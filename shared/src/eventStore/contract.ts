import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { waitFor } from '../testing/waitFor.js';
import { WrongExpectedVersionError } from './errors.js';
import type {
  AllSubscription,
  AppendResult,
  EventStore,
  EventToAppend,
  ExpectedVersion,
  RecordedEvent,
} from './port.js';

/** What a contract run needs from an adapter: a fresh, empty store and a way to dispose of it. */
export interface EventStoreFixture {
  store: EventStore;
  dispose(): Promise<void>;
}

function event(type = 'Tested', data: unknown = { n: 1 }): EventToAppend {
  return { eventId: randomUUID(), type, data, metadata: { tenantId: 'acme', note: 'contract' } };
}

function events(count: number, type = 'Tested'): EventToAppend[] {
  return Array.from({ length: count }, (_, i) => event(type, { i }));
}

function ids(list: readonly { eventId: string }[]): string[] {
  return list.map((e) => e.eventId);
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected the operation to be rejected');
}

/** Iterates a subscription in the background, collecting what it delivers. */
function collect(subscription: AllSubscription) {
  const seen: RecordedEvent[] = [];
  const state: { error: unknown; ended: boolean } = { error: undefined, ended: false };
  const done = (async () => {
    try {
      for await (const e of subscription) seen.push(e);
    } catch (error) {
      state.error = error;
    } finally {
      state.ended = true;
    }
  })();
  return {
    seen,
    state,
    done,
    /** Waits until `count` events arrived (and fails fast if the subscription broke). */
    async until(count: number) {
      await waitFor(
        () => {
          if (state.error) throw state.error;
          return seen.length >= count;
        },
        { timeoutMs: 15_000, description: `${count} events from the subscription (saw ${seen.length})` },
      );
    },
  };
}

/**
 * The behaviour every event-store adapter must show, as one vitest suite handed a factory of fresh stores. Each
 * test gets its own store; the factory decides what "fresh" means (a new prefix on a shared server, a new map).
 */
export function eventStoreContract(name: string, factory: () => Promise<EventStoreFixture>): void {
  describe(`${name} satisfies the event store contract`, () => {
    let fixture: EventStoreFixture | undefined;
    let store: EventStore;
    beforeEach(async () => {
      fixture = await factory();
      store = fixture.store;
    });
    afterEach(async () => {
      await fixture?.dispose();
      fixture = undefined;
    });

    describe('append and read', () => {
      it('appends to a new stream and reads the event back as written', async () => {
        const e = event('Opened', { nested: { list: [1, 'two', null, true] }, when: '2024-01-01T00:00:00Z' });
        const result = await store.append('order-1', [e], { expectedVersion: 'no_stream' });
        expect(result.nextExpectedVersion).toBe(0);

        const read = await store.readStream('order-1');
        expect(read).toHaveLength(1);
        const [recorded] = read;
        expect(recorded).toMatchObject({
          eventId: e.eventId,
          type: 'Opened',
          data: e.data,
          metadata: e.metadata,
          streamId: 'order-1',
          revision: 0,
          position: result.position,
        });
        expect(Number.isNaN(Date.parse(recorded!.recordedAt))).toBe(false);
      });

      it('reads events back in order with contiguous revisions and strictly increasing positions', async () => {
        const appended: EventToAppend[] = [];
        const results = [];
        let version: ExpectedVersion = 'no_stream';
        for (const size of [1, 3, 2, 1]) {
          const batch = events(size);
          // Interleave another stream so that global positions are not contiguous for this one.
          await store.append(`other-${size}-${appended.length}`, [event()], { expectedVersion: 'no_stream' });
          const result = await store.append('order-2', batch, { expectedVersion: version });
          results.push(result);
          appended.push(...batch);
          version = result.nextExpectedVersion;
        }
        const read = await store.readStream('order-2');
        expect(ids(read)).toEqual(ids(appended));
        expect(read.map((e) => e.revision)).toEqual([0, 1, 2, 3, 4, 5, 6]);
        for (let i = 1; i < read.length; i++)
          expect(read[i]!.position).toBeGreaterThan(read[i - 1]!.position);
        // Each append reports the revision and position of its own last event.
        expect(results.map((r) => r.nextExpectedVersion)).toEqual([0, 3, 5, 6]);
        expect(results.map((r) => r.position)).toEqual([0, 3, 5, 6].map((rev) => read[rev]!.position));
      });

      it('reads from a revision, also from the middle of a multi-event append, and honours maxCount', async () => {
        const first = events(3);
        const second = events(2);
        const third = events(4);
        await store.append('order-3', first, { expectedVersion: 'no_stream' });
        await store.append('order-3', second, { expectedVersion: 2 });
        await store.append('order-3', third, { expectedVersion: 4 });
        const all = [...first, ...second, ...third];

        const fromMiddle = await store.readStream('order-3', { fromRevision: 1 });
        expect(ids(fromMiddle)).toEqual(ids(all.slice(1)));
        expect(fromMiddle[0]!.revision).toBe(1);

        const window = await store.readStream('order-3', { fromRevision: 1, maxCount: 3 });
        expect(ids(window)).toEqual(ids(all.slice(1, 4)));
        expect(window.map((e) => e.revision)).toEqual([1, 2, 3]);

        const inLast = await store.readStream('order-3', { fromRevision: 7 });
        expect(inLast.map((e) => e.revision)).toEqual([7, 8]);
        expect(ids(await store.readStream('order-3', { fromRevision: 4, maxCount: 1 }))).toEqual([
          second[1]!.eventId,
        ]);
        expect(await store.readStream('order-3', { fromRevision: 9 })).toEqual([]);
        expect(await store.readStream('order-3', { fromRevision: 100 })).toEqual([]);
        expect(await store.readStream('order-3', { maxCount: 0 })).toEqual([]);
      });

      it('returns exactly the same events with a read hint as without, right or wrong', async () => {
        for (let i = 0; i < 6; i++) {
          await store.append('hinted-1', events(1 + (i % 3)), { expectedVersion: 'any' });
          // Other streams in between, so that the stream's positions are not contiguous.
          await store.append(`hint-other-${i % 2}`, [event()], { expectedVersion: 'any' });
        }
        const all = await store.readStream('hinted-1');
        expect(all).toHaveLength(12);
        const other = await store.readStream('hint-other-0');
        const place = (e: RecordedEvent) => ({ revision: e.revision, position: e.position });
        const hints = [
          ...all.map(place),
          // Wrong: a revision paired with a later event's position, another stream's position, none at all.
          { revision: 1, position: all[9]!.position },
          { revision: 0, position: other[2]!.position },
          { revision: 0, position: 0 },
          { revision: 3, position: Number.MAX_SAFE_INTEGER },
          { revision: -1, position: all[0]!.position },
        ];
        for (const fromRevision of [0, 4, 7, 11]) {
          for (const maxCount of [undefined, 2]) {
            const options = { fromRevision, ...(maxCount === undefined ? {} : { maxCount }) };
            const plain = await store.readStream('hinted-1', options);
            expect(ids(plain)).toEqual(ids(all.slice(fromRevision, maxCount && fromRevision + maxCount)));
            for (const hint of hints) {
              const hinted = await store.readStream('hinted-1', { ...options, hint });
              expect(hinted, `from ${fromRevision} (max ${maxCount}) with ${JSON.stringify(hint)}`).toEqual(
                plain,
              );
            }
          }
        }
      });

      it('reads an absent stream as empty', async () => {
        expect(await store.readStream('never-written')).toEqual([]);
        expect(await store.readStream('never-written', { fromRevision: 5, maxCount: 2 })).toEqual([]);
      });
    });

    describe('expected version', () => {
      it('rejects a stale expected version and appends nothing', async () => {
        await store.append('cart-1', events(2), { expectedVersion: 'no_stream' });
        const error = await rejection(store.append('cart-1', [event()], { expectedVersion: 0 }));
        expect(error).toBeInstanceOf(WrongExpectedVersionError);
        expect(error).toMatchObject({
          code: 'WRONG_EXPECTED_VERSION',
          streamId: 'cart-1',
          expected: 0,
          actual: 1,
        });
        expect(await store.readStream('cart-1')).toHaveLength(2);
      });

      it("'no_stream' holds only for an absent stream", async () => {
        await store.append('cart-2', [event()], { expectedVersion: 'no_stream' });
        const error = await rejection(store.append('cart-2', [event()], { expectedVersion: 'no_stream' }));
        expect(error).toBeInstanceOf(WrongExpectedVersionError);
        expect(error).toMatchObject({ expected: 'no_stream', actual: 0 });
        expect(await store.readStream('cart-2')).toHaveLength(1);
      });

      it("'stream_exists' holds only for a stream with events", async () => {
        const error = await rejection(
          store.append('cart-3', [event()], { expectedVersion: 'stream_exists' }),
        );
        expect(error).toBeInstanceOf(WrongExpectedVersionError);
        expect(error).toMatchObject({ expected: 'stream_exists', actual: 'no_stream' });
        expect(await store.readStream('cart-3')).toEqual([]);

        await store.append('cart-3', [event()], { expectedVersion: 'no_stream' });
        const result = await store.append('cart-3', events(2), { expectedVersion: 'stream_exists' });
        expect(result.nextExpectedVersion).toBe(2);
      });

      it("'any' appends whatever the stream holds, at the next revision", async () => {
        expect(
          (await store.append('cart-4', [event()], { expectedVersion: 'any' })).nextExpectedVersion,
        ).toBe(0);
        expect(
          (await store.append('cart-4', events(2), { expectedVersion: 'any' })).nextExpectedVersion,
        ).toBe(2);
        expect((await store.readStream('cart-4')).map((e) => e.revision)).toEqual([0, 1, 2]);
      });

      it('a numbered version conflicts on an absent stream and on a stream behind it', async () => {
        const absent = await rejection(store.append('cart-5', [event()], { expectedVersion: 0 }));
        expect(absent).toMatchObject({ expected: 0, actual: 'no_stream' });
        await store.append('cart-5', [event()], { expectedVersion: 'no_stream' });
        const ahead = await rejection(store.append('cart-5', [event()], { expectedVersion: 3 }));
        expect(ahead).toBeInstanceOf(WrongExpectedVersionError);
        expect(ahead).toMatchObject({ expected: 3, actual: 0 });
        expect(await store.readStream('cart-5')).toHaveLength(1);
      });

      it('lets exactly one of two concurrent appends with the same expected version win', async () => {
        const winners: string[] = [];
        let version: ExpectedVersion = 'no_stream';
        for (let round = 0; round < 20; round++) {
          const a = event('A', { round });
          const b = event('B', { round });
          const outcomes: PromiseSettledResult<AppendResult>[] = await Promise.allSettled([
            store.append('race-1', [a], { expectedVersion: version }),
            store.append('race-1', [b], { expectedVersion: version }),
          ]);
          const won = outcomes.filter((o) => o.status === 'fulfilled');
          const lost = outcomes.filter((o) => o.status === 'rejected');
          expect(won).toHaveLength(1);
          expect(lost).toHaveLength(1);
          expect(lost[0]!.reason).toBeInstanceOf(WrongExpectedVersionError);
          winners.push(outcomes[0]!.status === 'fulfilled' ? a.eventId : b.eventId);
          version = won[0]!.value.nextExpectedVersion;
          expect(version).toBe(round);
        }
        expect(ids(await store.readStream('race-1'))).toEqual(winners);
      });
    });

    describe('atomic multi-event append', () => {
      it('stores an append of three events as three consecutive revisions', async () => {
        await store.append('batch-1', [event()], { expectedVersion: 'no_stream' });
        const batch = events(3);
        const result = await store.append('batch-1', batch, { expectedVersion: 0 });
        expect(result.nextExpectedVersion).toBe(3);
        const read = await store.readStream('batch-1', { fromRevision: 1 });
        expect(ids(read)).toEqual(ids(batch));
        expect(read.map((e) => e.revision)).toEqual([1, 2, 3]);
        expect(read[2]!.position).toBe(result.position);
      });

      it('lands none of the events of an append whose expected version is stale', async () => {
        await store.append('batch-2', events(2), { expectedVersion: 'no_stream' });
        const before = await store.readStream('batch-2');
        const error = await rejection(store.append('batch-2', events(3), { expectedVersion: 0 }));
        expect(error).toBeInstanceOf(WrongExpectedVersionError);
        expect(await store.readStream('batch-2')).toEqual(before);
      });
    });

    // What every adapter guarantees: a retry carrying the same event ids and the expected version it first used is
    // answered with the original result, also after later appends landed. On JetStream a retry under 'any' or
    // 'stream_exists' is recognised only within the stream's dedup window (its message id); later it appends again.
    describe('retried appends', () => {
      it('answers an immediate retry with the original result and stores nothing twice', async () => {
        const batch = events(2);
        const original = await store.append('retry-1', batch, { expectedVersion: 'no_stream' });
        const retried = await store.append('retry-1', batch, { expectedVersion: 'no_stream' });
        expect(retried).toEqual(original);
        expect(ids(await store.readStream('retry-1'))).toEqual(ids(batch));
      });

      it('answers a retry with the original result after another append landed in between', async () => {
        await store.append('retry-2', [event()], { expectedVersion: 'no_stream' });
        const batch = events(3);
        const original = await store.append('retry-2', batch, { expectedVersion: 0 });
        const later = event();
        await store.append('retry-2', [later], { expectedVersion: original.nextExpectedVersion });

        expect(await store.append('retry-2', batch, { expectedVersion: 0 })).toEqual(original);
        const read = await store.readStream('retry-2');
        expect(read).toHaveLength(5);
        expect(read[4]!.eventId).toBe(later.eventId);
      });

      it("recognises a retry of the stream's first append after the stream moved on", async () => {
        const first = events(2);
        const original = await store.append('retry-3', first, { expectedVersion: 'no_stream' });
        await store.append('retry-3', [event()], { expectedVersion: 1 });
        expect(await store.append('retry-3', first, { expectedVersion: 'no_stream' })).toEqual(original);
        expect(await store.readStream('retry-3')).toHaveLength(3);
      });

      it("answers an immediate retry under 'any' with the original result", async () => {
        const e = event();
        const original = await store.append('retry-4', [e], { expectedVersion: 'any' });
        expect(await store.append('retry-4', [e], { expectedVersion: 'any' })).toEqual(original);
        expect(await store.readStream('retry-4')).toHaveLength(1);
      });
    });

    describe('subscribe to all', () => {
      it('delivers everything from the start, then live events, and ends on close', async () => {
        const a = events(2);
        const b = [event()];
        await store.append('sub-a', a, { expectedVersion: 'no_stream' });
        await store.append('sub-b', b, { expectedVersion: 'no_stream' });
        const subscription = store.subscribeToAll({ from: 'start' });
        const collector = collect(subscription);
        await collector.until(3);
        const live = events(2);
        await store.append('sub-a', live, { expectedVersion: 1 });
        await collector.until(5);
        expect(ids(collector.seen)).toEqual(ids([...a, ...b, ...live]));
        expect(collector.seen.map((e) => e.streamId)).toEqual(['sub-a', 'sub-a', 'sub-b', 'sub-a', 'sub-a']);
        expect(collector.seen.map((e) => e.revision)).toEqual([0, 1, 0, 2, 3]);
        const positions = collector.seen.map((e) => e.position);
        expect([...positions].sort((x, y) => x - y)).toEqual(positions);
        expect(new Set(positions).size).toBe(positions.length);

        await subscription.close();
        await collector.done;
        expect(collector.state.error).toBeUndefined();
      });

      it('starts strictly after a position, even inside a multi-event append', async () => {
        const batch = events(3);
        await store.append('pos-1', [event()], { expectedVersion: 'no_stream' });
        await store.append('pos-1', batch, { expectedVersion: 0 });
        const tail = [event()];
        await store.append('pos-2', tail, { expectedVersion: 'no_stream' });
        const [, middle] = await store.readStream('pos-1', { fromRevision: 1 });

        const subscription = store.subscribeToAll({ from: { position: middle!.position } });
        const collector = collect(subscription);
        await collector.until(2);
        const sentinel = [event()];
        await store.append('pos-2', sentinel, { expectedVersion: 0 });
        await collector.until(3);
        expect(ids(collector.seen)).toEqual(ids([batch[2]!, ...tail, ...sentinel]));
        await subscription.close();
        await collector.done;
      });

      it('switches from catch-up to live with no gap and no duplicate while appends land', async () => {
        const expected: EventToAppend[] = [];
        let version: ExpectedVersion = 'no_stream';
        let startAfter = 0;
        for (let i = 0; i < 30; i++) {
          const batch = events(1 + (i % 3));
          const result = await store.append(`flow-${i % 4}`, batch, { expectedVersion: 'any' });
          if (i === 9) startAfter = result.position;
          else if (i > 9) expected.push(...batch);
        }
        const subscription = store.subscribeToAll({ from: { position: startAfter } });
        const collector = collect(subscription);
        // Appends race the catch-up: some land before the subscription reaches the end, some after.
        for (let i = 0; i < 20; i++) {
          const batch = events(1 + (i % 2));
          const result = await store.append('flow-live', batch, { expectedVersion: version });
          version = result.nextExpectedVersion;
          expected.push(...batch);
        }
        await collector.until(expected.length);
        const sentinel = [event()];
        await store.append('flow-live', sentinel, { expectedVersion: version });
        await collector.until(expected.length + 1);
        expect(ids(collector.seen)).toEqual(ids([...expected, ...sentinel]));
        await subscription.close();
        await collector.done;
        expect(collector.state.error).toBeUndefined();
      });

      it('delivers only streams whose id starts with the prefix', async () => {
        const wanted: EventToAppend[] = [];
        for (const [streamId, take] of [
          ['alpha-1', true],
          ['beta-1', false],
          ['alpha-2', true],
          ['alphabet-1', false],
          ['xalpha-1', false],
        ] as const) {
          const batch = events(2);
          await store.append(streamId, batch, { expectedVersion: 'no_stream' });
          if (take) wanted.push(...batch);
        }
        const subscription = store.subscribeToAll({ from: 'start', streamPrefix: 'alpha-' });
        const collector = collect(subscription);
        const sentinel = [event()];
        await store.append('alpha-3', sentinel, { expectedVersion: 'no_stream' });
        await collector.until(wanted.length + 1);
        expect(ids(collector.seen)).toEqual(ids([...wanted, ...sentinel]));
        expect(collector.seen.every((e) => e.streamId.startsWith('alpha-'))).toBe(true);
        await subscription.close();
        await collector.done;
      });
    });

    it('answers ping', async () => {
      await expect(store.ping()).resolves.toBeUndefined();
    });
  });
}
