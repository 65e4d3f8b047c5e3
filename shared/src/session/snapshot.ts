import { gunzip, gzip } from 'node:zlib';
import { z } from 'zod';
import {
  AttentionCode,
  BrowserOptions,
  PauseReason,
  SessionPriority,
  StepFailurePolicy,
  WaitReason,
} from '../events/sessionEvents.js';
import { sessionStreamId } from '../events/codec.js';
import { RetryPolicy, STEP_ACTIONS, type StepAction } from '../steps/stepSpec.js';
import type { SessionState } from './state.js';

const gzipAsync = (json: string) =>
  new Promise<Buffer>((resolve, reject) =>
    gzip(json, (error, out) => (error ? reject(error) : resolve(out))),
  );
const gunzipAsync = (bytes: Uint8Array, maxOutputLength: number) =>
  new Promise<Buffer>((resolve, reject) =>
    gunzip(bytes, { maxOutputLength }, (error, out) => (error ? reject(error) : resolve(out))),
  );

/**
 * Format of a stored snapshot. Bump it whenever SessionState's shape or what `evolve` makes of a stream changes:
 * snapshots of any other format are ignored (the session is folded from its events), so none is ever misread.
 */
export const SNAPSHOT_FORMAT = 4;

/** A session's folded state as of one revision of its stream: loading starts here and reads only what follows. */
export interface SessionSnapshot {
  v: typeof SNAPSHOT_FORMAT;
  streamId: string;
  /** Revision of the last event folded into `state`. */
  version: number;
  /** Global position of that event: where a read of the events after it can start. */
  position: number;
  state: SessionState;
}

/**
 * Where snapshots are kept, one per stream (the newest put). Snapshots are a cache of what the events say: a
 * missing, unreadable or stale one costs a longer read, never a wrong state.
 */
export interface SnapshotStore {
  /** The stream's snapshot; null when there is none or the stored one fails validation. */
  get(streamId: string): Promise<SessionSnapshot | null>;
  /** Replaces the stream's snapshot. */
  put(snapshot: SessionSnapshot): Promise<void>;
}

const Counter = z.number().int().nonnegative();
const Id = z.string().min(1);

const StepStateSchema = z.strictObject({
  stepId: Id,
  seq: z.number().int().positive(),
  action: z.enum(STEP_ACTIONS as [StepAction, ...StepAction[]]),
  replay: z.enum(['safe', 'never']),
  status: z.enum(['queued', 'running', 'retrying', 'succeeded', 'failed']),
  attempts: Counter,
  retriedAt: Counter,
  retry: RetryPolicy,
  setsCredentials: z.literal(true).optional(),
  submitted: z.strictObject({ revision: Counter, position: Counter }).optional(),
});

const existing = {
  sessionId: Id,
  tenantId: Id,
  browser: BrowserOptions,
  idleTimeoutMs: z.number().int().positive().nullable(),
  priority: SessionPriority,
  onStepFailure: StepFailurePolicy,
  requires: z.record(z.string(), z.string()),
  waiting: z.strictObject({ reason: WaitReason, origin: z.string(), stepId: Id }).nullable(),
  epoch: Counter,
  owner: z.strictObject({ robotId: Id, epoch: Counter }).nullable(),
  lastSeq: Counter,
  steps: z.record(z.string(), StepStateSchema),
  order: z.array(Id),
  submissions: z.record(
    z.string(),
    z.strictObject({
      requestHash: z.string(),
      steps: z.array(z.strictObject({ stepId: Id, seq: z.number().int().positive() })),
    }),
  ),
  openedWith: z.strictObject({ idempotencyKey: z.string().nullable(), requestHash: z.string().nullable() }),
  checkpoint: z.strictObject({ afterStepSeq: Counter, stateKey: Id, url: z.string() }).nullable(),
  replaySkips: z.array(Id),
};

/** SessionState as zod sees it; typed against SessionState so that the two cannot drift apart unnoticed. */
const SessionStateSchema: z.ZodType<SessionState> = z.discriminatedUnion('status', [
  z.strictObject({ status: z.literal('none') }),
  z.strictObject({ ...existing, status: z.literal('open') }),
  z.strictObject({ ...existing, status: z.literal('closing') }),
  z.strictObject({
    ...existing,
    status: z.literal('paused'),
    pause: z.strictObject({ reason: PauseReason, stepId: Id.nullable() }),
  }),
  z.strictObject({
    ...existing,
    status: z.literal('needs_attention'),
    attention: z.strictObject({
      code: AttentionCode,
      reason: z.string(),
      stepIds: z.array(Id),
      resumeTo: z.enum(['open', 'closing']),
    }),
  }),
  z.strictObject({ ...existing, status: z.literal('closed') }),
  z.strictObject({ ...existing, status: z.literal('cancelled') }),
  z.strictObject({ ...existing, status: z.literal('expired') }),
  z.strictObject({ ...existing, status: z.literal('failed') }),
]);

const SessionSnapshotSchema = z.strictObject({
  v: z.literal(SNAPSHOT_FORMAT),
  streamId: Id,
  version: Counter,
  position: Counter,
  state: SessionStateSchema,
});

/** What reading a stored snapshot gave: the snapshot, or why it must not be used. */
export type SnapshotReading = { ok: true; snapshot: SessionSnapshot } | { ok: false; reason: string };

/** Largest JSON a stored snapshot may inflate to: far above any session's state, far below trouble. */
const MAX_SNAPSHOT_JSON_BYTES = 64 * 1_048_576;

/**
 * The bytes a snapshot is stored as: gzipped JSON, so that the state of a session with the most steps allowed
 * stays well within a NATS message (about a quarter of the JSON). Compressed off the event loop.
 */
export async function encodeSnapshot(snapshot: SessionSnapshot): Promise<Uint8Array> {
  return gzipAsync(JSON.stringify(snapshot));
}

/** Reads stored bytes as the snapshot of `streamId`; see validateSnapshot for what is checked. */
export async function decodeSnapshot(bytes: Uint8Array, streamId: string): Promise<SnapshotReading> {
  let json: string;
  try {
    json = (await gunzipAsync(bytes, MAX_SNAPSHOT_JSON_BYTES)).toString('utf8');
  } catch {
    return { ok: false, reason: 'not gzip, or too large' };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    return { ok: false, reason: 'not JSON' };
  }
  return validateSnapshot(raw, streamId);
}

/**
 * Checks a parsed snapshot of `streamId`, trusting nothing: another format, a failed schema, another stream or a
 * state that does not hold together all come back as a reason not to use it.
 */
export function validateSnapshot(raw: unknown, streamId: string): SnapshotReading {
  const format = (raw as { v?: unknown } | null)?.v;
  if (format !== SNAPSHOT_FORMAT) return { ok: false, reason: `format ${JSON.stringify(format)}` };
  const parsed = SessionSnapshotSchema.safeParse(raw);
  if (!parsed.success) {
    const paths = [...new Set(parsed.error.issues.map((i) => i.path.join('.') || '(root)'))].slice(0, 5);
    return { ok: false, reason: `invalid fields ${paths.join(', ')}` };
  }
  const snapshot = parsed.data as SessionSnapshot;
  if (snapshot.streamId !== streamId)
    return { ok: false, reason: `snapshot of another stream (${snapshot.streamId})` };
  const inconsistency = checkState(snapshot.state, streamId);
  if (inconsistency) return { ok: false, reason: inconsistency };
  return { ok: true, snapshot };
}

/** What no fold can produce; null when the state holds together. */
function checkState(state: SessionState, streamId: string): string | null {
  if (state.status === 'none') return null;
  if (sessionStreamId(state.sessionId) !== streamId) return `state of session ${state.sessionId}`;
  const ids = Object.keys(state.steps);
  if (ids.length !== state.order.length) return 'steps and their order disagree';
  for (const [index, stepId] of state.order.entries()) {
    const step = state.steps[stepId];
    if (!step || step.stepId !== stepId || step.seq !== index + 1) return `step ${stepId} is out of place`;
  }
  return null;
}
