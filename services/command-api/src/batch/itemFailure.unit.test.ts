import { describe, expect, it } from 'vitest';
import { CommandRejectedError, EventStoreUnavailableError, HttpError } from '@rpa/shared';
import { itemFailure } from './itemFailure.js';

describe('itemFailure', () => {
  it('answers a decider rejection with its status and text', () => {
    expect(
      itemFailure(new CommandRejectedError({ code: 'ILLEGAL_TRANSITION', message: 'session is closing' })),
    ).toEqual({
      status: 409,
      error: { code: 'ILLEGAL_TRANSITION', message: 'session is closing' },
      kind: 'rejected',
      internal: false,
    });
    expect(
      itemFailure(new CommandRejectedError({ code: 'IDEMPOTENCY_MISMATCH', message: 'other body' })).status,
    ).toBe(422);
  });

  it('keeps an edge error’s status, code and details', () => {
    expect(itemFailure(new HttpError(503, 'CONCURRENCY_EXHAUSTED', 'retry it', { rounds: 3 }))).toEqual({
      status: 503,
      error: { code: 'CONCURRENCY_EXHAUSTED', message: 'retry it', details: { rounds: 3 } },
      kind: 'failed',
      internal: false,
    });
  });

  it('hides the text of an unavailable store (503) and of anything else (500)', () => {
    const down = itemFailure(new EventStoreUnavailableError('nats timeout at 10.0.0.7'));
    expect(down).toMatchObject({ status: 503, error: { code: 'UNAVAILABLE' }, internal: true });
    expect(JSON.stringify(down)).not.toContain('10.0.0.7');
    expect(itemFailure(new TypeError('secret internals'))).toEqual({
      status: 500,
      error: { code: 'INTERNAL', message: 'internal error' },
      kind: 'failed',
      internal: true,
    });
  });
});
