import { errors, type Locator } from 'playwright-core';
import type { StepContext } from './context.js';
import { StepFailure, toStepFailure } from './errors.js';

/**
 * The first element matching the selector, once it is attached to the document. A selector that matches nothing
 * within the step's budget fails with SELECTOR_NOT_FOUND, so that acting on it can only fail for other reasons.
 */
export async function locate(ctx: StepContext, selector: string): Promise<Locator> {
  const locator = ctx.page.locator(selector).first();
  try {
    await locator.waitFor({ state: 'attached', timeout: ctx.remainingMs() });
  } catch (error) {
    if (error instanceof errors.TimeoutError) {
      throw new StepFailure(
        'SELECTOR_NOT_FOUND',
        `no element matches ${JSON.stringify(selector)} within ${ctx.timeoutMs} ms`,
        { cause: error },
      );
    }
    throw toStepFailure(error, 'locate');
  }
  return locator;
}
