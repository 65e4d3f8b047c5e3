import type { FillStep, StepOutput } from '@rpa/shared';
import type { z } from 'zod';
import type { StepContext } from './context.js';
import { StepFailure, toStepFailure } from './errors.js';
import { locate } from './locate.js';

/**
 * Replaces the value of the first matching input with the step's value, or with the value of the secret it names,
 * read from the robot's secret provider only once the input is found. The value never reaches a message, a log
 * line or an error's cause: Playwright echoes typed text in its errors, so the failure is rebuilt from the
 * redacted message alone.
 */
export async function fill(step: z.infer<typeof FillStep>, ctx: StepContext): Promise<StepOutput> {
  const target = await locate(ctx, step.selector);
  const value = step.secret === undefined ? (step.value ?? '') : await resolveSecret(step.secret, ctx);
  try {
    await target.fill(value, { timeout: ctx.remainingMs() });
  } catch (error) {
    // Playwright quotes typed text JSON-style: a value with quotes or backslashes appears escaped.
    const failure = toStepFailure(error, 'act', [value, JSON.stringify(value).slice(1, -1)]);
    throw new StepFailure(failure.code, failure.message);
  }
  return { kind: 'none' };
}

/** The value of the secret `name`, read now and recorded as used by the step. */
export async function resolveSecret(name: string, ctx: StepContext): Promise<string> {
  if (!ctx.secrets)
    throw new StepFailure(
      'SECRET_NOT_FOUND',
      `secret "${name}" cannot be resolved: this robot holds no secrets`,
    );
  return ctx.secrets.resolve(name);
}
