import {
  HttpError,
  type Actor,
  type CommandResult,
  type LoadedSession,
  type SessionCommand,
} from '@rpa/shared';
import pMap from 'p-map';
import type { BatchItemResult } from '../http/schemas.js';
import { keyedBatchSessionId, keyedCommandId, stepIdFor, type IdSource } from '../ids.js';
import { submittedSteps } from '../submittedSteps.js';
import { batchRequestHash, openFieldsOf, type ParsedBatchItem } from './batchItems.js';
import type { BatchItemOutcome } from './batchMetrics.js';
import { itemFailure } from './itemFailure.js';

/** What a batch needs from the API: the same runner and state the single routes use, and who is asking. */
export interface SessionBatchScope {
  /** Runs one command through the command runner (lanes, conflict retries, metrics). */
  run(command: SessionCommand): Promise<CommandResult>;
  /** A session's current state, to tell a repeated keyed batch from another one under the same key. */
  load(sessionId: string): Promise<LoadedSession>;
  tenantId: string;
  actor: Actor;
  clock: () => Date;
  ids: IdSource;
  /** Items run at once; the rest wait, so that one batch cannot take every store round trip of the process. */
  concurrency: number;
  /** Told about failures that are ours (a 5xx), which the answer hides. */
  onInternalError(error: unknown, index: number): void;
}

/** One item's answer, and how it ended for the metrics. */
export interface BatchItemOutcomeResult {
  result: BatchItemResult;
  outcome: BatchItemOutcome;
}

const MISMATCH = 'this Idempotency-Key was first used with a different request body';

/**
 * Opens a session per valid item and submits its steps: OpenSession, then SubmitSteps, each through the runner.
 * Items are independent: a refused item appends nothing and answers its own error, the others open. With a key,
 * the n-th item opens a session derived from the tenant, the key and n, and both commands carry the key and the
 * batch's hash, so that a repeated batch answers what the first one did and appends nothing; a batch with the
 * same key and another body is refused whole (422) before any item runs. Two different batches raced under one
 * key are told apart only per item: each item's session opens once, and the loser's item answers 422.
 */
export async function openSessionBatch(
  scope: SessionBatchScope,
  items: readonly ParsedBatchItem[],
  key: string | undefined,
): Promise<BatchItemOutcomeResult[]> {
  const idempotency = key ? { key, requestHash: batchRequestHash(items) } : undefined;
  if (idempotency) await refuseOtherBody(scope, items.length, idempotency);
  return pMap(
    items,
    (parsed) =>
      parsed.ok
        ? openItem(scope, parsed, idempotency)
        : Promise.resolve({
            result: { index: parsed.index, ...ref(parsed), status: 400, opened: false, error: parsed.error },
            outcome: 'invalid' as const,
          }),
    { concurrency: scope.concurrency },
  );
}

/** Any session of this key's batch that exists already must have been opened by the same body. */
async function refuseOtherBody(
  scope: SessionBatchScope,
  count: number,
  { key, requestHash }: { key: string; requestHash: string },
): Promise<void> {
  const indexes = Array.from({ length: count }, (_, i) => i);
  const states = await pMap(indexes, (i) => scope.load(keyedBatchSessionId(scope.tenantId, key, i)), {
    concurrency: scope.concurrency,
  });
  const other = states.some(
    ({ state }) =>
      state.status !== 'none' &&
      state.tenantId === scope.tenantId &&
      state.openedWith.idempotencyKey === key &&
      state.openedWith.requestHash !== requestHash,
  );
  if (other) throw new HttpError(422, 'IDEMPOTENCY_MISMATCH', MISMATCH);
}

async function openItem(
  scope: SessionBatchScope,
  parsed: Extract<ParsedBatchItem, { ok: true }>,
  idempotency: { key: string; requestHash: string } | undefined,
): Promise<BatchItemOutcomeResult> {
  const { index, item } = parsed;
  const key = idempotency?.key;
  const base = (sessionId: string) => ({
    sessionId,
    tenantId: scope.tenantId,
    actor: scope.actor,
    at: scope.clock().toISOString(),
  });
  const sessionId = key ? keyedBatchSessionId(scope.tenantId, key, index) : scope.ids.sessionId();
  const withKey = idempotency ? { idempotency } : {};

  let opened: CommandResult;
  try {
    opened = await scope.run({
      ...base(sessionId),
      type: 'OpenSession',
      commandId: key ? keyedCommandId('open', scope.tenantId, sessionId, key) : scope.ids.commandId(),
      ...openFieldsOf(item),
      ...withKey,
    });
  } catch (error) {
    return failed(scope, parsed, error, null);
  }
  // SessionOpened is always a stream's first event: revision 0, whether this call appended it or an earlier one.
  const openedVersion = 0;
  let appended = opened.events.length > 0;

  const specs = item.steps ?? [];
  if (specs.length === 0) {
    const result = { index, ...ref(parsed), status: 201, opened: true, sessionId, version: openedVersion };
    return { result: { ...result, steps: [] }, outcome: appended ? 'accepted' : 'duplicate' };
  }
  const commandId = key ? keyedCommandId('submit', scope.tenantId, sessionId, key) : scope.ids.commandId();
  const steps = specs.map((step, i) => ({ stepId: stepIdFor(commandId, i), step }));
  let submitted: CommandResult;
  try {
    submitted = await scope.run({ ...base(sessionId), type: 'SubmitSteps', commandId, steps, ...withKey });
  } catch (error) {
    return failed(scope, parsed, error, { sessionId, version: openedVersion });
  }
  appended ||= submitted.events.length > 0;
  const answered = submittedSteps(submitted.state, steps, key);
  return {
    result: {
      index,
      ...ref(parsed),
      status: 201,
      opened: true,
      sessionId,
      version: versionAfter(submitted, answered),
      steps: answered,
    },
    outcome: appended ? 'accepted' : 'duplicate',
  };
}

/**
 * The stream revision right after the item's last event: the last one appended, or for a repeated keyed item the
 * place of the last step its first call submitted (the session may have moved on since).
 */
export function versionAfter(result: CommandResult, answered: ReadonlyArray<{ stepId: string }>): number {
  const last = result.events.at(-1);
  if (last) return last.revision;
  const lastStep = answered.at(-1);
  const place =
    lastStep && result.state.status !== 'none' ? result.state.steps[lastStep.stepId]?.submitted : undefined;
  return place?.revision ?? result.version;
}

function failed(
  scope: SessionBatchScope,
  parsed: Extract<ParsedBatchItem, { ok: true }>,
  error: unknown,
  session: { sessionId: string; version: number } | null,
): BatchItemOutcomeResult {
  const failure = itemFailure(error);
  if (failure.internal) scope.onInternalError(error, parsed.index);
  const result: BatchItemResult = {
    index: parsed.index,
    ...ref(parsed),
    status: failure.status,
    opened: session !== null,
    ...(session ?? {}),
    error: session
      ? {
          ...failure.error,
          message: `session ${session.sessionId} was opened, but its steps were not submitted: ${failure.error.message}`,
        }
      : failure.error,
  };
  return { result, outcome: session ? 'steps_failed' : failure.kind };
}

const ref = (parsed: ParsedBatchItem) =>
  parsed.clientRef === undefined ? {} : { clientRef: parsed.clientRef };
