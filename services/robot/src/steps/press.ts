import type { PressStep, StepOutput } from '@rpa/shared';
import type { z } from 'zod';
import type { StepContext } from './context.js';
import { toStepFailure } from './errors.js';
import { locate } from './locate.js';

/** Focuses the first matching element and presses a key (or a chord such as Control+A) on it. */
export async function press(step: z.infer<typeof PressStep>, ctx: StepContext): Promise<StepOutput> {
  const target = await locate(ctx, step.selector);
  try {
    await target.press(step.key, { timeout: ctx.remainingMs() });
  } catch (error) {
    throw toStepFailure(error, 'act');
  }
  return { kind: 'none' };
}
