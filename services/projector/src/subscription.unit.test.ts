import { randomUUID } from 'node:crypto';
import {
  encodeSessionEvent,
  InMemoryEventStore,
  sessionStreamId,
  silentLogger,
  type RecordedSessionEvent,
} from '@rpa/shared';
import { waitFor } from '@rpa/shared/testing';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryCheckpointStore } from './checkpoints.js';
import { runCheckpointedSubscription, type CheckpointedSubscription } from './subscription.js';

const FAST_RETRY = { initialDelayMs: 1, maxDelayMs: 5 };

async function openSession(store: InMemoryEventStore, sessionId: string): Promise<number> {
  const event = encodeSessionEvent(
    randomUUID(),
    {
      type: 'SessionOpened',
      data: {
        labels: {},
        browser: {},
        idleTimeoutMs: null,
        priority: 'normal',
        onStepFailure: 'continue',
        requires: {},
      },
    },
    {
      tenantId: 'acme',
      sessionId,
      occurredAt: '2025-01-01T00:00:00.000Z',
      commandId: randomUUID(),
      commandType: 'OpenSession',
      actor: { kind: 'system', id: 'test' },
    },
  );
  const result = await store.append(sessionStreamId(sessionId), [event], { expectedVersion: 'no_stream' });
  return result.position;
}

describe('runCheckpointedSubscription', () => {
  const running: CheckpointedSubscription[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((s) => s.close()));
  });

  async function start(
    store: InMemoryEventStore,
    checkpoints: MemoryCheckpointStore,
    handle: (e: RecordedSessionEvent) => Promise<void>,
    extra: Partial<Parameters<typeof runCheckpointedSubscription>[0]> = {},
  ): Promise<CheckpointedSubscription> {
    const sub = await runCheckpointedSubscription({
      store,
      checkpoints,
      name: 'test',
      handle,
      logger: silentLogger,
      retry: FAST_RETRY,
      ...extra,
    });
    running.push(sub);
    return sub;
  }

  it('delivers every event in order, saves the position on close and resumes after it', async () => {
    const store = new InMemoryEventStore();
    const checkpoints = new MemoryCheckpointStore();
    for (const id of ['a', 'b', 'c']) await openSession(store, id);
    const seen: string[] = [];
    const first = await start(store, checkpoints, async (e) => {
      seen.push(e.metadata.sessionId);
    });
    await waitFor(() => seen.length === 3, { description: 'three events' });
    const last = await openSession(store, 'd');
    await waitFor(() => seen.length === 4, { description: 'the live event' });
    await first.close();
    expect(seen).toEqual(['a', 'b', 'c', 'd']);
    expect(checkpoints.positions.get('test')).toBe(last);

    await openSession(store, 'e');
    const again: string[] = [];
    await start(store, checkpoints, async (e) => {
      again.push(e.metadata.sessionId);
    });
    await waitFor(() => again.length === 1, { description: 'the event after the checkpoint' });
    expect(again).toEqual(['e']);
  });

  it('retries a failing handler without skipping the event or moving the checkpoint past it', async () => {
    const store = new InMemoryEventStore();
    const checkpoints = new MemoryCheckpointStore();
    const p1 = await openSession(store, 'a');
    const p2 = await openSession(store, 'b');
    await openSession(store, 'c');
    let failuresLeft = 5;
    let allowRecovery = false;
    const seen: string[] = [];
    const failed: string[] = [];
    const sub = await start(
      store,
      checkpoints,
      async (e) => {
        if (e.metadata.sessionId === 'b' && (failuresLeft > 0 || !allowRecovery)) {
          failuresLeft--;
          throw new Error('read model unavailable');
        }
        seen.push(e.metadata.sessionId);
      },
      { checkpointEveryEvents: 1, hooks: { failed: (stage) => failed.push(stage) } },
    );
    await waitFor(() => failuresLeft <= 0, { description: 'five failed attempts' });
    expect(sub.failing).toBe(true);
    expect(sub.position).toBe(p1);
    expect(checkpoints.positions.get('test') ?? 0).toBeLessThan(p2);
    allowRecovery = true;
    await waitFor(() => seen.length === 3, { description: 'recovery' });
    expect(seen).toEqual(['a', 'b', 'c']);
    expect(sub.failing).toBe(false);
    expect(failed.length).toBeGreaterThanOrEqual(5);
    expect(new Set(failed)).toEqual(new Set(['handle']));
  });

  it('stopped while retrying, it saves only what was handled', async () => {
    const store = new InMemoryEventStore();
    const checkpoints = new MemoryCheckpointStore();
    const p1 = await openSession(store, 'a');
    await openSession(store, 'b');
    let attempts = 0;
    const sub = await start(store, checkpoints, async (e) => {
      if (e.metadata.sessionId === 'b') {
        attempts++;
        throw new Error('down');
      }
    });
    await waitFor(() => attempts >= 2, { description: 'retries' });
    await sub.close();
    expect(checkpoints.positions.get('test')).toBe(p1);
  });

  it('never checkpoints past what the handler has flushed, and flushes on close', async () => {
    const store = new InMemoryEventStore();
    const checkpoints = new MemoryCheckpointStore();
    const buffered: string[] = [];
    const durable: string[] = [];
    let flushFailures = 2;
    const positions: number[] = [];
    const violations: number[] = [];
    const saved: number[] = [];
    for (const id of ['a', 'b', 'c', 'd']) positions.push(await openSession(store, id));
    const sub = await start(
      store,
      checkpoints,
      async (e) => {
        buffered.push(e.metadata.sessionId);
      },
      {
        flush: async () => {
          if (flushFailures-- > 0) throw new Error('kv busy');
          durable.push(...buffered.splice(0));
        },
        checkpointEveryEvents: 2,
        hooks: {
          checkpointed: (position) => {
            // Whenever a position is saved, every event up to it must be durable.
            if (durable.length < positions.filter((p) => p <= position).length) violations.push(position);
            saved.push(position);
          },
        },
      },
    );
    await waitFor(() => durable.length === 4, { description: 'all flushed' });
    await sub.close();
    expect(durable).toEqual(['a', 'b', 'c', 'd']);
    expect(saved.length).toBeGreaterThan(0);
    expect(violations).toEqual([]);
    expect(checkpoints.positions.get('test')).toBe(positions[3]);
  });

  it('saves the position in batches, not per event', async () => {
    const store = new InMemoryEventStore();
    const checkpoints = new MemoryCheckpointStore();
    let last = 0;
    for (let i = 0; i < 50; i++) last = await openSession(store, `s${i}`);
    let handled = 0;
    const sub = await start(
      store,
      checkpoints,
      async () => {
        handled++;
      },
      { checkpointEveryEvents: 20, checkpointEveryMs: 60_000 },
    );
    await waitFor(() => handled === 50, { description: 'catch-up' });
    await sub.close();
    expect(checkpoints.saves).toBeLessThanOrEqual(3);
    expect(checkpoints.positions.get('test')).toBe(last);
  });

  it('logs and skips an event that fails its schema, and carries on', async () => {
    const store = new InMemoryEventStore();
    const checkpoints = new MemoryCheckpointStore();
    await openSession(store, 'a');
    await store.append(
      sessionStreamId('a'),
      [{ eventId: randomUUID(), type: 'StepSubmitted', data: { nonsense: true }, metadata: {} }],
      { expectedVersion: 'any' },
    );
    const last = await openSession(store, 'b');
    const poisoned: number[] = [];
    const seen: string[] = [];
    const sub = await start(
      store,
      checkpoints,
      async (e) => {
        seen.push(e.metadata.sessionId);
      },
      { hooks: { poisoned: (e) => poisoned.push(e.position) } },
    );
    await waitFor(() => seen.length === 2, { description: 'both good events' });
    await sub.close();
    expect(poisoned).toHaveLength(1);
    expect(checkpoints.positions.get('test')).toBe(last);
  });

  it('close is safe to call twice', async () => {
    const store = new InMemoryEventStore();
    const sub = await start(store, new MemoryCheckpointStore(), async () => {});
    await Promise.all([sub.close(), sub.close()]);
    await sub.close();
  });
});
