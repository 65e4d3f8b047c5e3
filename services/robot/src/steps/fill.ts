import type { FillStep, StepOutput } from '@rpa/shared';
import type { z } from 'zod';
import type { StepContext } from './context.js';
import { toStepFailure } from './errors.js';
import { locate } from './locate.js';

/** Replaces the value of the first matching input. The value never reaches a message or a log line. */
export async function fill(step: z.infer<typeof FillStep>, ctx: StepContext): Promise<StepOutput> {
  const target = await locate(ctx, step.selector);
  try {
    await target.fill(step.value, { timeout: ctx.remainingMs() });
  } catch (error) {
    throw toStepFailure(error, 'act', [step.value]);
  }
  return { kind: 'none' };
}
