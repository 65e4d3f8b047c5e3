import type { NavigateStep, StepOutput } from '@rpa/shared';
import type { z } from 'zod';
import type { StepContext } from './context.js';
import { toStepFailure } from './errors.js';

/** Loads the URL and waits for the load event; answers with the final URL, HTTP status and title. */
export async function navigate(step: z.infer<typeof NavigateStep>, ctx: StepContext): Promise<StepOutput> {
  try {
    const response = await ctx.page.goto(step.url, { timeout: ctx.remainingMs(), waitUntil: 'load' });
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
