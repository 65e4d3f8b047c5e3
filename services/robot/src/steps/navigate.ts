import type { NavigateStep, StepOutput } from '@rpa/shared';
import type { z } from 'zod';
import type { StepContext } from './context.js';
import { StepFailure, toStepFailure } from './errors.js';

/**
 * Main-document statuses that say the target (or the gateway in front of it) is unavailable right now: the step
 * fails as NAVIGATION_FAILED, which is retried and counts against the origin's breaker. Any other status (a 404, a
 * 500 from the application itself) is the page's answer and the step succeeds with it.
 */
const UNAVAILABLE_STATUSES: ReadonlySet<number> = new Set([502, 503, 504]);

/**
 * Loads the URL and waits for the load event; answers with the final URL, HTTP status and title. A gateway or
 * availability error (502, 503, 504) fails the step as NAVIGATION_FAILED.
 */
export async function navigate(step: z.infer<typeof NavigateStep>, ctx: StepContext): Promise<StepOutput> {
  try {
    const response = await ctx.page.goto(step.url, { timeout: ctx.remainingMs(), waitUntil: 'load' });
    const status = response?.status();
    if (status !== undefined && UNAVAILABLE_STATUSES.has(status))
      throw new StepFailure('NAVIGATION_FAILED', `the target answered HTTP ${status}`);
    return {
      kind: 'navigation',
      url: ctx.page.url(),
      // A same-document navigation (only the fragment changed) has no response.
      status: response?.status() ?? null,
      title: await ctx.page.title(),
    };
  } catch (error) {
    throw toStepFailure(error, 'navigate');
  }
}
