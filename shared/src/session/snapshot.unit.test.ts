import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { decodeSessionEvent, sessionStreamId, type RecordedSessionEvent } from '../events/codec.js';
import type { SessionEvent } from '../events/sessionEvents.js';
import { foldRecorded } from './commandHandler.js';
import {
  decodeSnapshot,
  encodeSnapshot,
  SNAPSHOT_FORMAT,
  validateSnapshot,
  type SessionSnapshot,
} from './snapshot.js';
import { InMemorySnapshotStore } from './snapshotMemory.js';
import { evolve } from './evolve.js';
import { initialState, type SessionState } from './state.js';

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

describe('session snapshots of retries, pauses, failures and waits', () => {
  const SESSION = 'retrying-session';
  const streamId = sessionStreamId(SESSION);
  const ref = (attempt: number) => ({ stepId: 'a', seq: 1, attempt, robotId: 'r1', epoch: 1 });
  const timeout = { code: 'TIMEOUT', message: 'no answer' } as const;
  const history: SessionEvent[] = [
    {
      type: 'SessionOpened',
      data: {
        labels: {},
        browser: {},
        idleTimeoutMs: 60_000,
        priority: 'high',
        onStepFailure: 'pause',
        requires: { region: 'eu', gpu: 'yes' },
      },
    },
    {
      type: 'StepSubmitted',
      data: {
        stepId: 'a',
        seq: 1,
        step: {
          action: 'navigate',
          url: 'https://example.com/',
          retry: { maxAttempts: 2, backoff: 'fixed', initialMs: 500, maxMs: 500 },
        },
      },
    },
    { type: 'StepSubmitted', data: { stepId: 'b', seq: 2, step: { action: 'checkpoint' } } },
    { type: 'SessionClaimed', data: { robotId: 'r1', epoch: 1, previousRobotId: null } },
  ];
  /** The state after `history` and then `more`, folded with each event's place, as the command handler folds. */
  const fold = (...more: SessionEvent[]): SessionState =>
    [...history, ...more].reduce<SessionState>(
      (state, event, i) =>
        evolve(state, event, { sessionId: SESSION, tenantId: 't1' }, { revision: i, position: 100 + i }),
      initialState(),
    );
  const started = (attempt: number): SessionEvent => ({ type: 'StepStarted', data: ref(attempt) });
  const failed = (attempt: number, final: boolean): SessionEvent => ({
    type: 'StepFailed',
    data: { ...ref(attempt), error: timeout, durationMs: 3, final, retryInMs: final ? null : 500 },
  });
  const waiting: SessionEvent = {
    type: 'SessionWaiting',
    data: {
      reason: 'ORIGIN_UNAVAILABLE',
      origin: 'https://example.com',
      stepId: 'a',
      robotId: 'r1',
      epoch: 1,
    },
  };
  const failedForGood = [started(1), failed(1, false), started(2), failed(2, true)];
  const states: Array<[string, SessionState]> = [
    ['a retrying step while the session waits', fold(started(1), failed(1, false), waiting)],
    [
      'a session paused by an operator',
      fold(started(1), { type: 'SessionPaused', data: { reason: 'operator', stepId: null } }),
    ],
    [
      'a session paused for a step that failed for good',
      fold(...failedForGood, { type: 'SessionPaused', data: { reason: 'step_failed', stepId: 'a' } }),
    ],
    [
      'a step retried by an operator',
      fold(...failedForGood, { type: 'StepRetried', data: { stepId: 'a', seq: 1 } }),
    ],
    [
      'a failed session',
      fold(...failedForGood, { type: 'SessionFailed', data: { stepId: 'a', error: timeout } }),
    ],
    [
      'an expired session that was paused',
      fold(
        { type: 'SessionPaused', data: { reason: 'operator', stepId: null } },
        { type: 'SessionExpired', data: { reason: 'idle', idleMs: 61_000, robotId: 'r1', epoch: 1 } },
      ),
    ],
  ];
  const snapshotOf = (state: SessionState): SessionSnapshot => ({
    v: SNAPSHOT_FORMAT,
    streamId,
    version: 9,
    position: 109,
    state,
  });

  it('folds each history to the status and fields it is meant to show', () => {
    const [retrying, byOperator, forStep, retried, failedSession, expired] = states.map(([, s]) => s);
    expect(retrying).toMatchObject({
      status: 'open',
      priority: 'high',
      requires: { region: 'eu', gpu: 'yes' },
      waiting: { reason: 'ORIGIN_UNAVAILABLE', stepId: 'a' },
      steps: { a: { status: 'retrying', attempts: 1, retry: { maxAttempts: 2, backoff: 'fixed' } } },
    });
    expect(byOperator).toMatchObject({ status: 'paused', pause: { reason: 'operator', stepId: null } });
    expect(forStep).toMatchObject({ status: 'paused', pause: { reason: 'step_failed', stepId: 'a' } });
    expect(retried).toMatchObject({ steps: { a: { status: 'queued', attempts: 2, retriedAt: 2 } } });
    expect(failedSession).toMatchObject({ status: 'failed', steps: { a: { status: 'failed' } } });
    expect(expired).toMatchObject({ status: 'expired' });
  });

  it.each(states)('stores and reads back %s', async (_name, state) => {
    const snapshot = snapshotOf(state);
    expect(await decodeSnapshot(await encodeSnapshot(snapshot), streamId)).toEqual({ ok: true, snapshot });
  });

  it('ignores a snapshot whose new fields fail the schema, naming the field', () => {
    const [retrying, byOperator] = states.map(([, s]) => structuredClone(s));
    if (retrying!.status === 'none' || byOperator!.status !== 'paused')
      throw new TypeError('unexpected states');
    const broken = (mutate: (state: Record<string, unknown>) => void, from = retrying!) => {
      const state = structuredClone(from) as unknown as Record<string, unknown>;
      mutate(state);
      return reasonOf(snapshotOf(state as unknown as SessionState), streamId);
    };
    expect(broken((s) => (s.priority = 'urgent'))).toContain('state.priority');
    expect(broken((s) => (s.onStepFailure = 'retry'))).toContain('state.onStepFailure');
    expect(broken((s) => delete s.requires)).toContain('state.requires');
    expect(broken((s) => ((s.waiting as { reason: string }).reason = 'BUSY'))).toContain(
      'state.waiting.reason',
    );
    expect(
      broken(
        (s) => ((s.steps as Record<string, { retry: { maxAttempts: number } }>).a!.retry.maxAttempts = 11),
      ),
    ).toContain('state.steps.a.retry.maxAttempts');
    expect(
      broken((s) => ((s.steps as Record<string, { status: string }>).a!.status = 'cancelled')),
    ).toContain('state.steps.a.status');
    expect(broken((s) => delete (s.steps as Record<string, { retriedAt?: number }>).a!.retriedAt)).toContain(
      'state.steps.a.retriedAt',
    );
    // A paused state without its pause, or an open one that carries a pause, is no state a fold makes.
    expect(broken((s) => delete s.pause, byOperator)).toContain('state');
    expect(broken((s) => (s.pause = { reason: 'operator', stepId: null }))).toContain('state');
  });

  it('ignores a snapshot of an earlier format, written before these fields existed', () => {
    expect(SNAPSHOT_FORMAT).toBe(4);
    expect(reasonOf({ ...snapshotOf(states[0]![1]), v: 2 }, streamId)).toBe('format 2');
    // Format 3 knew no setsCredentials: a session with such a navigate step is folded again from its events.
    expect(reasonOf({ ...snapshotOf(states[0]![1]), v: 3 }, streamId)).toBe('format 3');
  });
});
