import type { ExtractTextStep, StepOutput } from '@rpa/shared';
import type { z } from 'zod';
import type { StepContext } from './context.js';
import { toStepFailure } from './errors.js';
import { locate } from './locate.js';

/** The rendered text (innerText) of the first matching element. */
export async function extractText(
  step: z.infer<typeof ExtractTextStep>,
  ctx: StepContext,
): Promise<StepOutput> {
  const target = await locate(ctx, step.selector);
  try {
    return { kind: 'text', text: await target.innerText({ timeout: ctx.remainingMs() }) };
  } catch (error) {
    throw toStepFailure(error, 'act');
  }
}
