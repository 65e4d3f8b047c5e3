/** Raised when a condition awaited in a test (or a start-up) did not hold before its deadline. */
export class WaitTimeoutError extends Error {
  constructor(description: string, timeoutMs: number, lastError?: unknown) {
    super(`timed out after ${timeoutMs} ms waiting for ${description}`, { cause: lastError });
    this.name = 'WaitTimeoutError';
  }
}

/**
 * Polls `check` until it returns a value other than false/undefined/null, or throws WaitTimeoutError at the
 * deadline. For waiting on states; never use a bare sleep in a test.
 */
export async function waitFor<T>(
  check: () => T | Promise<T>,
  options: { timeoutMs?: number; intervalMs?: number; description?: string } = {},
): Promise<Exclude<T, false | null | undefined>> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const intervalMs = options.intervalMs ?? 25;
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== false && value !== null && value !== undefined)
        return value as Exclude<T, false | null | undefined>;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() >= deadline)
      throw new WaitTimeoutError(options.description ?? 'condition', timeoutMs, lastError);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}
