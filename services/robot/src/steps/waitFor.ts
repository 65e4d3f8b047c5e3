import type { StepOutput, WaitForStep } from '@rpa/shared';
import type { z } from 'zod';
import type { StepContext } from './context.js';
import { toStepFailure } from './errors.js';
import { locate } from './locate.js';

/**
 * Waits until the first matching element reaches a state (visible by default). For attached and visible, an element
 * that never appears is SELECTOR_NOT_FOUND and one that appears but stays hidden is TIMEOUT.
 */
export async function waitFor(step: z.infer<typeof WaitForStep>, ctx: StepContext): Promise<StepOutput> {
  const state = step.state ?? 'visible';
  const target =
    state === 'attached' || state === 'visible'
      ? await locate(ctx, step.selector)
      : ctx.page.locator(step.selector).first();
  if (state === 'attached') return { kind: 'none' };
  try {
    await target.waitFor({ state, timeout: ctx.remainingMs() });
  } catch (error) {
    throw toStepFailure(error, 'act');
  }
  return { kind: 'none' };
}
