import { CommandRejectedError, HttpError, rejectionStatus, RpaError } from '@rpa/shared';
import type { ItemError } from './batchItems.js';

/** How a batch item that failed is answered, and whether the failure is ours (to be logged). */
export interface ItemFailure {
  status: number;
  error: ItemError;
  kind: 'rejected' | 'failed';
  internal: boolean;
}

/**
 * Answers a command's failure the way the error handler answers a whole request: decider rejections and edge
 * errors keep their status and text, an unavailable store is a 503, anything else a 500 whose text stays hidden.
 */
export function itemFailure(error: unknown): ItemFailure {
  if (error instanceof CommandRejectedError) {
    const { code, message } = error.rejection;
    return { status: rejectionStatus(code), error: { code, message }, kind: 'rejected', internal: false };
  }
  if (error instanceof HttpError) {
    const body: ItemError = { code: error.code, message: error.message };
    if (error.details !== undefined) body.details = error.details;
    return { status: error.statusCode, error: body, kind: 'failed', internal: false };
  }
  if (error instanceof RpaError && error.code === 'EVENT_STORE_UNAVAILABLE') {
    return {
      status: 503,
      error: { code: 'UNAVAILABLE', message: 'a dependency is unavailable; retry' },
      kind: 'failed',
      internal: true,
    };
  }
  return {
    status: 500,
    error: { code: 'INTERNAL', message: 'internal error' },
    kind: 'failed',
    internal: true,
  };
}
