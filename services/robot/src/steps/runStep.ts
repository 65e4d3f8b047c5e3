import type { StepOutput, StepSpec } from '@rpa/shared';
import { checkpoint } from './checkpoint.js';
import { click } from './click.js';
import type { StepContext } from './context.js';
import { StepFailure } from './errors.js';
import { extractTable } from './extractTable.js';
import { extractText } from './extractText.js';
import { fill } from './fill.js';
import { navigate } from './navigate.js';
import { press } from './press.js';
import { screenshot } from './screenshot.js';
import { waitFor } from './waitFor.js';

/** Largest serialised output a step may report: it travels inside one event, which must fit one NATS message. */
export const MAX_OUTPUT_BYTES = 256 * 1024;

function assertNever(x: never): never {
  throw new TypeError(`unhandled step ${JSON.stringify(x)}`);
}

/** Runs one step on the session's page; resolves with its output or rejects with a StepFailure. */
export async function runStep(step: StepSpec, ctx: StepContext): Promise<StepOutput> {
  const output = await dispatch(step, ctx);
  const size = Buffer.byteLength(JSON.stringify(output));
  if (size > MAX_OUTPUT_BYTES) {
    throw new StepFailure(
      'INTERNAL',
      `the step's output is ${size} bytes; at most ${MAX_OUTPUT_BYTES} fit in a step result (narrow the selector)`,
    );
  }
  return output;
}

function dispatch(step: StepSpec, ctx: StepContext): Promise<StepOutput> {
  switch (step.action) {
    case 'navigate':
      return navigate(step, ctx);
    case 'click':
      return click(step, ctx);
    case 'fill':
      return fill(step, ctx);
    case 'press':
      return press(step, ctx);
    case 'waitFor':
      return waitFor(step, ctx);
    case 'extractText':
      return extractText(step, ctx);
    case 'extractTable':
      return extractTable(step, ctx);
    case 'screenshot':
      return screenshot(step, ctx);
    case 'checkpoint':
      return checkpoint(step, ctx);
    default:
      return assertNever(step);
  }
}
