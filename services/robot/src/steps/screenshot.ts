import type { ScreenshotStep, StepOutput } from '@rpa/shared';
import type { z } from 'zod';
import type { StepContext } from './context.js';
import { toStepFailure } from './errors.js';

const PNG = 'image/png';

/** Captures the page as PNG and stores it in the artifact store under the step's key. */
export async function screenshot(
  step: z.infer<typeof ScreenshotStep>,
  ctx: StepContext,
): Promise<StepOutput> {
  let bytes: Buffer;
  try {
    bytes = await ctx.page.screenshot({
      type: 'png',
      fullPage: step.fullPage ?? false,
      timeout: ctx.remainingMs(),
    });
  } catch (error) {
    throw toStepFailure(error, 'act');
  }
  const artifactKey = ctx.artifacts.keyFor(ctx.sessionId, ctx.stepId, 'png');
  try {
    await ctx.artifacts.put(artifactKey, bytes, PNG);
  } catch (error) {
    throw toStepFailure(error, 'store');
  }
  return { kind: 'artifact', artifactKey, contentType: PNG, bytes: bytes.byteLength };
}
