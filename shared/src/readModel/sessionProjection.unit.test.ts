import { describe, expect, it } from 'vitest';
import type { RecordedSessionEvent } from '../events/codec.js';
import type { SessionEvent, SessionEventOf, SessionEventType } from '../events/sessionEvents.js';
import { applyToDocument, DOCUMENT_OUTPUT_LIMITS } from './sessionProjection.js';
import { SessionDocument } from './sessionDocument.js';

const SESSION = 's1';
const TENANT = 'acme';
const robot = { robotId: 'robot-a', epoch: 1 };

/** A stream of recorded events for one session: revision and position advance with each event. */
function history() {
  let revision = -1;
  let position = 100;
  let minute = 0;
  return function record<K extends SessionEventType>(
    type: K,
    data: SessionEventOf<K>['data'],
    options: { sessionId?: string } = {},
  ): RecordedSessionEvent {
    revision++;
    position += 3; // global positions are increasing, not contiguous
    minute++;
    const at = `2025-01-01T10:${String(minute).padStart(2, '0')}:00.000Z`;
    const sessionId = options.sessionId ?? SESSION;
    return {
      event: { type, data } as SessionEvent,
      metadata: {
        schemaVersion: 1,
        tenantId: TENANT,
        sessionId,
        occurredAt: at,
        commandId: `c${revision}`,
        commandType: 'Test',
        actor: { kind: 'system', id: 'test' },
      },
      eventId: `e${revision}`,
      streamId: `session-${sessionId}`,
      revision,
      position,
      recordedAt: at,
    };
  };
}

/** Step counts with every count not named zero. */
function counts(named: Partial<SessionDocument['stepCounts']>): SessionDocument['stepCounts'] {
  const zero = { queued: 0, running: 0, retrying: 0, succeeded: 0, failed: 0, cancelled: 0, deadLettered: 0 };
  return { total: 0, ...zero, ...named };
}

function fold(events: RecordedSessionEvent[], from: SessionDocument | null = null): SessionDocument | null {
  return events.reduce<SessionDocument | null>((doc, e) => applyToDocument(doc, e), from);
}

/** A full session: opened, three steps, claimed, one succeeded, one failed after a retry, closed. */
function fullSession(): RecordedSessionEvent[] {
  const r = history();
  return [
    r('SessionOpened', {
      labels: { team: 'billing' },
      browser: { locale: 'en-US' },
      idleTimeoutMs: 60_000,
      priority: 'normal',
      onStepFailure: 'continue',
      requires: {},
    }),
    r('StepSubmitted', { stepId: 'a', seq: 1, step: { action: 'navigate', url: 'https://example.com/' } }),
    r('StepSubmitted', { stepId: 'b', seq: 2, step: { action: 'click', selector: '#pay', replay: 'never' } }),
    r('StepSubmitted', { stepId: 'c', seq: 3, step: { action: 'extractText', selector: 'h1' } }),
    r('SessionClaimed', { ...robot, previousRobotId: null }),
    r('StepStarted', { stepId: 'a', seq: 1, attempt: 1, ...robot }),
    r('StepSucceeded', {
      stepId: 'a',
      seq: 1,
      attempt: 1,
      output: { kind: 'navigation', url: 'https://example.com/', status: 200, title: 'Example' },
      durationMs: 120,
      ...robot,
    }),
    r('StepStarted', { stepId: 'b', seq: 2, attempt: 1, ...robot }),
    r('StepStarted', { stepId: 'b', seq: 2, attempt: 2, ...robot }),
    r('StepFailed', {
      stepId: 'b',
      seq: 2,
      attempt: 2,
      error: { code: 'SELECTOR_NOT_FOUND', message: 'no #pay' },
      durationMs: 15_000,
      final: true,
      retryInMs: null,
      ...robot,
    }),
    r('SessionCloseRequested', { reason: 'done' }),
    r('SessionClosed', { ...robot }),
  ];
}

describe('applyToDocument', () => {
  it('given nothing, when the session opens, then a document exists with its options and no steps', () => {
    const [opened] = fullSession();
    const doc = applyToDocument(null, opened!);
    expect(doc).toEqual({
      sessionId: SESSION,
      tenantId: TENANT,
      status: 'queued',
      robotId: null,
      epoch: 0,
      labels: { team: 'billing' },
      browser: { locale: 'en-US' },
      idleTimeoutMs: 60_000,
      priority: 'normal',
      onStepFailure: 'continue',
      requires: {},
      createdAt: '2025-01-01T10:01:00.000Z',
      updatedAt: '2025-01-01T10:01:00.000Z',
      closedAt: null,
      attention: null,
      pause: null,
      waiting: null,
      checkpoint: null,
      recoveries: 0,
      lastRecovery: null,
      stepCounts: counts({}),
      steps: [],
      version: 0,
      position: 103,
    });
    expect(SessionDocument.parse(doc)).toEqual(doc);
  });

  it('given nothing, when any other event arrives first, then there is still no document', () => {
    const events = fullSession();
    for (const e of events.slice(1)) expect(applyToDocument(null, e)).toBeNull();
  });

  it('given an open session, when steps are submitted, then they are queued in seq order with their submit time', () => {
    const doc = fold(fullSession().slice(0, 4))!;
    expect(doc.steps.map((s) => [s.stepId, s.seq, s.action, s.replay, s.status, s.attempts])).toEqual([
      ['a', 1, 'navigate', 'safe', 'queued', 0],
      ['b', 2, 'click', 'never', 'queued', 0],
      ['c', 3, 'extractText', 'safe', 'queued', 0],
    ]);
    expect(doc.steps[1]).toMatchObject({
      submittedAt: '2025-01-01T10:03:00.000Z',
      startedAt: null,
      finishedAt: null,
      output: null,
      error: null,
      durationMs: null,
    });
    expect(doc.stepCounts).toEqual(counts({ total: 3, queued: 3 }));
    expect(doc.version).toBe(3);
    expect(doc.updatedAt).toBe('2025-01-01T10:04:00.000Z');
  });

  it('given steps, when a robot claims the session, then the document names the owner and epoch', () => {
    const doc = fold(fullSession().slice(0, 5))!;
    expect(doc).toMatchObject({ robotId: 'robot-a', epoch: 1, status: 'open' });
  });

  it('given an owner, when an older epoch claim arrives, then the owner stays', () => {
    const r = history();
    const doc = fold([
      r('SessionOpened', {
        labels: {},
        browser: {},
        idleTimeoutMs: null,
        priority: 'normal',
        onStepFailure: 'continue',
        requires: {},
      }),
      r('SessionClaimed', { robotId: 'robot-b', epoch: 2, previousRobotId: 'robot-a' }),
      r('SessionClaimed', { robotId: 'robot-a', epoch: 1, previousRobotId: null }),
    ])!;
    expect(doc).toMatchObject({ robotId: 'robot-b', epoch: 2, version: 2 });
  });

  it('when a step starts, then it is running with its attempt and start time', () => {
    const doc = fold(fullSession().slice(0, 6))!;
    expect(doc.steps[0]).toMatchObject({
      status: 'running',
      attempts: 1,
      startedAt: '2025-01-01T10:06:00.000Z',
      finishedAt: null,
    });
    expect(doc.stepCounts).toEqual(counts({ total: 3, queued: 2, running: 1 }));
  });

  it('when a step succeeds, then it carries its output, finish time and duration', () => {
    const doc = fold(fullSession().slice(0, 7))!;
    expect(doc.steps[0]).toEqual({
      stepId: 'a',
      seq: 1,
      action: 'navigate',
      replay: 'safe',
      status: 'succeeded',
      attempts: 1,
      output: { kind: 'navigation', url: 'https://example.com/', status: 200, title: 'Example' },
      error: null,
      submittedAt: '2025-01-01T10:02:00.000Z',
      startedAt: '2025-01-01T10:06:00.000Z',
      finishedAt: '2025-01-01T10:07:00.000Z',
      durationMs: 120,
      nextAttemptAt: null,
      deadLetter: null,
    });
    expect(doc.stepCounts).toEqual(counts({ total: 3, queued: 2, succeeded: 1 }));
  });

  it('when a step is retried and fails, then it counts attempts, restarts its clock and carries the error', () => {
    const doc = fold(fullSession().slice(0, 10))!;
    expect(doc.steps[1]).toMatchObject({
      status: 'failed',
      attempts: 2,
      startedAt: '2025-01-01T10:09:00.000Z',
      finishedAt: '2025-01-01T10:10:00.000Z',
      error: { code: 'SELECTOR_NOT_FOUND', message: 'no #pay' },
      output: null,
      durationMs: 15_000,
    });
    expect(doc.stepCounts).toEqual(counts({ total: 3, queued: 1, succeeded: 1, failed: 1 }));
  });

  it('when close is requested and then confirmed, then the session is closing, then closed with its time', () => {
    const events = fullSession();
    const closing = fold(events.slice(0, 11))!;
    expect(closing).toMatchObject({ status: 'closing', closedAt: null });
    const closed = applyToDocument(closing, events[11]!)!;
    expect(closed).toMatchObject({
      status: 'closed',
      closedAt: '2025-01-01T10:12:00.000Z',
      updatedAt: '2025-01-01T10:12:00.000Z',
      robotId: 'robot-a',
      version: 11,
      position: 136,
    });
    expect(SessionDocument.parse(closed)).toEqual(closed);
  });

  it('given a finished step, when a late start of it arrives, then the step keeps its result', () => {
    const r = history();
    const events = [
      r('SessionOpened', {
        labels: {},
        browser: {},
        idleTimeoutMs: null,
        priority: 'normal',
        onStepFailure: 'continue',
        requires: {},
      }),
      r('StepSubmitted', { stepId: 'a', seq: 1, step: { action: 'click', selector: 'a' } }),
      r('StepStarted', { stepId: 'a', seq: 1, attempt: 1, ...robot }),
      r('StepSucceeded', {
        stepId: 'a',
        seq: 1,
        attempt: 1,
        output: { kind: 'none' },
        durationMs: 5,
        ...robot,
      }),
      r('StepStarted', { stepId: 'a', seq: 1, attempt: 2, ...robot }),
    ];
    const doc = fold(events)!;
    expect(doc.steps[0]).toMatchObject({ status: 'succeeded', attempts: 1, output: { kind: 'none' } });
    expect(doc.version).toBe(4);
  });

  it('given a step, when the same step id is submitted again, then there is still one step', () => {
    const r = history();
    const doc = fold([
      r('SessionOpened', {
        labels: {},
        browser: {},
        idleTimeoutMs: null,
        priority: 'normal',
        onStepFailure: 'continue',
        requires: {},
      }),
      r('StepSubmitted', { stepId: 'a', seq: 1, step: { action: 'click', selector: 'a' } }),
      r('StepSubmitted', { stepId: 'a', seq: 1, step: { action: 'click', selector: 'a' } }),
    ])!;
    expect(doc.steps).toHaveLength(1);
    expect(doc.stepCounts.total).toBe(1);
  });

  it('ignores results for a step it does not know, moving only its position', () => {
    const r = history();
    const opened = fold([
      r('SessionOpened', {
        labels: {},
        browser: {},
        idleTimeoutMs: null,
        priority: 'normal',
        onStepFailure: 'continue',
        requires: {},
      }),
    ])!;
    const next = applyToDocument(opened, r('StepStarted', { stepId: 'zz', seq: 9, attempt: 1, ...robot }))!;
    expect({ ...next, version: 0, position: opened.position, updatedAt: opened.updatedAt }).toEqual(opened);
    expect(next.position).toBeGreaterThan(opened.position);
  });

  it('when a secret use is recorded, then only the position moves: the document holds no secret data', () => {
    const r = history();
    const opened = fold([
      r('SessionOpened', {
        labels: {},
        browser: {},
        idleTimeoutMs: null,
        priority: 'normal',
        onStepFailure: 'continue',
        requires: {},
      }),
    ])!;
    const used = r('SecretUsed', {
      name: 'login.password',
      stepId: 'a',
      attempt: 1,
      replay: false,
      ...robot,
    });
    const next = applyToDocument(opened, used)!;
    expect({ ...next, version: 0, position: opened.position, updatedAt: opened.updatedAt }).toEqual(opened);
    expect(next.position).toBe(used.position);
    expect(applyToDocument(next, used)).toBe(next);
  });

  it('when a step extracts more than the document keeps, then its output is cut and marked truncated', () => {
    const r = history();
    const rows = Array.from({ length: DOCUMENT_OUTPUT_LIMITS.tableRows + 10 }, (_, i) => [`r${i}`]);
    const doc = fold([
      r('SessionOpened', {
        labels: {},
        browser: {},
        idleTimeoutMs: null,
        priority: 'normal',
        onStepFailure: 'continue',
        requires: {},
      }),
      r('StepSubmitted', { stepId: 'a', seq: 1, step: { action: 'extractText', selector: 'p' } }),
      r('StepSubmitted', { stepId: 'b', seq: 2, step: { action: 'extractTable', selector: 't' } }),
      r('StepSucceeded', {
        stepId: 'a',
        seq: 1,
        attempt: 1,
        output: { kind: 'text', text: 'x'.repeat(DOCUMENT_OUTPUT_LIMITS.textChars + 1) },
        durationMs: 1,
        ...robot,
      }),
      r('StepSucceeded', {
        stepId: 'b',
        seq: 2,
        attempt: 1,
        output: { kind: 'table', headers: ['h'], rows },
        durationMs: 1,
        ...robot,
      }),
    ])!;
    expect(doc.steps[0]).toMatchObject({
      outputTruncated: true,
      output: { kind: 'text', text: 'x'.repeat(DOCUMENT_OUTPUT_LIMITS.textChars) },
    });
    expect(doc.steps[1]).toMatchObject({
      outputTruncated: true,
      output: { kind: 'table', headers: ['h'], rows: rows.slice(0, DOCUMENT_OUTPUT_LIMITS.tableRows) },
    });
    expect(fold(fullSession())!.steps[0]!.outputTruncated).toBeUndefined();
  });

  it('ignores an event of another session', () => {
    const r = history();
    const doc = fold([
      r('SessionOpened', {
        labels: {},
        browser: {},
        idleTimeoutMs: null,
        priority: 'normal',
        onStepFailure: 'continue',
        requires: {},
      }),
    ])!;
    const other = r('SessionCloseRequested', { reason: null }, { sessionId: 'other' });
    expect(applyToDocument(doc, other)).toBe(doc);
  });

  describe('idempotency', () => {
    it('applying every event twice in a row yields the identical document', () => {
      const events = fullSession();
      const once = fold(events);
      const twice = events.reduce<SessionDocument | null>(
        (doc, e) => applyToDocument(applyToDocument(doc, e), e),
        null,
      );
      expect(twice).toEqual(once);
    });

    it('replaying the whole history onto the finished document changes nothing', () => {
      const events = fullSession();
      const once = fold(events)!;
      expect(fold(events, once)).toBe(once);
    });

    it('a redelivered prefix after later events is ignored (out-of-order position)', () => {
      const events = fullSession();
      const doc = fold(events.slice(0, 8))!;
      for (const old of events.slice(0, 8)) expect(applyToDocument(doc, old)).toBe(doc);
      expect(fold(events.slice(8), fold(events.slice(0, 5), doc))).toEqual(fold(events));
    });

    it('every intermediate document satisfies the schema', () => {
      let doc: SessionDocument | null = null;
      for (const e of fullSession()) {
        doc = applyToDocument(doc, e);
        expect(SessionDocument.safeParse(doc).success).toBe(true);
      }
    });
  });
});

describe('applyToDocument: restore points, recovery, attention, resume and cancel', () => {
  const opened = (r: ReturnType<typeof history>) =>
    r('SessionOpened', {
      labels: {},
      browser: {},
      idleTimeoutMs: null,
      priority: 'normal',
      onStepFailure: 'continue',
      requires: {},
    });
  const submitted = (r: ReturnType<typeof history>, stepId: string, seq: number) =>
    r('StepSubmitted', { stepId, seq, step: { action: 'click', selector: `#${stepId}` } });
  const checkpointed = (r: ReturnType<typeof history>, afterStepSeq: number, trigger: 'document' | 'step') =>
    r('SessionCheckpointed', {
      afterStepSeq,
      stateKey: `${SESSION}.${afterStepSeq}.1`,
      url: `https://example.com/page-${afterStepSeq}`,
      trigger,
      ...robot,
    });
  const attention = (r: ReturnType<typeof history>, stepIds = ['b']) =>
    r('SessionNeedsAttention', {
      code: 'UNSAFE_REPLAY',
      reason: 'step b must not run twice',
      stepIds,
      robotId: 'robot-b',
      epoch: 2,
    });

  /** Applies each event twice in a row: the second application must return the very same document. */
  function foldTwice(events: RecordedSessionEvent[]): SessionDocument | null {
    return events.reduce<SessionDocument | null>((doc, e) => {
      const once = applyToDocument(doc, e);
      const again = applyToDocument(once, e);
      expect(again).toBe(once);
      expect(SessionDocument.safeParse(once).success).toBe(true);
      return once;
    }, null);
  }

  it('given a restore point, when a newer one is recorded, then it replaces it; an older one never does', () => {
    const r = history();
    const base = [opened(r), submitted(r, 'a', 1), submitted(r, 'b', 2), submitted(r, 'c', 3)];
    const first = checkpointed(r, 1, 'document');
    const newer = checkpointed(r, 3, 'step');
    const older = checkpointed(r, 2, 'document');

    const afterFirst = foldTwice([...base, first])!;
    expect(afterFirst.checkpoint).toEqual({
      afterStepSeq: 1,
      url: 'https://example.com/page-1',
      trigger: 'document',
      at: first.metadata.occurredAt,
    });
    const doc = foldTwice([...base, first, newer, older])!;
    expect(doc.checkpoint).toEqual({
      afterStepSeq: 3,
      url: 'https://example.com/page-3',
      trigger: 'step',
      at: newer.metadata.occurredAt,
    });
    // The older one still moves the document's coordinates, and the storage state key is never in it.
    expect(doc.position).toBe(older.position);
    expect(JSON.stringify(doc)).not.toContain('stateKey');
  });

  it('when a robot recovers the session, then the count goes up and the last recovery is described', () => {
    const r = history();
    const base = [opened(r), submitted(r, 'a', 1)];
    const first = r('SessionRecovered', {
      fromCheckpoint: null,
      replayedSteps: 2,
      skippedSteps: 0,
      durationMs: 900,
      ...robot,
    });
    const second = r('SessionRecovered', {
      fromCheckpoint: { afterStepSeq: 1, stateKey: `${SESSION}.1.1` },
      replayedSteps: 1,
      skippedSteps: 1,
      durationMs: 450,
      robotId: 'robot-b',
      epoch: 2,
    });
    const once = foldTwice([...base, first])!;
    expect(once).toMatchObject({
      recoveries: 1,
      lastRecovery: {
        robotId: 'robot-a',
        epoch: 1,
        fromCheckpointSeq: null,
        replayedSteps: 2,
        skippedSteps: 0,
        durationMs: 900,
        at: first.metadata.occurredAt,
      },
    });
    const twice = applyToDocument(applyToDocument(once, second), second)!;
    expect(twice.recoveries).toBe(2);
    expect(twice.lastRecovery).toEqual({
      robotId: 'robot-b',
      epoch: 2,
      fromCheckpointSeq: 1,
      replayedSteps: 1,
      skippedSteps: 1,
      durationMs: 450,
      at: second.metadata.occurredAt,
    });
  });

  it('given an open session, when it needs attention, then it says why and resumes to open', () => {
    const r = history();
    const base = [opened(r), submitted(r, 'b', 1), submitted(r, 'c', 2)];
    const flagged = attention(r, ['b', 'c']);
    const doc = foldTwice([...base, flagged])!;
    expect(doc.status).toBe('needs_attention');
    expect(doc.attention).toEqual({
      code: 'UNSAFE_REPLAY',
      reason: 'step b must not run twice',
      stepIds: ['b', 'c'],
      resumeTo: 'open',
      at: flagged.metadata.occurredAt,
    });
    expect(doc.closedAt).toBeNull();
  });

  it('given a session that needs attention, when it is resumed, then it returns to the status it had', () => {
    const r = history();
    const fromOpen = foldTwice([opened(r), attention(r), r('SessionResumed', { skipReplay: ['b'] })])!;
    expect(fromOpen).toMatchObject({ status: 'open', attention: null });

    const c = history();
    const fromClosing = foldTwice([
      opened(c),
      c('SessionCloseRequested', { reason: null }),
      attention(c),
      c('SessionResumed', { skipReplay: [] }),
    ])!;
    expect(fromClosing).toMatchObject({ status: 'closing', attention: null });
  });

  it('given a session that does not need attention, when a resume arrives, then its status stays', () => {
    const r = history();
    const queued = foldTwice([opened(r), r('SessionResumed', { skipReplay: [] })])!;
    expect(queued).toMatchObject({ status: 'queued', attention: null, version: 1 });
    const claimed = r('SessionClaimed', { ...robot, previousRobotId: null });
    const open = fold([claimed, r('SessionResumed', { skipReplay: [] })], queued)!;
    expect(open).toMatchObject({ status: 'open', attention: null, version: 3 });
  });

  it('when a session is cancelled, then it is cancelled with its time, and a later close changes nothing', () => {
    const r = history();
    const base = [opened(r), submitted(r, 'b', 1), attention(r)];
    const cancelled = r('SessionCancelled', { reason: 'wrong customer' });
    const doc = foldTwice([...base, cancelled])!;
    expect(doc).toMatchObject({
      status: 'cancelled',
      attention: null,
      closedAt: cancelled.metadata.occurredAt,
    });
    const late = r('SessionClosed', { ...robot });
    const after = applyToDocument(doc, late)!;
    expect(after).toMatchObject({ status: 'cancelled', closedAt: cancelled.metadata.occurredAt });
    expect(applyToDocument(after, late)).toBe(after);
  });

  it('given a closed session, when a cancel arrives, then it stays closed', () => {
    const r = history();
    const base = [opened(r), r('SessionCloseRequested', { reason: null })];
    const closed = r('SessionClosed', { ...robot });
    const doc = foldTwice([...base, closed, r('SessionCancelled', { reason: null })])!;
    expect(doc).toMatchObject({ status: 'closed', closedAt: closed.metadata.occurredAt });
  });

  it('a rebuild of a history with every new event yields the same document as applying each event twice', () => {
    const r = history();
    const events = [
      opened(r),
      submitted(r, 'a', 1),
      submitted(r, 'b', 2),
      r('SessionClaimed', { ...robot, previousRobotId: null }),
      checkpointed(r, 1, 'document'),
      r('SessionClaimed', { robotId: 'robot-b', epoch: 2, previousRobotId: 'robot-a' }),
      attention(r),
      r('SessionResumed', { skipReplay: ['b'] }),
      r('SessionRecovered', {
        fromCheckpoint: { afterStepSeq: 1, stateKey: `${SESSION}.1.1` },
        replayedSteps: 0,
        skippedSteps: 1,
        durationMs: 100,
        robotId: 'robot-b',
        epoch: 2,
      }),
      r('SessionCancelled', { reason: null }),
    ];
    const once = fold(events)!;
    expect(foldTwice(events)).toEqual(once);
    expect(fold(events, once)).toBe(once);
    expect(once).toMatchObject({
      status: 'cancelled',
      robotId: 'robot-b',
      epoch: 2,
      recoveries: 1,
      checkpoint: { afterStepSeq: 1 },
      lastRecovery: { fromCheckpointSeq: 1, skippedSteps: 1 },
    });
  });
});

describe('applyToDocument: expiry', () => {
  const opened = (r: ReturnType<typeof history>) =>
    r('SessionOpened', {
      labels: {},
      browser: {},
      idleTimeoutMs: 1_500,
      priority: 'normal',
      onStepFailure: 'continue',
      requires: {},
    });
  const expired = (r: ReturnType<typeof history>) =>
    r('SessionExpired', { reason: 'idle', idleMs: 1_600, ...robot });

  it('given an open session, when it expires (delivered twice), then it is expired with its time', () => {
    const r = history();
    const base = [opened(r), r('SessionClaimed', { ...robot, previousRobotId: null })];
    const event = expired(r);
    const doc = fold([...base, event])!;
    expect(doc).toMatchObject({ status: 'expired', closedAt: event.metadata.occurredAt, version: 2 });
    expect(applyToDocument(doc, event)).toBe(doc);
  });

  it('given an expired session, when a late close or cancel arrives, then it stays expired', () => {
    const r = history();
    const first = opened(r);
    const event = expired(r);
    const doc = fold([first, event])!;
    const after = fold([r('SessionClosed', { ...robot }), r('SessionCancelled', { reason: null })], doc)!;
    expect(after).toMatchObject({ status: 'expired', closedAt: event.metadata.occurredAt });
  });

  it('given a session that needs attention, when an expiry arrives, then it still needs attention', () => {
    const r = history();
    const doc = fold([
      opened(r),
      r('SessionNeedsAttention', { code: 'UNSAFE_REPLAY', reason: 'b', stepIds: ['b'], ...robot }),
      expired(r),
    ])!;
    expect(doc).toMatchObject({ status: 'needs_attention', closedAt: null });
  });
});

describe('applyToDocument: queueing, retries, dead letters, pauses and waits', () => {
  type Record_ = ReturnType<typeof history>;
  const opened = (r: Record_) =>
    r('SessionOpened', {
      labels: {},
      browser: {},
      idleTimeoutMs: null,
      priority: 'high',
      onStepFailure: 'pause',
      requires: { region: 'eu' },
    });
  const submitted = (r: Record_, stepId: string, seq: number) =>
    r('StepSubmitted', { stepId, seq, step: { action: 'click', selector: `#${stepId}` } });
  const claimed = (r: Record_, robotId = 'robot-a', epoch = 1) =>
    r('SessionClaimed', { robotId, epoch, previousRobotId: null });
  const ref = (stepId: string, seq: number, attempt: number) => ({ stepId, seq, attempt, ...robot });
  const started = (r: Record_, stepId: string, seq: number, attempt = 1) =>
    r('StepStarted', ref(stepId, seq, attempt));
  const timeout = { code: 'TIMEOUT', message: 'no #a within 15s' } as const;
  const failed = (r: Record_, stepId: string, seq: number, attempt: number, retryInMs: number | null) =>
    r('StepFailed', {
      ...ref(stepId, seq, attempt),
      error: timeout,
      durationMs: 15_000,
      final: retryInMs === null,
      retryInMs,
    });
  const deadLettered = (r: Record_, stepId: string, seq: number, attempts: number) =>
    r('StepDeadLettered', { stepId, seq, reason: 'attempts_exhausted', attempts, error: timeout });
  /** Opened with steps a, b, c and claimed by robot-a. */
  const claimedWithSteps = (r: Record_) => [
    opened(r),
    submitted(r, 'a', 1),
    submitted(r, 'b', 2),
    submitted(r, 'c', 3),
    claimed(r),
  ];

  /** Folds delivering every event twice: the second delivery must change nothing. */
  function foldTwice(events: RecordedSessionEvent[], from: SessionDocument | null = null) {
    return events.reduce<SessionDocument | null>((doc, e) => {
      const once = applyToDocument(doc, e);
      expect(applyToDocument(once, e)).toBe(once);
      expect(SessionDocument.safeParse(once).success).toBe(true);
      return once;
    }, from)!;
  }

  it('given a session no robot took, then it is queued with its options; the first claim opens it, later ones keep it', () => {
    const r = history();
    const queued = foldTwice([opened(r), submitted(r, 'a', 1)]);
    expect(queued).toMatchObject({
      status: 'queued',
      robotId: null,
      priority: 'high',
      onStepFailure: 'pause',
      requires: { region: 'eu' },
    });
    const open = foldTwice([claimed(r)], queued);
    expect(open).toMatchObject({ status: 'open', robotId: 'robot-a', epoch: 1 });
    const closing = foldTwice([r('SessionCloseRequested', { reason: null }), claimed(r, 'robot-b', 2)], open);
    expect(closing).toMatchObject({ status: 'closing', robotId: 'robot-b', epoch: 2 });
  });

  it('given a running step, when an attempt fails with another due, then it is retrying until the next start', () => {
    const r = history();
    const before = [...claimedWithSteps(r), started(r, 'a', 1)];
    const failure = failed(r, 'a', 1, 1, 1_500);
    const retrying = foldTwice([...before, failure]);
    expect(retrying.steps[0]).toMatchObject({
      status: 'retrying',
      attempts: 1,
      error: timeout,
      finishedAt: null,
      durationMs: 15_000,
      nextAttemptAt: new Date(Date.parse(failure.metadata.occurredAt) + 1_500).toISOString(),
      deadLetter: null,
    });
    expect(retrying.stepCounts).toEqual(counts({ total: 3, queued: 2, retrying: 1 }));

    const next = started(r, 'a', 1, 2);
    const running = foldTwice([next], retrying);
    expect(running.steps[0]).toMatchObject({
      status: 'running',
      attempts: 2,
      startedAt: next.metadata.occurredAt,
      nextAttemptAt: null,
    });
    expect(running.stepCounts).toEqual(counts({ total: 3, queued: 2, running: 1 }));
  });

  it('given a step failed for good, then it is dead-lettered until an operator retries it', () => {
    const r = history();
    const before = [...claimedWithSteps(r), started(r, 'a', 1, 3)];
    const final = failed(r, 'a', 1, 3, null);
    const letter = deadLettered(r, 'a', 1, 3);
    const dead = foldTwice([
      ...before,
      final,
      letter,
      r('SessionPaused', { reason: 'step_failed', stepId: 'a' }),
    ]);
    expect(dead.steps[0]).toMatchObject({
      status: 'failed',
      finishedAt: final.metadata.occurredAt,
      nextAttemptAt: null,
      deadLetter: { reason: 'attempts_exhausted', attempts: 3, at: letter.metadata.occurredAt },
    });
    expect(dead.stepCounts).toEqual(counts({ total: 3, queued: 2, failed: 1, deadLettered: 1 }));
    expect(dead).toMatchObject({ status: 'paused', pause: { reason: 'step_failed', stepId: 'a' } });

    const retried = foldTwice(
      [r('StepRetried', { stepId: 'a', seq: 1 }), r('SessionResumed', { skipReplay: [] })],
      dead,
    );
    expect(retried.steps[0]).toMatchObject({
      status: 'queued',
      attempts: 3,
      error: timeout,
      finishedAt: null,
      deadLetter: null,
    });
    expect(retried.stepCounts).toEqual(counts({ total: 3, queued: 3 }));
    expect(retried).toMatchObject({ status: 'open', pause: null });
  });

  it('given a step that did not fail, when a StepRetried arrives, then the step stays as it was', () => {
    const r = history();
    const doc = foldTwice([...claimedWithSteps(r), started(r, 'a', 1)]);
    const after = foldTwice([r('StepRetried', { stepId: 'a', seq: 1 })], doc);
    expect(after.steps).toEqual(doc.steps);
  });

  it('given an open session, when an operator pauses and resumes it, then it is paused with why and when, then open', () => {
    const r = history();
    const before = claimedWithSteps(r);
    const pause = r('SessionPaused', { reason: 'operator', stepId: null });
    const paused = foldTwice([...before, pause]);
    expect(paused).toMatchObject({
      status: 'paused',
      pause: { reason: 'operator', stepId: null, at: pause.metadata.occurredAt },
    });
    const resumed = foldTwice([r('SessionResumed', { skipReplay: [] })], paused);
    expect(resumed).toMatchObject({ status: 'open', pause: null });
  });

  it('given a session paused before any robot took it, when it is resumed, then it is queued again', () => {
    const r = history();
    const doc = foldTwice([
      opened(r),
      r('SessionPaused', { reason: 'operator', stepId: null }),
      r('SessionResumed', { skipReplay: [] }),
    ]);
    expect(doc).toMatchObject({ status: 'queued', pause: null, robotId: null });
  });

  it('given a paused session, when a robot claims it, then it stays paused under its new owner', () => {
    const r = history();
    const doc = foldTwice([opened(r), r('SessionPaused', { reason: 'operator', stepId: null }), claimed(r)]);
    expect(doc).toMatchObject({ status: 'paused', robotId: 'robot-a' });
  });

  it('given an owner holding a step, when it reports the wait, then the session waits until a step starts', () => {
    const r = history();
    const before = claimedWithSteps(r);
    const wait = r('SessionWaiting', {
      reason: 'ORIGIN_UNAVAILABLE',
      origin: 'https://shop.example',
      stepId: 'a',
      ...robot,
    });
    const waiting = foldTwice([...before, wait]);
    expect(waiting.waiting).toEqual({
      reason: 'ORIGIN_UNAVAILABLE',
      origin: 'https://shop.example',
      stepId: 'a',
      since: wait.metadata.occurredAt,
    });
    expect(waiting.status).toBe('open');
    expect(foldTwice([started(r, 'a', 1)], waiting).waiting).toBeNull();
  });

  it.each([
    ['cancelled', (r: Record_) => r('SessionCancelled', { reason: 'wrong customer' })],
    ['expired', (r: Record_) => r('SessionExpired', { reason: 'idle', idleMs: 61_000, ...robot })],
    ['failed', (r: Record_) => r('SessionFailed', { stepId: 'b', error: timeout })],
  ] as const)(
    'given unfinished steps, when the session ends %s, then they are cancelled and the finished keep their result',
    (status, end) => {
      const r = history();
      const doc = foldTwice([
        ...claimedWithSteps(r),
        submitted(r, 'd', 4),
        started(r, 'a', 1),
        r('StepSucceeded', { ...ref('a', 1, 1), output: { kind: 'none' }, durationMs: 5 }),
        started(r, 'b', 2),
        failed(r, 'b', 2, 1, 2_000),
        started(r, 'c', 3),
        r('SessionWaiting', {
          reason: 'ORIGIN_UNAVAILABLE',
          origin: 'https://x.example',
          stepId: 'd',
          ...robot,
        }),
        r('SessionPaused', { reason: 'operator', stepId: null }),
      ]);
      expect(doc.stepCounts).toEqual(counts({ total: 4, queued: 1, running: 1, retrying: 1, succeeded: 1 }));
      const event = end(r);
      const ended = foldTwice([event], doc);
      expect(ended).toMatchObject({
        status,
        closedAt: event.metadata.occurredAt,
        pause: null,
        waiting: null,
      });
      expect(ended.steps.map((s) => [s.stepId, s.status, s.nextAttemptAt])).toEqual([
        ['a', 'succeeded', null],
        ['b', 'cancelled', null],
        ['c', 'cancelled', null],
        ['d', 'cancelled', null],
      ]);
      expect(ended.stepCounts).toEqual(counts({ total: 4, succeeded: 1, cancelled: 3 }));
      // Over for good: a late result or a resume rewrites nothing.
      const late = foldTwice(
        [r('StepSucceeded', { ...ref('c', 3, 1), output: { kind: 'none' }, durationMs: 5 })],
        ended,
      );
      expect(late).toMatchObject({ status, steps: ended.steps, stepCounts: ended.stepCounts });
    },
  );

  it('given a session that failed, when a cancel arrives, then it stays failed', () => {
    const r = history();
    const before = claimedWithSteps(r);
    const failedAt = r('SessionFailed', { stepId: 'a', error: timeout });
    const doc = foldTwice([...before, failedAt, r('SessionCancelled', { reason: null })]);
    expect(doc).toMatchObject({ status: 'failed', closedAt: failedAt.metadata.occurredAt });
  });

  it('a rebuild of a history with retries, dead letters, pauses and waits yields the same document', () => {
    const r = history();
    const events = [
      ...claimedWithSteps(r),
      r('SessionWaiting', {
        reason: 'ORIGIN_UNAVAILABLE',
        origin: 'https://x.example',
        stepId: 'a',
        ...robot,
      }),
      started(r, 'a', 1),
      failed(r, 'a', 1, 1, 1_000),
      started(r, 'a', 1, 2),
      failed(r, 'a', 1, 2, null),
      deadLettered(r, 'a', 1, 2),
      r('SessionPaused', { reason: 'step_failed', stepId: 'a' }),
      r('StepRetried', { stepId: 'a', seq: 1 }),
      r('SessionResumed', { skipReplay: [] }),
      started(r, 'a', 1, 3),
    ];
    const once = fold(events)!;
    expect(foldTwice(events)).toEqual(once);
    expect(fold(events, once)).toBe(once);
    expect(once).toMatchObject({ status: 'open', pause: null, waiting: null });
    expect(once.steps[0]).toMatchObject({ status: 'running', attempts: 3, deadLetter: null });
  });
});
