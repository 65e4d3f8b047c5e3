import { errors } from 'playwright-core';
import { RpaError, type StepError, type StepErrorCode } from '@rpa/shared';

/** Where in a step an error happened; the same Playwright error means different things in each. */
export type StepPhase = 'locate' | 'act' | 'navigate' | 'store';

const MAX_MESSAGE = 4_000;

/** A step failed for a reason the author can see; it is reported as StepFailed with this code. */
export class StepFailure extends RpaError {
  declare readonly code: StepErrorCode;

  constructor(code: StepErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message.length > MAX_MESSAGE ? `${message.slice(0, MAX_MESSAGE - 1)}…` : message, options);
  }

  /**
   * True when the failure says the target cannot be reached in time. Everything else is about the page or the step
   * (a selector that matches nothing, an element that takes no text) or a policy decision (EGRESS_DENIED: the robot
   * refused the address; the target is not unwell) and must not open the target's breaker.
   */
  get countsAgainstTarget(): boolean {
    return this.code === 'NAVIGATION_FAILED' || this.code === 'TIMEOUT';
  }

  toStepError(): StepError {
    return { code: this.code, message: this.message };
  }
}

const BROWSER_GONE = /has been closed|browser closed|target closed|crashed|disconnected/i;
const NETWORK = /net::ERR_|NS_ERROR_|invalid url|cannot navigate/i;

/**
 * Maps anything a step threw to a StepFailure. `secrets` are values the step carried (a fill value): they are cut out
 * of the message, and Playwright's call log (which echoes them) is dropped altogether.
 */
export function toStepFailure(
  error: unknown,
  phase: StepPhase,
  secrets: readonly string[] = [],
): StepFailure {
  if (error instanceof StepFailure) return error;
  const message = summarise(error, secrets);
  if (phase === 'store') return new StepFailure('INTERNAL', `storing the step's artifact failed: ${message}`);
  if (error instanceof errors.TimeoutError) {
    return phase === 'locate'
      ? new StepFailure('SELECTOR_NOT_FOUND', message, { cause: error })
      : new StepFailure('TIMEOUT', message, { cause: error });
  }
  if (!(error instanceof Error)) return new StepFailure('INTERNAL', message);
  if (BROWSER_GONE.test(error.message)) return new StepFailure('BROWSER_ERROR', message, { cause: error });
  // A selector Playwright cannot parse can never match: to the author it is a selector that is not found.
  if (phase === 'locate')
    return new StepFailure('SELECTOR_NOT_FOUND', `invalid selector: ${message}`, { cause: error });
  if (phase === 'navigate' && NETWORK.test(error.message))
    return new StepFailure('NAVIGATION_FAILED', message, { cause: error });
  return new StepFailure('BROWSER_ERROR', message, { cause: error });
}

// eslint-disable-next-line no-control-regex
const ANSI = /\u001b\[[0-9;]*m/g;

/** The first line of an error message, without terminal colours or any of the given secret values. */
function summarise(error: unknown, secrets: readonly string[]): string {
  const raw = error instanceof Error ? error.message : String(error);
  let line = (raw.split('\nCall log:')[0] ?? '').split('\n')[0]!.replace(ANSI, '').trim();
  for (const secret of secrets) {
    if (secret.length > 0) line = line.split(secret).join('[redacted]');
  }
  return line || 'unknown error';
}
