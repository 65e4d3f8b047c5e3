import type { RecordedSessionEvent } from '../events/codec.js';
import type { StepOutput } from '../steps/stepSpec.js';
import type { SessionDocument, StepDocument } from './sessionDocument.js';

function assertNever(x: never): never {
  return x;
}

/**
 * Bounds on a step output kept in a session document, so that one large extraction cannot make the document
 * too large to store; the event stream keeps the output whole.
 */
export const DOCUMENT_OUTPUT_LIMITS = { textChars: 16_384, tableRows: 500, cellChars: 2_000 } as const;

function cut(text: string, max: number): string {
  return text.length > max ? text.slice(0, max) : text;
}

/** The output as the document keeps it: cut to DOCUMENT_OUTPUT_LIMITS (a pure function, so rebuilds agree). */
function boundedOutput(output: StepOutput): { output: StepOutput; truncated: boolean } {
  const { textChars, tableRows, cellChars } = DOCUMENT_OUTPUT_LIMITS;
  switch (output.kind) {
    case 'text':
      if (output.text.length <= textChars) return { output, truncated: false };
      return { output: { kind: 'text', text: cut(output.text, textChars) }, truncated: true };
    case 'table': {
      const tooLong = (cells: string[]) => cells.some((c) => c.length > cellChars);
      if (output.rows.length <= tableRows && !tooLong(output.headers) && !output.rows.some(tooLong))
        return { output, truncated: false };
      return {
        output: {
          kind: 'table',
          headers: output.headers.map((c) => cut(c, cellChars)),
          rows: output.rows.slice(0, tableRows).map((row) => row.map((c) => cut(c, cellChars))),
        },
        truncated: true,
      };
    }
    case 'navigation':
      if (output.title.length <= cellChars) return { output, truncated: false };
      return { output: { ...output, title: cut(output.title, cellChars) }, truncated: true };
    case 'artifact':
    case 'checkpoint':
    case 'none':
      return { output, truncated: false };
    default:
      return assertNever(output);
  }
}

type StepCounts = SessionDocument['stepCounts'];

function countSteps(steps: readonly StepDocument[]): StepCounts {
  const counts: StepCounts = {
    total: steps.length,
    queued: 0,
    running: 0,
    retrying: 0,
    succeeded: 0,
    failed: 0,
    cancelled: 0,
    deadLettered: 0,
  };
  for (const step of steps) {
    counts[step.status]++;
    if (step.deadLetter) counts.deadLettered++;
  }
  return counts;
}

function isFinished(step: StepDocument): boolean {
  return step.status === 'succeeded' || step.status === 'failed' || step.status === 'cancelled';
}

const TERMINAL: ReadonlySet<SessionDocument['status']> = new Set([
  'closed',
  'cancelled',
  'expired',
  'failed',
]);

/** The document of a session that ended before all its steps ran: those steps will never run. */
function endUnfinished(doc: SessionDocument): Pick<SessionDocument, 'steps' | 'stepCounts'> {
  if (!doc.steps.some((s) => !isFinished(s))) return { steps: doc.steps, stepCounts: doc.stepCounts };
  const steps = doc.steps.map((s) =>
    isFinished(s) ? s : { ...s, status: 'cancelled' as const, nextAttemptAt: null },
  );
  return { steps, stepCounts: countSteps(steps) };
}

/** Steps are kept in seq order, and seq starts at 1 without gaps, so the index is seq - 1; search only if not. */
function stepIndex(steps: readonly StepDocument[], stepId: string, seq: number): number {
  const guess = steps[seq - 1];
  if (guess?.stepId === stepId) return seq - 1;
  return steps.findIndex((s) => s.stepId === stepId);
}

function replaceStep(doc: SessionDocument, index: number, step: StepDocument): StepDocument[] {
  const steps = doc.steps.slice();
  steps[index] = step;
  return steps;
}

/**
 * Folds one recorded session event into the session's read-model document. Pure and total: an event at or below
 * the document's position, or of another session, returns the document unchanged (the same object), so applying
 * any event twice changes nothing and a rebuild from position zero yields the same document; an event that does
 * not apply only moves the document's version and position. Returns null only when there is no document yet and
 * the event is not the one that opens the session.
 */
export function applyToDocument(
  doc: SessionDocument | null,
  recorded: RecordedSessionEvent,
): SessionDocument | null {
  const { event, metadata, position, revision } = recorded;
  const at = metadata.occurredAt;
  if (doc === null) {
    if (event.type !== 'SessionOpened') return null;
    return {
      sessionId: metadata.sessionId,
      tenantId: metadata.tenantId,
      status: 'queued',
      robotId: null,
      epoch: 0,
      labels: event.data.labels,
      browser: event.data.browser,
      idleTimeoutMs: event.data.idleTimeoutMs,
      priority: event.data.priority,
      onStepFailure: event.data.onStepFailure,
      requires: event.data.requires,
      createdAt: at,
      updatedAt: at,
      closedAt: null,
      attention: null,
      pause: null,
      waiting: null,
      checkpoint: null,
      recoveries: 0,
      lastRecovery: null,
      stepCounts: countSteps([]),
      steps: [],
      version: revision,
      position,
    };
  }
  if (position <= doc.position || doc.sessionId !== metadata.sessionId) return doc;
  // Every applied event moves the document's coordinates, even one that changes nothing else, so that the
  // position always says how far the document has read.
  const touched = { ...doc, updatedAt: at, version: revision, position };

  switch (event.type) {
    case 'SessionOpened':
    case 'SecretUsed':
      // SecretUsed is an audit fact, shown by the session's event history: the document only moves its position.
      return touched;
    case 'StepSubmitted': {
      const { stepId, seq, step } = event.data;
      if (stepIndex(doc.steps, stepId, seq) >= 0) return touched;
      const submitted: StepDocument = {
        stepId,
        seq,
        action: step.action,
        replay: step.replay ?? 'safe',
        status: 'queued',
        attempts: 0,
        output: null,
        error: null,
        submittedAt: at,
        startedAt: null,
        finishedAt: null,
        durationMs: null,
        nextAttemptAt: null,
        deadLetter: null,
      };
      const steps = [...doc.steps, submitted];
      if (steps.length > 1 && steps[steps.length - 2]!.seq > seq) steps.sort((a, b) => a.seq - b.seq);
      return { ...touched, steps, stepCounts: countSteps(steps) };
    }
    case 'SessionClaimed':
      if (event.data.epoch <= doc.epoch) return touched;
      return {
        ...touched,
        status: doc.status === 'queued' ? 'open' : doc.status,
        robotId: event.data.robotId,
        epoch: event.data.epoch,
      };
    case 'StepStarted':
    case 'StepSucceeded':
    case 'StepFailed': {
      const index = stepIndex(doc.steps, event.data.stepId, event.data.seq);
      const step = doc.steps[index];
      // A finished step is final: nothing that arrives after its result rewrites it.
      if (!step || isFinished(step)) return touched;
      const attempts = Math.max(step.attempts, event.data.attempt);
      let next: StepDocument;
      if (event.type === 'StepStarted') {
        // Only a newer attempt restarts the clock; a repeated start of the same attempt keeps the first time.
        const newAttempt = event.data.attempt > step.attempts || step.startedAt === null;
        next = {
          ...step,
          status: 'running',
          attempts,
          startedAt: newAttempt ? at : step.startedAt,
          nextAttemptAt: null,
        };
      } else if (event.type === 'StepSucceeded') {
        const { output, truncated } = boundedOutput(event.data.output);
        next = {
          ...step,
          status: 'succeeded',
          attempts,
          output,
          ...(truncated ? { outputTruncated: true } : {}),
          error: null,
          finishedAt: at,
          durationMs: event.data.durationMs,
          nextAttemptAt: null,
        };
      } else {
        const { final, retryInMs } = event.data;
        next = {
          ...step,
          status: final ? 'failed' : 'retrying',
          attempts,
          output: null,
          error: event.data.error,
          finishedAt: final ? at : null,
          durationMs: event.data.durationMs,
          nextAttemptAt:
            final || retryInMs === null ? null : new Date(Date.parse(at) + retryInMs).toISOString(),
        };
      }
      const steps = replaceStep(doc, index, next);
      const waiting = event.type === 'StepStarted' ? { waiting: null } : {};
      return { ...touched, ...waiting, steps, stepCounts: countSteps(steps) };
    }
    case 'StepDeadLettered': {
      const index = stepIndex(doc.steps, event.data.stepId, event.data.seq);
      const step = doc.steps[index];
      if (!step) return touched;
      const { reason, attempts } = event.data;
      const steps = replaceStep(doc, index, { ...step, deadLetter: { reason, attempts, at } });
      return { ...touched, steps, stepCounts: countSteps(steps) };
    }
    case 'StepRetried': {
      const index = stepIndex(doc.steps, event.data.stepId, event.data.seq);
      const step = doc.steps[index];
      if (!step || step.status !== 'failed') return touched;
      const steps = replaceStep(doc, index, {
        ...step,
        status: 'queued',
        deadLetter: null,
        finishedAt: null,
        nextAttemptAt: null,
      });
      return { ...touched, steps, stepCounts: countSteps(steps) };
    }
    case 'SessionPaused': {
      if (doc.status !== 'open' && doc.status !== 'queued') return touched;
      const { reason, stepId } = event.data;
      return { ...touched, status: 'paused', pause: { reason, stepId, at } };
    }
    case 'SessionFailed':
      if (TERMINAL.has(doc.status)) return touched;
      return {
        ...touched,
        ...endUnfinished(doc),
        status: 'failed',
        attention: null,
        pause: null,
        waiting: null,
        closedAt: at,
      };
    case 'SessionWaiting': {
      if (TERMINAL.has(doc.status)) return touched;
      const { reason, origin, stepId } = event.data;
      return { ...touched, waiting: { reason, origin, stepId, since: at } };
    }
    case 'SessionCheckpointed': {
      const { afterStepSeq, url, trigger } = event.data;
      if (doc.checkpoint && doc.checkpoint.afterStepSeq > afterStepSeq) return touched;
      return { ...touched, checkpoint: { afterStepSeq, url, trigger, at } };
    }
    case 'SessionRecovered': {
      const { robotId, epoch, fromCheckpoint, replayedSteps, skippedSteps, durationMs } = event.data;
      return {
        ...touched,
        recoveries: doc.recoveries + 1,
        lastRecovery: {
          robotId,
          epoch,
          fromCheckpointSeq: fromCheckpoint?.afterStepSeq ?? null,
          replayedSteps,
          skippedSteps,
          durationMs,
          at,
        },
      };
    }
    case 'SessionNeedsAttention': {
      if (doc.status !== 'open' && doc.status !== 'closing' && doc.status !== 'queued') return touched;
      const { code, reason, stepIds } = event.data;
      return {
        ...touched,
        status: 'needs_attention',
        attention: { code, reason, stepIds, resumeTo: doc.status === 'closing' ? 'closing' : 'open', at },
      };
    }
    case 'SessionResumed':
      // A session paused before any robot took it goes back to waiting for one.
      if (doc.status === 'paused')
        return { ...touched, status: doc.epoch === 0 ? 'queued' : 'open', pause: null };
      if (doc.status !== 'needs_attention') return touched;
      return { ...touched, status: doc.attention?.resumeTo ?? 'open', attention: null };
    case 'SessionCancelled':
      if (TERMINAL.has(doc.status)) return touched;
      return {
        ...touched,
        ...endUnfinished(doc),
        status: 'cancelled',
        attention: null,
        pause: null,
        waiting: null,
        closedAt: at,
      };
    case 'SessionExpired':
      // Mirrors evolve (queued is evolve's open): a session waiting for an operator is not expired.
      if (
        doc.status !== 'open' &&
        doc.status !== 'queued' &&
        doc.status !== 'closing' &&
        doc.status !== 'paused'
      )
        return touched;
      return {
        ...touched,
        ...endUnfinished(doc),
        status: 'expired',
        pause: null,
        waiting: null,
        closedAt: at,
      };
    case 'SessionCloseRequested':
      if (doc.status !== 'open' && doc.status !== 'queued') return touched;
      return { ...touched, status: 'closing' };
    case 'SessionClosed':
      if (TERMINAL.has(doc.status)) return touched;
      return {
        ...touched,
        status: 'closed',
        attention: null,
        pause: null,
        waiting: null,
        closedAt: at,
        robotId: event.data.robotId ?? doc.robotId,
      };
    default:
      return assertNever(event);
  }
}
