import { errors, type Page } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { silentLogger } from '@rpa/shared';
import type { ArtifactStore } from '../artifacts.js';
import { EnvSecretProvider, StepSecrets, type SecretProvider } from '../secrets/index.js';
import { createStepContext } from './context.js';
import { StepFailure } from './errors.js';
import { fill } from './fill.js';

const SECRET = 'pa"ss\\word-7c1e';

/**
 * A page with one input, standing in for Chromium where only the order of calls and the error text matter (the real
 * browser is exercised by steps.int.test.ts and secretCanary.int.test.ts). `calls` records what happened, in order.
 */
function fakePage(options: { attached?: boolean; fillError?: (value: string) => Error } = {}) {
  const calls: string[] = [];
  const typed: string[] = [];
  const locator = {
    first: () => locator,
    waitFor: () => {
      calls.push('locate');
      return options.attached === false
        ? Promise.reject(new errors.TimeoutError('locator.waitFor: Timeout 50ms exceeded.'))
        : Promise.resolve();
    },
    fill: (value: string) => {
      calls.push('fill');
      if (options.fillError) return Promise.reject(options.fillError(value));
      typed.push(value);
      return Promise.resolve();
    },
  };
  const page = { locator: () => locator } as unknown as Page;
  return { page, calls, typed };
}

function context(page: Page, provider?: SecretProvider, calls?: string[]) {
  const recording: SecretProvider | undefined = provider && {
    kind: provider.kind,
    get: (name) => {
      calls?.push(`resolve ${name}`);
      return provider.get(name);
    },
  };
  const secrets = recording && new StepSecrets(recording, silentLogger);
  const ctx = createStepContext({
    page,
    sessionId: 's-1',
    stepId: 'pw',
    artifacts: {} as ArtifactStore,
    timeoutMs: 1_000,
    ...(secrets ? { secrets } : {}),
  });
  return { ctx, secrets };
}

const provider = new EnvSecretProvider({ SECRET_LOGIN_PASSWORD: SECRET });

describe('fill', () => {
  it('reads the secret only once the input is found, types it and records its use', async () => {
    const { page, calls, typed } = fakePage();
    const { ctx, secrets } = context(page, provider, calls);
    const step = { action: 'fill', selector: '#pw', secret: 'login.password' } as const;
    await expect(fill(step, ctx)).resolves.toEqual({ kind: 'none' });
    expect(calls).toEqual(['locate', 'resolve login.password', 'fill']);
    expect(typed).toEqual([SECRET]);
    expect(secrets!.used()).toEqual(['login.password']);
  });

  it('does not read the secret when the input is not there', async () => {
    const { page } = fakePage({ attached: false });
    const recorded: string[] = [];
    const { ctx, secrets } = context(page, provider, recorded);
    await expect(
      fill({ action: 'fill', selector: '#pw', secret: 'login.password' }, ctx),
    ).rejects.toMatchObject({
      code: 'SELECTOR_NOT_FOUND',
    });
    expect(recorded).toEqual([]);
    expect(secrets!.used()).toEqual([]);
  });

  it('fails with SECRET_NOT_FOUND when the secret is missing or the robot holds none', async () => {
    const { page, typed } = fakePage();
    await expect(
      fill({ action: 'fill', selector: '#pw', secret: 'other' }, context(page, provider).ctx),
    ).rejects.toMatchObject({
      code: 'SECRET_NOT_FOUND',
      message: 'secret "other" is not held by environment',
    });
    await expect(
      fill({ action: 'fill', selector: '#pw', secret: 'login.password' }, context(page).ctx),
    ).rejects.toMatchObject({ code: 'SECRET_NOT_FOUND' });
    expect(typed).toEqual([]);
  });

  it('keeps the value out of the failure, raw or escaped, and drops the browser error that echoed it', async () => {
    const { page } = fakePage({
      fillError: (value) =>
        new errors.TimeoutError(
          `locator.fill: Timeout 1000ms exceeded typing ${value} (${JSON.stringify(value)}).\nCall log:\n  - fill(${JSON.stringify(value)})`,
        ),
    });
    const { ctx, secrets } = context(page, provider);
    const failure = await fill({ action: 'fill', selector: '#pw', secret: 'login.password' }, ctx).catch(
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(StepFailure);
    const { code, message, cause } = failure as StepFailure;
    expect(code).toBe('TIMEOUT');
    expect(message).toBe('locator.fill: Timeout 1000ms exceeded typing [redacted] ("[redacted]").');
    expect(cause).toBeUndefined();
    expect(JSON.stringify(failure)).not.toContain('7c1e');
    // It was typed (and then failed): that is a use.
    expect(secrets!.used()).toEqual(['login.password']);
  });

  it('treats a literal value the same way', async () => {
    const { page } = fakePage({ fillError: (value) => new Error(`locator.fill: rejected ${value}`) });
    const failure = await fill(
      { action: 'fill', selector: '#pw', value: 'hunter2' },
      context(page).ctx,
    ).catch((error: unknown) => error);
    expect((failure as StepFailure).message).toBe('locator.fill: rejected [redacted]');
    expect((failure as StepFailure).cause).toBeUndefined();
  });
});
