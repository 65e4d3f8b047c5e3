import { describe, expect, it } from 'vitest';
import type { OpenSession, SessionCommand, SubmitSteps } from '../commands/sessionCommands.js';
import { sessionStreamId } from '../events/codec.js';
import { EventStoreUnavailableError, WrongExpectedVersionError } from '../eventStore/errors.js';
import { InMemoryEventStore } from '../eventStore/memory.js';
import type {
  AllSubscription,
  AppendResult,
  EventStore,
  EventToAppend,
  ExpectedVersion,
  ReadStreamOptions,
  RecordedEvent,
  SubscribeOptions,
} from '../eventStore/port.js';
import {
  CommandRejectedError,
  ConcurrencyExhaustedError,
  eventIdFor,
  SessionCommandHandler,
} from './commandHandler.js';

/** Delegates to a real store and records every read and append, optionally running a hook before an append. */
class ObservedStore implements EventStore {
  readonly reads: Array<{ streamId: string; fromRevision: number; returned: number }> = [];
  readonly appends: Array<{ streamId: string; expectedVersion: ExpectedVersion; outcome: string }> = [];
  beforeAppend: ((streamId: string) => Promise<void>) | null = null;

  constructor(readonly inner: EventStore) {}

  async append(
    streamId: string,
    events: readonly EventToAppend[],
    options: { expectedVersion: ExpectedVersion },
  ): Promise<AppendResult> {
    const hook = this.beforeAppend;
    if (hook) await hook(streamId);
    try {
      const result = await this.inner.append(streamId, events, options);
      this.appends.push({ streamId, expectedVersion: options.expectedVersion, outcome: 'ok' });
      return result;
    } catch (error) {
      this.appends.push({
        streamId,
        expectedVersion: options.expectedVersion,
        outcome: (error as { code?: string }).code ?? 'error',
      });
      throw error;
    }
  }
  async readStream(streamId: string, options?: ReadStreamOptions): Promise<RecordedEvent[]> {
    const events = await this.inner.readStream(streamId, options);
    this.reads.push({ streamId, fromRevision: options?.fromRevision ?? 0, returned: events.length });
    return events;
  }
  subscribeToAll(options: SubscribeOptions): AllSubscription {
    return this.inner.subscribeToAll(options);
  }
  ping(): Promise<void> {
    return this.inner.ping();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

const SESSION = 's1';
const STREAM = sessionStreamId(SESSION);
const base = {
  sessionId: SESSION,
  tenantId: 't1',
  at: '2026-01-01T00:00:00.000Z',
  actor: { kind: 'api-key', id: 'key-1' },
} as const;

let counter = 0;
const nextId = () => `00000000-0000-4000-8000-${String(++counter).padStart(12, '0')}`;

const open = (over: Partial<OpenSession> = {}): OpenSession => ({
  ...base,
  type: 'OpenSession',
  commandId: nextId(),
  labels: {},
  browser: {},
  idleTimeoutMs: null,
  ...over,
});
const submit = (stepIds: string[], over: Partial<SubmitSteps> = {}): SubmitSteps => ({
  ...base,
  type: 'SubmitSteps',
  commandId: nextId(),
  steps: stepIds.map((stepId) => ({ stepId, step: { action: 'click', selector: `#${stepId}` } })),
  ...over,
});

function setup(options: { maxAttempts?: number; cacheSize?: number } = {}) {
  const memory = new InMemoryEventStore(() => new Date('2026-01-01T00:00:01.000Z'));
  const store = new ObservedStore(memory);
  const handler = new SessionCommandHandler({ store, ...options });
  /** A second writer on the same store: another replica of the command API, or a robot. */
  const other = new SessionCommandHandler({ store: memory });
  const stream = () => memory.readStream(STREAM);
  const seqs = async () =>
    (await stream()).flatMap((e) => (e.type === 'StepSubmitted' ? [(e.data as { seq: number }).seq] : []));
  return { memory, store, handler, other, stream, seqs };
}

async function rejectionOf(promise: Promise<unknown>): Promise<CommandRejectedError> {
  const error = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(CommandRejectedError);
  return error as CommandRejectedError;
}

describe('SessionCommandHandler', () => {
  it('appends the decided events with ids derived from the command and metadata naming it', async () => {
    const { handler, stream } = setup();
    const command = open({ idempotency: { key: 'k1', requestHash: 'h1' } });
    const result = await handler.handle(command);
    expect(result).toMatchObject({ version: 0, state: { status: 'open', tenantId: 't1' } });
    expect(result.events.map((e) => [e.event.type, e.revision, e.eventId])).toEqual([
      ['SessionOpened', 0, eventIdFor(command.commandId, 0)],
    ]);
    const [stored] = await stream();
    expect(stored).toMatchObject({
      eventId: eventIdFor(command.commandId, 0),
      type: 'SessionOpened',
      metadata: {
        schemaVersion: 2,
        tenantId: 't1',
        sessionId: SESSION,
        commandId: command.commandId,
        commandType: 'OpenSession',
        actor: { kind: 'api-key', id: 'key-1' },
        idempotencyKey: 'k1',
        requestHash: 'h1',
      },
    });
  });

  it('loads a session that has no events as version -1', async () => {
    const { handler } = setup();
    expect(await handler.load('nobody')).toEqual({ state: { status: 'none' }, version: -1, position: 0 });
  });

  it('decides on the cached fold, and reads only the events appended since when another writer moved on', async () => {
    const { handler, other, store, seqs } = setup();
    await handler.handle(open());
    await handler.handle(submit(['a', 'b']));
    // Another writer moves the stream on behind this handler's back.
    await other.handle(submit(['c']));
    const result = await handler.handle(submit(['d']));

    expect(store.reads.map(({ fromRevision, returned }) => [fromRevision, returned])).toEqual([
      [0, 0], // open: nothing there yet
      // submit a,b: no read at all; the cached open at revision 0 is proven current by the append
      [3, 1], // submit d: the cached append conflicts, and only the other writer's event c is read
    ]);
    expect(store.appends.map((a) => [a.expectedVersion, a.outcome])).toEqual([
      ['no_stream', 'ok'],
      [0, 'ok'],
      [2, 'WRONG_EXPECTED_VERSION'],
      [3, 'ok'],
    ]);
    expect(result.version).toBe(4);
    expect(await seqs()).toEqual([1, 2, 3, 4]);
  });

  it('on a conflict caused by another writer, reloads and decides again on the new state', async () => {
    const { handler, other, store, seqs } = setup();
    await handler.handle(open());
    let interfered = false;
    store.beforeAppend = async () => {
      if (interfered) return;
      interfered = true;
      await other.handle(submit(['theirs']));
    };
    const result = await handler.handle(submit(['mine']));

    expect(store.appends.slice(1).map((a) => [a.expectedVersion, a.outcome])).toEqual([
      [0, 'WRONG_EXPECTED_VERSION'],
      [1, 'ok'],
    ]);
    // Decided again: "mine" follows "theirs" instead of taking its seq.
    expect(result.events.map((e) => e.event.type === 'StepSubmitted' && e.event.data.seq)).toEqual([2]);
    expect(await seqs()).toEqual([1, 2]);
  });

  it('on a conflict, a command that is now refused is refused without appending', async () => {
    const { handler, other, store, stream } = setup();
    await handler.handle(open());
    store.beforeAppend = async () => {
      store.beforeAppend = null;
      await other.handle({ ...base, type: 'RequestClose', commandId: nextId(), reason: null });
    };
    const rejection = await rejectionOf(handler.handle(submit(['late'])));
    expect(rejection.rejection.code).toBe('ILLEGAL_TRANSITION');
    expect((await stream()).map((e) => e.type)).toEqual(['SessionOpened', 'SessionCloseRequested']);
  });

  it('gives up with ConcurrencyExhaustedError after its attempts on a stream that always conflicts', async () => {
    const { handler, other, store, seqs } = setup({ maxAttempts: 3 });
    await handler.handle(open());
    store.beforeAppend = async () => {
      await other.handle(submit([nextId()]));
    };
    await expect(handler.handle(submit(['never']))).rejects.toBeInstanceOf(ConcurrencyExhaustedError);
    expect(store.appends.slice(1).map((a) => a.outcome)).toEqual(Array(3).fill('WRONG_EXPECTED_VERSION'));
    expect(await seqs()).toEqual([1, 2, 3]);
  });

  it('stops after maxAttempts against a store whose every append conflicts', async () => {
    const failing: EventStore = {
      append: async (streamId) => {
        throw new WrongExpectedVersionError(streamId, 0, 5);
      },
      readStream: async () => [],
      subscribeToAll: () => {
        throw new TypeError('unused');
      },
      ping: async () => {},
      close: async () => {},
    };
    const store = new ObservedStore(failing);
    const handler = new SessionCommandHandler({ store, maxAttempts: 4 });
    const error = await handler.handle(open()).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ConcurrencyExhaustedError);
    expect((error as ConcurrencyExhaustedError).code).toBe('CONCURRENCY_EXHAUSTED');
    expect(store.appends).toHaveLength(4);
  });

  it('a retried command (same commandId) appends nothing new', async () => {
    const { handler, stream } = setup();
    const opening = open({ idempotency: { key: 'k1', requestHash: 'h1' } });
    await handler.handle(opening);
    const submission = submit(['a', 'b']);
    const first = await handler.handle(submission);
    const again = await handler.handle(submission);
    const reopened = await handler.handle(opening);

    expect(first.events).toHaveLength(2);
    expect(again.events).toEqual([]);
    expect(again.version).toBe(first.version);
    expect(reopened.events).toEqual([]);
    expect(await stream()).toHaveLength(3);
  });

  it('a retry through another handler whose cache is empty also appends nothing', async () => {
    const { handler, other, stream } = setup();
    await handler.handle(open());
    const submission = submit(['a']);
    await handler.handle(submission);
    expect((await other.handle(submission)).events).toEqual([]);
    expect(await stream()).toHaveLength(2);
  });

  it('a rejected command appends nothing', async () => {
    const { handler, store, stream } = setup();
    expect((await rejectionOf(handler.handle(submit(['a'])))).code).toBe('SESSION_NOT_FOUND');
    await handler.handle(open());
    const rejections: SessionCommand[] = [
      open(),
      { ...submit(['a']), tenantId: 't2' },
      { ...base, type: 'StartStep', commandId: nextId(), robotId: 'r1', epoch: 1, stepId: 'a', attempt: 1 },
      { ...base, type: 'ConfirmClose', commandId: nextId(), robotId: 'r1', epoch: 0 },
    ];
    const codes = [];
    for (const command of rejections) codes.push((await rejectionOf(handler.handle(command))).code);
    expect(codes).toEqual(['SESSION_EXISTS', 'SESSION_NOT_FOUND', 'STALE_EPOCH', 'STALE_EPOCH']);
    expect(store.appends).toHaveLength(1);
    expect(await stream()).toHaveLength(1);
  });

  it('forgets its cache when an append fails for another reason, so the next load reads the truth', async () => {
    const { handler, store } = setup();
    await handler.handle(open());
    store.beforeAppend = async () => {
      store.beforeAppend = null;
      throw new EventStoreUnavailableError('timed out');
    };
    await expect(handler.handle(submit(['a']))).rejects.toBeInstanceOf(EventStoreUnavailableError);
    await handler.load(SESSION);
    expect(store.reads.at(-1)).toEqual({ streamId: STREAM, fromRevision: 0, returned: 1 });
  });

  it('evicts the least recently used session beyond cacheSize', async () => {
    const { handler, store } = setup({ cacheSize: 1 });
    await handler.handle(open());
    await handler.handle(open({ sessionId: 's2' }));
    await handler.load(SESSION);
    expect(store.reads.at(-1)).toEqual({ streamId: STREAM, fromRevision: 0, returned: 1 });
  });
});
