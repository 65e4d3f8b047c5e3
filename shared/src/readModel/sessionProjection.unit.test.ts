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

function fold(events: RecordedSessionEvent[], from: SessionDocument | null = null): SessionDocument | null {
  return events.reduce<SessionDocument | null>((doc, e) => applyToDocument(doc, e), from);
}

/** A full session: opened, three steps, claimed, one succeeded, one failed after a retry, closed. */
function fullSession(): RecordedSessionEvent[] {
  const r = history();
  return [
    r('SessionOpened', { labels: { team: 'billing' }, browser: { locale: 'en-US' }, idleTimeoutMs: 60_000 }),
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
      status: 'open',
      robotId: null,
      epoch: 0,
      labels: { team: 'billing' },
      browser: { locale: 'en-US' },
      idleTimeoutMs: 60_000,
      createdAt: '2025-01-01T10:01:00.000Z',
      updatedAt: '2025-01-01T10:01:00.000Z',
      closedAt: null,
      attention: null,
      checkpoint: null,
      recoveries: 0,
      lastRecovery: null,
      stepCounts: { total: 0, queued: 0, running: 0, succeeded: 0, failed: 0 },
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
    expect(doc.stepCounts).toEqual({ total: 3, queued: 3, running: 0, succeeded: 0, failed: 0 });
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
      r('SessionOpened', { labels: {}, browser: {}, idleTimeoutMs: null }),
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
    expect(doc.stepCounts).toEqual({ total: 3, queued: 2, running: 1, succeeded: 0, failed: 0 });
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
    });
    expect(doc.stepCounts).toEqual({ total: 3, queued: 2, running: 0, succeeded: 1, failed: 0 });
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
    expect(doc.stepCounts).toEqual({ total: 3, queued: 1, running: 0, succeeded: 1, failed: 1 });
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
      r('SessionOpened', { labels: {}, browser: {}, idleTimeoutMs: null }),
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
      r('SessionOpened', { labels: {}, browser: {}, idleTimeoutMs: null }),
      r('StepSubmitted', { stepId: 'a', seq: 1, step: { action: 'click', selector: 'a' } }),
      r('StepSubmitted', { stepId: 'a', seq: 1, step: { action: 'click', selector: 'a' } }),
    ])!;
    expect(doc.steps).toHaveLength(1);
    expect(doc.stepCounts.total).toBe(1);
  });

  it('ignores results for a step it does not know, moving only its position', () => {
    const r = history();
    const opened = fold([r('SessionOpened', { labels: {}, browser: {}, idleTimeoutMs: null })])!;
    const next = applyToDocument(opened, r('StepStarted', { stepId: 'zz', seq: 9, attempt: 1, ...robot }))!;
    expect({ ...next, version: 0, position: opened.position, updatedAt: opened.updatedAt }).toEqual(opened);
    expect(next.position).toBeGreaterThan(opened.position);
  });

  it('when a step extracts more than the document keeps, then its output is cut and marked truncated', () => {
    const r = history();
    const rows = Array.from({ length: DOCUMENT_OUTPUT_LIMITS.tableRows + 10 }, (_, i) => [`r${i}`]);
    const doc = fold([
      r('SessionOpened', { labels: {}, browser: {}, idleTimeoutMs: null }),
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
    const doc = fold([r('SessionOpened', { labels: {}, browser: {}, idleTimeoutMs: null })])!;
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
    r('SessionOpened', { labels: {}, browser: {}, idleTimeoutMs: null });
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
    const doc = foldTwice([opened(r), r('SessionResumed', { skipReplay: [] })])!;
    expect(doc).toMatchObject({ status: 'open', attention: null, version: 1 });
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
    r('SessionOpened', { labels: {}, browser: {}, idleTimeoutMs: 1_500 });
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
