import { describe, expect, it } from 'vitest';
import type { SessionCommand } from '../commands/sessionCommands.js';
import { sessionStreamId } from '../events/codec.js';
import { InMemoryEventStore } from '../eventStore/memory.js';
import type { EventStore, ReadStreamOptions, RecordedEvent } from '../eventStore/port.js';
import type { Logger } from '../logging/logger.js';
import { waitFor } from '../testing/waitFor.js';
import { SessionCommandHandler } from './commandHandler.js';
import { SNAPSHOT_FORMAT, type SessionSnapshot, type SnapshotStore } from './snapshot.js';
import { InMemorySnapshotStore } from './snapshotMemory.js';
import { stateHash } from './stateHash.js';

const SESSION = '0195e0c1-2f4a-7000-8000-000000000001';
const STREAM = sessionStreamId(SESSION);
const ROBOT = { robotId: 'robot-1', epoch: 1 };
const at = '2026-01-01T00:00:00.000Z';
const author = { kind: 'api-key', id: 'key-1' } as const;
const robot = { kind: 'robot', id: ROBOT.robotId } as const;
const base = { sessionId: SESSION, tenantId: 't1', at };

/** The commands of a session of `steps` steps, one submission each but one of three, each run by one robot. */
function sessionCommands(steps: number): SessionCommand[] {
  const stepIds = Array.from({ length: steps }, (_, i) => `step-${i + 1}`);
  const submit = (ids: string[], n: number): SessionCommand => ({
    ...base,
    type: 'SubmitSteps',
    commandId: `submit-${n}`,
    actor: author,
    steps: ids.map((stepId) => ({ stepId, step: { action: 'click', selector: `#${stepId}` } })),
  });
  return [
    {
      ...base,
      type: 'OpenSession',
      commandId: 'open',
      actor: author,
      labels: {},
      browser: {},
      idleTimeoutMs: null,
    },
    { ...base, type: 'ClaimSession', commandId: 'claim', actor: robot, robotId: ROBOT.robotId },
    // One append of three events: their positions come from the append's result, not from a read.
    submit(stepIds.slice(0, 3), 0),
    ...stepIds.slice(3).map((id, i) => submit([id], i + 1)),
    ...stepIds.flatMap((stepId): SessionCommand[] => [
      {
        ...base,
        ...ROBOT,
        type: 'StartStep',
        commandId: `start-${stepId}`,
        actor: robot,
        stepId,
        attempt: 1,
      },
      {
        ...base,
        ...ROBOT,
        type: 'CompleteStep',
        commandId: `complete-${stepId}`,
        actor: robot,
        stepId,
        attempt: 1,
        durationMs: 5,
        outcome: { status: 'succeeded', output: { kind: 'none' } },
      },
    ]),
  ];
}

/** The store, recording what each read asked for; `upTo` hides the events after that revision. */
function observed(
  inner: EventStore,
  upTo = Number.MAX_SAFE_INTEGER,
): EventStore & { reads: ReadStreamOptions[] } {
  const reads: ReadStreamOptions[] = [];
  return Object.assign(Object.create(inner) as EventStore, {
    reads,
    async readStream(streamId: string, options: ReadStreamOptions = {}): Promise<RecordedEvent[]> {
      reads.push(options);
      return (await inner.readStream(streamId, options)).filter((e) => e.revision <= upTo);
    },
  });
}

/** The snapshot store, recording what each get returned. */
function watched(inner: SnapshotStore): SnapshotStore & { got: Array<SessionSnapshot | null> } {
  const got: Array<SessionSnapshot | null> = [];
  return {
    got,
    get: async (streamId) => {
      const snapshot = await inner.get(streamId);
      got.push(snapshot);
      return snapshot;
    },
    put: (snapshot) => inner.put(snapshot),
  };
}

/** A logger that keeps its warnings. */
function recordingLogger(): Logger & { warnings: string[] } {
  const warnings: string[] = [];
  const logger = {
    warnings,
    debug: () => {},
    info: () => {},
    warn: (_obj: object, msg?: string) => void warnings.push(msg ?? ''),
    error: () => {},
    child: () => logger,
  };
  return logger;
}

async function given(steps: number, snapshots: SnapshotStore, snapshotEvery: number) {
  const store = new InMemoryEventStore(() => new Date(at));
  const writer = new SessionCommandHandler({ store, snapshots, snapshotEvery });
  for (const command of sessionCommands(steps)) await writer.handle(command);
  const folded = await new SessionCommandHandler({ store }).load(SESSION);
  return { store, writer, folded };
}

describe('SessionCommandHandler with snapshots', () => {
  it('writes a snapshot whenever its fold has moved snapshotEvery events past the last one', async () => {
    const snapshots = new InMemorySnapshotStore();
    const { store, folded } = await given(6, snapshots, 5);
    expect(folded.version).toBe(1 + 6 + 12);
    // The last one due is always written, after any written before it.
    await waitFor(() => snapshots.puts.at(-1)?.version === 19, { description: 'the snapshot at 19' });
    const versions = snapshots.puts.map((s) => s.version);
    expect(versions[0]).toBe(4);
    for (let i = 1; i < versions.length; i++)
      expect(versions[i]! - versions[i - 1]!).toBeGreaterThanOrEqual(5);
    // Each is exactly what the stream folds to at its version.
    for (const snapshot of snapshots.puts) {
      const upTo = await new SessionCommandHandler({ store: observed(store, snapshot.version) }).load(
        SESSION,
      );
      expect(snapshot).toEqual({
        v: SNAPSHOT_FORMAT,
        streamId: STREAM,
        version: snapshot.version,
        position: upTo.position,
        state: upTo.state,
      } satisfies SessionSnapshot);
      expect(upTo.version).toBe(snapshot.version);
    }
  });

  it('loads a session it has not cached from its snapshot, reading only the events after it', async () => {
    const snapshots = new InMemorySnapshotStore();
    const { store, folded } = await given(6, snapshots, 5);
    await waitFor(() => snapshots.puts.length > 0, { description: 'a snapshot' });
    const reader = observed(store);
    const seen = watched(snapshots);
    const loaded = await new SessionCommandHandler({ store: reader, snapshots: seen }).load(SESSION);
    const [snapshot] = seen.got;
    if (!snapshot) throw new TypeError('no snapshot was read');
    expect(reader.reads).toEqual([
      {
        fromRevision: snapshot.version + 1,
        hint: { revision: snapshot.version, position: snapshot.position },
      },
    ]);
    expect(loaded.version).toBe(folded.version);
    expect(loaded.position).toBe(folded.position);
    expect(stateHash(loaded.state)).toBe(stateHash(folded.state));
  });

  it('decides against the state it loaded from a snapshot', async () => {
    const snapshots = new InMemorySnapshotStore();
    const { store } = await given(4, snapshots, 3);
    await waitFor(() => snapshots.puts.length > 0);
    const handler = new SessionCommandHandler({ store, snapshots });
    const [, , , ...rest] = sessionCommands(4);
    // A report already in the stream (redelivered) decides to nothing.
    const duplicate = await handler.handle(rest.at(-1)!);
    expect(duplicate.events).toEqual([]);
    const next = await handler.handle({
      ...base,
      type: 'SubmitSteps',
      commandId: 'submit-late',
      actor: author,
      steps: [{ stepId: 'step-late', step: { action: 'click', selector: '#late' } }],
    });
    expect(next.events.map((e) => e.event)).toEqual([
      {
        type: 'StepSubmitted',
        data: { stepId: 'step-late', seq: 5, step: { action: 'click', selector: '#late' } },
      },
    ]);
  });

  it('remembers where each step was submitted, the same from its own appends as from a read', async () => {
    const { store, writer, folded } = await given(5, new InMemorySnapshotStore(), 1_000);
    const own = await writer.load(SESSION);
    expect(stateHash(own.state)).toBe(stateHash(folded.state));
    if (folded.state.status === 'none') throw new TypeError('no session');
    const submissions = (await store.readStream(STREAM)).filter((e) => e.type === 'StepSubmitted');
    expect(submissions).toHaveLength(5);
    for (const e of submissions) {
      const { stepId } = e.data as { stepId: string };
      expect(folded.state.steps[stepId]!.submitted).toEqual({ revision: e.revision, position: e.position });
    }
  });

  it('ignores an unusable snapshot and folds the session from its first event', async () => {
    const { store, folded } = await given(3, new InMemorySnapshotStore(), 1_000);
    const logger = recordingLogger();
    const snapshots = new InMemorySnapshotStore(logger);
    const good = { v: SNAPSHOT_FORMAT, streamId: STREAM, ...folded };
    for (const raw of ['not a snapshot', JSON.stringify({ ...good, v: 2 })]) {
      snapshots.putRaw(STREAM, raw);
      const reader = observed(store);
      const loaded = await new SessionCommandHandler({ store: reader, snapshots }).load(SESSION);
      expect(reader.reads).toEqual([{ fromRevision: 0 }]);
      expect(stateHash(loaded.state)).toBe(stateHash(folded.state));
    }
    expect(logger.warnings).toEqual(['ignoring an unusable snapshot', 'ignoring an unusable snapshot']);
  });

  it('never fails a command or a load because the snapshot store fails', async () => {
    const logger = recordingLogger();
    const broken: SnapshotStore = {
      get: () => Promise.reject(new Error('bucket gone')),
      put: () => Promise.reject(new Error('bucket gone')),
    };
    const store = new InMemoryEventStore(() => new Date(at));
    const handler = new SessionCommandHandler({ store, snapshots: broken, snapshotEvery: 2, logger });
    for (const command of sessionCommands(3)) await handler.handle(command);
    const fresh = await new SessionCommandHandler({ store, snapshots: broken, logger }).load(SESSION);
    expect(fresh.version).toBe(1 + 3 + 6);
    await waitFor(() => logger.warnings.includes('writing a snapshot failed; carrying on without'));
    expect(logger.warnings).toContain('reading the snapshot failed; folding from the first event');
    // A failing store is tried again only after another snapshotEvery events, not on every command.
    expect(logger.warnings.filter((w) => w.startsWith('writing')).length).toBeLessThanOrEqual(5);
  });
});
