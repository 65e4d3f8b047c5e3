import { describe, expect, it } from 'vitest';
import type { SessionDocument } from '@rpa/shared';
import { sessionDocument } from '../testing/sessionFixtures.js';
import { decodeDeadLetterCursor, encodeDeadLetterCursor, pageDeadLetters } from './deadLetters.js';

/** A step of a document, dead-lettered at `at` when given. */
function step(seq: number, at?: string, reason: 'attempts_exhausted' | 'not_retryable' = 'not_retryable') {
  return {
    stepId: `step-${seq}`,
    seq,
    action: 'click',
    replay: 'safe',
    status: at ? 'failed' : 'succeeded',
    attempts: at ? 3 : 1,
    output: null,
    error: at ? { code: 'SELECTOR_NOT_FOUND', message: `no #s${seq}` } : null,
    submittedAt: '2030-01-01T00:00:00.000Z',
    startedAt: null,
    finishedAt: null,
    durationMs: null,
    ...(at ? { deadLetter: { reason, attempts: 3, at } } : {}),
  };
}

const doc = (sessionId: string, steps: ReturnType<typeof step>[]): SessionDocument =>
  sessionDocument({ sessionId, steps: steps as unknown as SessionDocument['steps'] });

const docs = [
  doc('a', [step(1, '2030-01-01T00:01:00.000Z'), step(2), step(3, '2030-01-01T00:03:00.000Z')]),
  doc('b', [step(1, '2030-01-01T00:03:00.000Z', 'attempts_exhausted')]),
  doc('c', [step(1), step(2)]),
];

describe('pageDeadLetters', () => {
  it('lists dead-lettered steps newest first, ties by session then seq, each with its reason and error', () => {
    const page = pageDeadLetters(docs, { limit: 10 });
    expect(page.items.map((i) => `${i.sessionId}/${i.seq}`)).toEqual(['a/3', 'b/1', 'a/1']);
    expect(page.items[0]).toEqual({
      sessionId: 'a',
      stepId: 'step-3',
      seq: 3,
      action: 'click',
      reason: 'not_retryable',
      attempts: 3,
      error: { code: 'SELECTOR_NOT_FOUND', message: 'no #s3' },
      at: '2030-01-01T00:03:00.000Z',
    });
    expect(page.nextKey).toBeNull();
  });

  it('pages by key: every dead letter once, whatever the page size', () => {
    const seen: string[] = [];
    let after;
    for (let round = 0; round < 5; round++) {
      const page = pageDeadLetters(docs, { limit: 1, after });
      seen.push(...page.items.map((i) => `${i.sessionId}/${i.seq}`));
      if (!page.nextKey) break;
      after = decodeDeadLetterCursor(encodeDeadLetterCursor(page.nextKey))!;
    }
    expect(seen).toEqual(['a/3', 'b/1', 'a/1']);
  });

  it('filters by session and by reason', () => {
    expect(pageDeadLetters(docs, { limit: 10, filter: { sessionId: 'a' } }).items.map((i) => i.seq)).toEqual([
      3, 1,
    ]);
    const exhausted = pageDeadLetters(docs, { limit: 10, filter: { reason: 'attempts_exhausted' } });
    expect(exhausted.items.map((i) => i.sessionId)).toEqual(['b']);
  });

  it('refuses a cursor it did not issue', () => {
    expect(decodeDeadLetterCursor('nope')).toBeNull();
    expect(decodeDeadLetterCursor(Buffer.from('{"v":1,"t":0,"s":"a"}').toString('base64url'))).toBeNull();
  });
});
