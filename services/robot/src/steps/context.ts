import type { Page } from 'playwright-core';
import type { ArtifactStore } from '../artifacts.js';
import type { StepSecrets } from '../secrets/stepSecrets.js';

/** What a step needs besides its spec: the session's page, its ids, where artifacts go, and its deadline. */
export interface StepContext {
  page: Page;
  sessionId: string;
  stepId: string;
  artifacts: ArtifactStore;
  /** Resolves the secrets the step names, at the moment it uses them; absent: the robot holds no secrets. */
  secrets?: StepSecrets;
  /** The step's whole budget in milliseconds. */
  timeoutMs: number;
  /** Milliseconds left of the budget; at least 1, because Playwright reads a timeout of 0 as "wait forever". */
  remainingMs(): number;
}

/** A step context whose deadline starts now. */
export function createStepContext(
  fields: Omit<StepContext, 'remainingMs'>,
  clock: () => number = Date.now,
): StepContext {
  const deadline = clock() + fields.timeoutMs;
  return { ...fields, remainingMs: () => Math.max(1, deadline - clock()) };
}
