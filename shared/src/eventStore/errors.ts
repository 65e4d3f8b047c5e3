import { RpaError } from '../errors.js';
import type { ExpectedVersion } from './port.js';

/** The stream was not at the expected version: somebody else appended first. Reload and decide again. */
export class WrongExpectedVersionError extends RpaError {
  constructor(
    readonly streamId: string,
    readonly expected: ExpectedVersion,
    readonly actual: number | 'no_stream' | 'unknown',
  ) {
    super(
      'WRONG_EXPECTED_VERSION',
      `stream ${streamId}: expected version ${String(expected)}, actual ${String(actual)}`,
    );
  }
}

/** The store could not be reached or did not answer in time; the operation may be retried with the same event ids. */
export class EventStoreUnavailableError extends RpaError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('EVENT_STORE_UNAVAILABLE', message, options);
  }
}

/** The append itself is malformed (too many events, bad stream id, non-JSON payload): retrying cannot help. */
export class InvalidAppendError extends RpaError {
  constructor(message: string) {
    super('INVALID_APPEND', message);
  }
}
