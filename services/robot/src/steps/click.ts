import type { ClickStep, StepOutput } from '@rpa/shared';
import type { z } from 'zod';
import type { StepContext } from './context.js';
import { toStepFailure } from './errors.js';
import { locate } from './locate.js';

/** Clicks the first element matching the selector once it is actionable. */
export async function click(step: z.infer<typeof ClickStep>, ctx: StepContext): Promise<StepOutput> {
  const target = await locate(ctx, step.selector);
  try {
    await target.click({ timeout: ctx.remainingMs() });
  } catch (error) {
    throw toStepFailure(error, 'act');
  }
  return { kind: 'none' };
}
