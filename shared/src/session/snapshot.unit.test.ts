import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeSessionEvent, type RecordedSessionEvent } from '../events/codec.js';
import { foldRecorded } from './commandHandler.js';
import {
  decodeSnapshot,
  encodeSnapshot,
  SNAPSHOT_FORMAT,
  validateSnapshot,
  type SessionSnapshot,
} from './snapshot.js';
import { InMemorySnapshotStore } from './snapshotMemory.js';
import { initialState } from './state.js';

const FIXTURE_DIR = fileURLToPath(new URL('../../test/fixtures/streams/', import.meta.url));

interface Fixture {
  name: string;
  streamId: string;
  events: Array<{
    eventId: string;
    type: string;
    data: unknown;
    metadata: unknown;
    revision: number;
    position: number;
  }>;
}

/** A snapshot of each recorded stream's final state, folded as the command handler folds. */
function recordedSnapshots(): Array<[string, SessionSnapshot]> {
  return readdirSync(FIXTURE_DIR)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => {
      const fixture = JSON.parse(readFileSync(join(FIXTURE_DIR, file), 'utf8')) as Fixture;
      const decoded = fixture.events.flatMap((e): RecordedSessionEvent[] => {
        const d = decodeSessionEvent({
          ...e,
          streamId: fixture.streamId,
          recordedAt: '2026-03-02T00:00:00.000Z',
        });
        return d ? [d] : [];
      });
      const { state, version, position } = foldRecorded(
        { state: initialState(), version: -1, position: 0 },
        decoded,
      );
      return [fixture.name, { v: SNAPSHOT_FORMAT, streamId: fixture.streamId, version, position, state }];
    });
}

const snapshots = recordedSnapshots();
const [, sample] = snapshots.find(([name]) => name === 'crash-recovery')!;
const STREAM = sample.streamId;
/** A copy of the sample, to be broken in one place per test. */
function copy() {
  const snapshot = structuredClone(sample);
  if (snapshot.state.status === 'none') throw new TypeError('the sample opens no session');
  return { ...snapshot, state: snapshot.state };
}
const reasonOf = (raw: unknown, streamId = STREAM) => {
  const reading = validateSnapshot(raw, streamId);
  expect(reading.ok).toBe(false);
  return reading.ok ? '' : reading.reason;
};

describe('session snapshots', () => {
  it.each(snapshots)(
    'stores and reads back the state the recorded %s stream folds to',
    async (_name, snapshot) => {
      const reading = await decodeSnapshot(await encodeSnapshot(snapshot), snapshot.streamId);
      expect(reading).toEqual({ ok: true, snapshot });
    },
  );

  it('remembers where each step was submitted, so that recovery can read just those submissions', () => {
    const { state } = sample;
    if (state.status === 'none') throw new TypeError('no session');
    for (const stepId of state.order)
      expect(state.steps[stepId]!.submitted).toMatchObject({ revision: expect.any(Number) });
  });

  it('ignores a snapshot of another format, whatever it holds', () => {
    expect(reasonOf({ ...copy(), v: SNAPSHOT_FORMAT + 1 })).toBe(`format ${SNAPSHOT_FORMAT + 1}`);
    const { v: _v, ...unversioned } = copy();
    expect(reasonOf(unversioned)).toBe('format undefined');
    expect(reasonOf(null)).toBe('format undefined');
  });

  it('ignores a snapshot that fails the schema, naming the field', () => {
    const badStatus = copy();
    const [firstStep] = badStatus.state.order;
    Object.assign(badStatus.state.steps[firstStep!]!, { status: 'exploded' });
    expect(reasonOf(badStatus)).toContain(`state.steps.${firstStep}.status`);

    const extra = copy();
    Object.assign(extra.state, { secret: 'hunter2' });
    expect(reasonOf(extra)).toContain('state');

    const { checkpoint: _checkpoint, ...withoutCheckpoint } = copy().state;
    expect(reasonOf({ ...copy(), state: withoutCheckpoint })).toContain('state.checkpoint');

    expect(reasonOf({ ...copy(), version: -1 })).toContain('version');
    expect(reasonOf({ ...copy(), position: 1.5 })).toContain('position');
  });

  it('ignores a snapshot of another stream or of another session', () => {
    expect(reasonOf(copy(), 'session-someone-else')).toContain('another stream');
    const foreign = { ...copy(), streamId: 'session-someone-else' };
    expect(reasonOf(foreign, 'session-someone-else')).toContain('state of session');
  });

  it('ignores a state whose steps and order disagree', () => {
    const dropped = copy();
    dropped.state.order = dropped.state.order.slice(1);
    expect(reasonOf(dropped)).toBe('steps and their order disagree');
    const swapped = copy();
    const order = swapped.state.order;
    swapped.state.order = [order[1]!, order[0]!, ...order.slice(2)];
    expect(reasonOf(swapped)).toContain('out of place');
  });

  it('ignores bytes that are not a gzipped JSON snapshot', async () => {
    expect(await decodeSnapshot(new TextEncoder().encode(JSON.stringify(sample)), STREAM)).toEqual({
      ok: false,
      reason: 'not gzip, or too large',
    });
    expect(await decodeSnapshot(gzipSync('{"v":1,'), STREAM)).toEqual({ ok: false, reason: 'not JSON' });
  });

  it('reads back what was put in memory, and nothing for an unusable value', async () => {
    const store = new InMemorySnapshotStore();
    expect(await store.get(STREAM)).toBeNull();
    await store.put(sample);
    expect(await store.get(STREAM)).toEqual(sample);
    store.putRaw(STREAM, gzipSync(JSON.stringify({ ...copy(), v: SNAPSHOT_FORMAT + 1 })));
    expect(await store.get(STREAM)).toBeNull();
    store.putRaw(STREAM, 'garbage');
    expect(await store.get(STREAM)).toBeNull();
  });
});
