import type { CheckpointStep, StepOutput } from '@rpa/shared';
import type { z } from 'zod';
import type { StepContext } from './context.js';

/**
 * The author's restore point. The page is left as it is: the session runner takes the restore point itself right
 * after this step succeeds and records it with the step's result.
 */
export async function checkpoint(
  _step: z.infer<typeof CheckpointStep>,
  ctx: StepContext,
): Promise<StepOutput> {
  // A document still loading is not a state worth restoring: wait for it, within the step's budget.
  await ctx.page.waitForLoadState('load', { timeout: ctx.remainingMs() });
  return { kind: 'checkpoint', url: ctx.page.url() };
}
