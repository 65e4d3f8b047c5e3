import type { Page } from 'playwright-core';
import { DEFAULT_STEP_TIMEOUT_MS, type CompleteStep, type Logger, type StepSpec } from '@rpa/shared';
import type { ArtifactStore } from './artifacts.js';
import { BreakerOpenError, originOf, type Breakers } from './breakers.js';
import { RobotStoppingError } from './errors.js';
import { createStepContext } from './steps/context.js';
import { StepFailure, toStepFailure } from './steps/errors.js';
import { runStep } from './steps/runStep.js';
import type { StepSecrets } from './secrets/stepSecrets.js';

export type StepRunOutcome = CompleteStep['outcome'];

/** Slack past a step's own timeout before the runner stops waiting for a browser call that never returns. */
const STEP_HARD_LIMIT_GRACE_MS = 5_000;
/** Times one step waits for its target's breaker to let it through before it fails. */
const MAX_BREAKER_PAUSES = 120;

export interface StepExecutorDeps {
  breakers: Breakers;
  artifacts: ArtifactStore;
  logger: Logger;
  /** The secrets this attempt may resolve (and the record of those it did); absent: none. */
  secrets?: StepSecrets;
}

/**
 * Runs one step of a session on its page behind the target origin's breaker; an open breaker pauses the step
 * instead of failing it. (The session runner already waits, unstarted, while the breaker is open; this pause covers
 * the breaker opening again between that wait and the call, e.g. another session took the half-open probe.) Step
 * failures come back as a failed outcome; only a stop (RobotStoppingError) throws. A browser call still hanging past
 * the step's timeout and a grace period is abandoned for real: the page is closed under it, so nothing it does can
 * land later, and the session is rebuilt through recovery before its next step. Normal work and recovery replays
 * both run steps through here, so a replay behaves exactly like the first run.
 */
export async function executeStep(
  deps: StepExecutorDeps,
  work: { sessionId: string; stepId: string; step: StepSpec },
  page: Page,
  stopSignal: AbortSignal,
): Promise<StepRunOutcome> {
  const { step, stepId, sessionId } = work;
  const timeoutMs = step.timeoutMs ?? DEFAULT_STEP_TIMEOUT_MS;
  for (let pauses = 0; pauses <= MAX_BREAKER_PAUSES; pauses++) {
    const origin = originOf(step.action === 'navigate' ? step.url : page.url());
    const breaker = deps.breakers.forOrigin(origin);
    try {
      const ctx = createStepContext({
        page,
        sessionId,
        stepId,
        artifacts: deps.artifacts,
        secrets: deps.secrets,
        timeoutMs,
      });
      const abandon = new AbortController();
      abandon.signal.addEventListener('abort', () => {
        deps.logger.warn(
          { sessionId, stepId },
          'a browser call outlived its step: closing the page under it',
        );
        void page.close({ runBeforeUnload: false }).catch(() => undefined);
      });
      const output = await breaker.run(() =>
        withHardLimit(runStep(step, ctx), timeoutMs + STEP_HARD_LIMIT_GRACE_MS, abandon),
      );
      return { status: 'succeeded', output };
    } catch (error) {
      if (!(error instanceof BreakerOpenError)) {
        return { status: 'failed', error: toStepFailure(error, 'act').toStepError() };
      }
      if (pauses === 0) deps.logger.warn({ sessionId, stepId, origin }, 'target breaker open: step paused');
      await breaker.whenCallable(stopSignal);
      if (stopSignal.aborted) throw new RobotStoppingError();
    }
  }
  return {
    status: 'failed',
    error: {
      code: 'NAVIGATION_FAILED',
      message: 'the target kept failing; its circuit breaker stayed open',
    },
  };
}

/**
 * Rejects with TIMEOUT if the work has not settled in time (a browser call that never returns), and aborts
 * `abandon` so that the caller abandons the work for real.
 */
function withHardLimit<T>(work: Promise<T>, ms: number, abandon: AbortController): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      abandon.abort();
      reject(new StepFailure('TIMEOUT', `the step did not finish within ${ms} ms`));
    }, ms);
  });
  return Promise.race([work, limit]).finally(() => clearTimeout(timer));
}
