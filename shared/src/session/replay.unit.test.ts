import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { decodeSessionEvent, type RecordedSessionEvent } from '../events/codec.js';
import { CURRENT_SCHEMA_VERSION, type SessionEventType } from '../events/sessionEvents.js';
import type { RecordedEvent } from '../eventStore/port.js';
import { SessionDocument } from '../readModel/sessionDocument.js';
import { applyToDocument } from '../readModel/sessionProjection.js';
import { evolve } from './evolve.js';
import { initialState, isFinished, type SessionState, type StepState } from './state.js';
import { stateHash } from './stateHash.js';

// Recorded session streams, replayed. Each fixture in shared/test/fixtures/streams was written by
// scripts/fixtures/recordStreams.ts from real decisions appended to the JetStream event store and read back, with
// the hashes of the session state and the read-model document the stream folded to when it was recorded.
//
// The fixtures pin the semantics of streams already in stores: a change to `evolve` or `applyToDocument` that folds
// one of these streams differently fails here, because every stream already written would fold differently too.
// Such a change is a decision, not a refactoring: make it deliberately, then re-record and say why. And old events
// must stay readable forever: when a payload schema changes, bump its schemaVersion and add an upcaster; never
// edit these files to match a new schema, as no one can edit the events in a production store either.

const FIXTURE_DIR = fileURLToPath(new URL('../../test/fixtures/streams/', import.meta.url));
/** Every scenario the recorder writes; a fixture that goes missing must fail, not silently test less. */
const RECORDED = ['cancelled', 'crash-recovery', 'demo', 'needs-attention'];
/** The store's recording time is not part of any fold, so the fixtures leave it out. */
const RECORDED_AT = '2026-03-02T00:00:00.000Z';

const StreamFixture = z.strictObject({
  name: z.string().min(1),
  description: z.string().min(1),
  streamId: z.string().min(1),
  events: z
    .array(
      z.strictObject({
        eventId: z.uuid(),
        type: z.string().min(1),
        data: z.unknown(),
        metadata: z.unknown(),
        revision: z.number().int().nonnegative(),
        position: z.number().int().positive(),
      }),
    )
    .min(1),
  expected: z.strictObject({
    stateHash: z.string().regex(/^[0-9a-f]{64}$/),
    documentHash: z.string().regex(/^[0-9a-f]{64}$/),
  }),
});
type StreamFixture = z.infer<typeof StreamFixture>;

function loadFixtures(): StreamFixture[] {
  return readdirSync(FIXTURE_DIR)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => StreamFixture.parse(JSON.parse(readFileSync(join(FIXTURE_DIR, file), 'utf8'))));
}

function stored(fixture: StreamFixture): RecordedEvent[] {
  return fixture.events.map((e) => ({ ...e, streamId: fixture.streamId, recordedAt: RECORDED_AT }));
}

function decodeAll(fixture: StreamFixture): RecordedSessionEvent[] {
  return stored(fixture).map((e) => {
    const decoded = decodeSessionEvent(e);
    if (!decoded) throw new TypeError(`${fixture.name}@${e.revision}: unknown event type ${e.type}`);
    return decoded;
  });
}

/** Folds as every service does (the command handler's fold): with each event's place in the stream. */
function foldState(fixture: StreamFixture): SessionState {
  return decodeAll(fixture).reduce<SessionState>(
    (state, r) => evolve(state, r.event, r.metadata, { revision: r.revision, position: r.position }),
    initialState(),
  );
}

function foldDocument(fixture: StreamFixture, deliveries = 1): SessionDocument | null {
  let doc: SessionDocument | null = null;
  for (const r of decodeAll(fixture)) for (let i = 0; i < deliveries; i++) doc = applyToDocument(doc, r);
  return doc;
}

const fixtures = loadFixtures();

it('every recorded scenario has its fixture', () => {
  expect(fixtures.map((f) => f.name)).toEqual(RECORDED);
});

describe.each(fixtures.map((f) => [f.name, f] as const))('the recorded %s stream', (_name, fixture) => {
  it('decodes event by event through the codec: known types, valid metadata and payloads', () => {
    for (const e of stored(fixture)) {
      expect(Object.hasOwn(CURRENT_SCHEMA_VERSION, e.type), `${e.type} is a known event type`).toBe(true);
      // Written at some version up to the current one; decoding upcasts it from there.
      const written = z
        .object({ schemaVersion: z.number().int().positive() })
        .parse(e.metadata).schemaVersion;
      expect(written).toBeLessThanOrEqual(CURRENT_SCHEMA_VERSION[e.type as SessionEventType]);
      const decoded = decodeSessionEvent(e);
      expect(decoded).not.toBeNull();
      expect(fixture.streamId).toBe(`session-${decoded!.metadata.sessionId}`);
    }
  });

  it('holds one stream in order: revisions from 0 without gap, positions increasing', () => {
    expect(fixture.events.map((e) => e.revision)).toEqual(fixture.events.map((_, i) => i));
    const positions = fixture.events.map((e) => e.position);
    expect(positions).toEqual([...positions].sort((a, b) => a - b));
    expect(new Set(positions).size).toBe(positions.length);
  });

  it('folds with evolve to the state it folded to when it was recorded', () => {
    expect(stateHash(foldState(fixture))).toBe(fixture.expected.stateHash);
  });

  it('folds to the same state every time', () => {
    const first = foldState(fixture);
    const second = foldState(fixture);
    expect(second).toEqual(first);
    expect(stateHash(second)).toBe(stateHash(first));
  });

  it('projects to the read-model document it projected to when it was recorded', () => {
    const doc = foldDocument(fixture);
    expect(SessionDocument.safeParse(doc).success).toBe(true);
    expect(stateHash(doc)).toBe(fixture.expected.documentHash);
  });

  it('projects to the same document when every event is delivered twice', () => {
    expect(stateHash(foldDocument(fixture, 2))).toBe(fixture.expected.documentHash);
  });

  it('agrees between the aggregate and the read model on status, owner and steps', () => {
    const state = foldState(fixture);
    const doc = foldDocument(fixture);
    if (state.status === 'none' || doc === null) throw new TypeError('the stream opens no session');
    expect(doc).toMatchObject({
      status: state.status,
      epoch: state.epoch,
      robotId: state.owner?.robotId ?? null,
      checkpoint: state.checkpoint && {
        afterStepSeq: state.checkpoint.afterStepSeq,
        url: state.checkpoint.url,
      },
    });
    // The read model shows the steps a session ended (cancelled, expired, failed) before they finished as
    // cancelled; the aggregate keeps their last status, as nothing decides on them any more.
    const ended = state.status === 'cancelled' || state.status === 'expired' || state.status === 'failed';
    const shown = (step: StepState) => (ended && !isFinished(step) ? 'cancelled' : step.status);
    expect(doc.steps.map((s) => [s.stepId, s.seq, s.status, s.attempts])).toEqual(
      state.order.map((id) => [id, state.steps[id]!.seq, shown(state.steps[id]!), state.steps[id]!.attempts]),
    );
  });

  it('was opened by a v1 SessionOpened that reads as v2 with the documented defaults', () => {
    // Recorded before priorities and failure policies existed: these streams keep the upcasters exercised.
    expect(fixture.events[0]).toMatchObject({ type: 'SessionOpened', metadata: { schemaVersion: 1 } });
    const opened = decodeAll(fixture)[0]!;
    expect(opened.metadata.schemaVersion).toBe(CURRENT_SCHEMA_VERSION.SessionOpened);
    expect(opened.event.data).toMatchObject({ priority: 'normal', onStepFailure: 'continue', requires: {} });
  });
});
