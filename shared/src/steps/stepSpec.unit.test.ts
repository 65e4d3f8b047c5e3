import { describe, expect, it } from 'vitest';
import {
  DEFAULT_RETRY_POLICY,
  RETRYABLE_ERROR_CODES,
  RetryPolicy,
  retryDelayMs,
  STEP_ACTIONS,
  STEP_LIMITS,
  StepError,
  StepOutput,
  StepSpec,
  type StepAction,
} from './stepSpec.js';

/** One valid step per action, with every optional field it takes. */
const valid: Record<StepAction, unknown> = {
  navigate: {
    action: 'navigate',
    url: 'https://example.com/login?next=%2F',
    timeoutMs: 30_000,
    replay: 'safe',
  },
  click: { action: 'click', selector: 'button[type=submit]', replay: 'never' },
  fill: { action: 'fill', selector: '#user', value: 'alice' },
  press: { action: 'press', selector: '#user', key: 'Enter' },
  waitFor: { action: 'waitFor', selector: '.done', state: 'visible' },
  extractText: { action: 'extractText', selector: 'h1' },
  extractTable: { action: 'extractTable', selector: 'table#orders' },
  screenshot: { action: 'screenshot', fullPage: true },
  checkpoint: { action: 'checkpoint', timeoutMs: 5_000 },
};

function issues(input: unknown): string[] {
  const result = StepSpec.safeParse(input);
  if (result.success) return [];
  return result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

describe('StepSpec', () => {
  it('has an example for every action it accepts', () => {
    expect(Object.keys(valid).sort()).toEqual([...STEP_ACTIONS].sort());
  });

  it.each(Object.entries(valid))('accepts a valid %s step unchanged', (_action, step) => {
    expect(StepSpec.parse(step)).toEqual(step);
  });

  it.each(Object.entries(valid))('refuses an unknown field on a %s step, naming it', (_action, step) => {
    const result = StepSpec.safeParse({ ...(step as object), script: 'alert(1)' });
    expect(result.success).toBe(false);
    expect(JSON.stringify(result.error?.issues)).toContain('script');
  });

  it('refuses an unknown action', () => {
    expect(issues({ action: 'evaluate', expression: '1+1' })).toHaveLength(1);
  });

  describe('navigate URLs', () => {
    it.each(['http://example.com', 'https://example.com:8443/a/b?c=d#e', 'https://xn--bcher-kva.example/'])(
      'accepts %s',
      (url) => {
        expect(issues({ action: 'navigate', url })).toEqual([]);
      },
    );

    it.each([
      'file:///etc/passwd',
      'data:text/html,<script>alert(1)</script>',
      'javascript:alert(1)',
      'JavaScript:alert(1)',
      'chrome://settings',
      'chrome-extension://abc/page.html',
      'about:blank',
      'view-source:https://example.com',
      'ftp://example.com/file',
      'ws://example.com/socket',
      '/relative/path',
      'example.com',
      '',
    ])('refuses %j with a message that says why', (url) => {
      expect(issues({ action: 'navigate', url })).toEqual([
        'url: must be an absolute http:// or https:// URL',
      ]);
    });

    it(`refuses a URL longer than ${STEP_LIMITS.url} characters`, () => {
      const prefix = 'https://example.com/';
      const atCap = prefix + 'a'.repeat(STEP_LIMITS.url - prefix.length);
      expect(issues({ action: 'navigate', url: atCap })).toEqual([]);
      expect(issues({ action: 'navigate', url: `${atCap}a` })[0]).toMatch(/^url: /);
    });
  });

  describe('length caps', () => {
    it.each([
      ['selector', { action: 'click' }, STEP_LIMITS.selector],
      ['value', { action: 'fill', selector: '#a' }, STEP_LIMITS.value],
      ['key', { action: 'press', selector: '#a' }, STEP_LIMITS.key],
    ] as const)('%s: accepted at its cap, refused one past it', (field, rest, cap) => {
      expect(issues({ ...rest, [field]: 'x'.repeat(cap) })).toEqual([]);
      expect(issues({ ...rest, [field]: 'x'.repeat(cap + 1) })[0]).toMatch(new RegExp(`^${field}: `));
    });

    it('refuses an empty selector and an empty key, but allows filling an empty value', () => {
      expect(issues({ action: 'click', selector: '' })[0]).toMatch(/^selector: /);
      expect(issues({ action: 'press', selector: '#a', key: '' })[0]).toMatch(/^key: /);
      expect(issues({ action: 'fill', selector: '#a', value: '' })).toEqual([]);
    });

    it.each([0, -1, 1.5, STEP_LIMITS.maxTimeoutMs + 1, '100'])('refuses timeoutMs %j', (timeoutMs) => {
      expect(issues({ action: 'click', selector: '#a', timeoutMs })[0]).toMatch(/^timeoutMs: /);
    });

    it('accepts timeoutMs up to its cap', () => {
      expect(issues({ action: 'click', selector: '#a', timeoutMs: STEP_LIMITS.maxTimeoutMs })).toEqual([]);
    });
  });

  it('refuses an unknown replay policy and an unknown waitFor state', () => {
    expect(issues({ action: 'click', selector: '#a', replay: 'maybe' })[0]).toMatch(/^replay: /);
    expect(issues({ action: 'waitFor', selector: '#a', state: 'gone' })[0]).toMatch(/^state: /);
  });

  it('refuses a missing required field, naming it', () => {
    expect(issues({ action: 'fill', selector: '#a' })[0]).toMatch(/^value: /);
    expect(issues({ action: 'navigate' })[0]).toMatch(/^url: /);
  });
});

describe('fill by secret', () => {
  it('accepts a secret name instead of a value', () => {
    const step = { action: 'fill', selector: '#password', secret: 'login.password', replay: 'never' };
    expect(StepSpec.parse(step)).toEqual(step);
  });

  it('refuses a value and a secret together, naming secret', () => {
    expect(issues({ action: 'fill', selector: '#a', value: 'x', secret: 'pw' })).toEqual([
      'secret: give either value or secret, not both',
    ]);
  });

  it('refuses neither a value nor a secret, naming value', () => {
    expect(issues({ action: 'fill', selector: '#a' })).toEqual(['value: value (or secret) is required']);
  });

  it.each(['a', 'login.password', 'DB_PASS-2', `a${'b'.repeat(127)}`])(
    'accepts the secret name %s',
    (secret) => {
      expect(issues({ action: 'fill', selector: '#a', secret })).toEqual([]);
    },
  );

  it.each(['', '1pw', '.hidden', '..data', '../etc/passwd', 'a/b', 'a b', 'pw\n', `a${'b'.repeat(128)}`])(
    'refuses the secret name %j, naming secret',
    (secret) => {
      expect(issues({ action: 'fill', selector: '#a', secret })[0]).toMatch(/^secret: /);
    },
  );

  it('knows SECRET_NOT_FOUND as an error code that is not retried', () => {
    expect(StepError.safeParse({ code: 'SECRET_NOT_FOUND', message: 'x' }).success).toBe(true);
    expect(RETRYABLE_ERROR_CODES.has('SECRET_NOT_FOUND')).toBe(false);
  });
});

describe('StepOutput and StepError', () => {
  it('accept each output kind and refuse an unknown one', () => {
    for (const output of [
      { kind: 'navigation', url: 'https://example.com/', status: null, title: '' },
      { kind: 'text', text: 'hello' },
      { kind: 'table', headers: ['a'], rows: [['1']] },
      { kind: 'artifact', artifactKey: 's.a.png', contentType: 'image/png', bytes: 10 },
      { kind: 'none' },
    ])
      expect(StepOutput.safeParse(output).success).toBe(true);
    expect(StepOutput.safeParse({ kind: 'html', html: '<p>' }).success).toBe(false);
  });

  it('accepts only the known error codes', () => {
    expect(StepError.safeParse({ code: 'TIMEOUT', message: 'x' }).success).toBe(true);
    expect(StepError.safeParse({ code: 'OOPS', message: 'x' }).success).toBe(false);
  });
});

describe('retry policy', () => {
  const click = (retry: unknown) => ({ action: 'click', selector: '#go', retry });

  it('accepts a policy and fills in the backoff and delays it leaves out', () => {
    expect(StepSpec.parse(click({ maxAttempts: 5 }))).toEqual({
      action: 'click',
      selector: '#go',
      retry: { maxAttempts: 5, backoff: 'exponential', initialMs: 1_000, maxMs: 30_000 },
    });
    expect(
      StepSpec.parse(click({ maxAttempts: 1, backoff: 'fixed', initialMs: 500, maxMs: 500 })),
    ).toMatchObject({
      retry: { maxAttempts: 1, backoff: 'fixed', initialMs: 500, maxMs: 500 },
    });
    expect(RetryPolicy.parse(DEFAULT_RETRY_POLICY)).toEqual(DEFAULT_RETRY_POLICY);
  });

  it('refuses maxMs below initialMs, naming maxMs', () => {
    expect(issues(click({ maxAttempts: 3, initialMs: 5_000, maxMs: 1_000 }))).toEqual([
      'retry.maxMs: maxMs must be at least initialMs',
    ]);
  });

  it(`refuses more than ${STEP_LIMITS.maxAttempts} attempts or fewer than one, naming maxAttempts`, () => {
    for (const maxAttempts of [STEP_LIMITS.maxAttempts + 1, 0, 2.5]) {
      const found = issues(click({ maxAttempts }));
      expect(found).toHaveLength(1);
      expect(found[0]).toMatch(/^retry\.maxAttempts: /);
    }
    expect(issues(click({ maxAttempts: STEP_LIMITS.maxAttempts }))).toEqual([]);
  });

  it('refuses an unknown backoff, delays out of range and unknown fields, naming each', () => {
    expect(issues(click({ maxAttempts: 3, backoff: 'linear' }))[0]).toMatch(/^retry\.backoff: /);
    expect(issues(click({ maxAttempts: 3, initialMs: 99 }))[0]).toMatch(/^retry\.initialMs: /);
    expect(issues(click({ maxAttempts: 3, maxMs: STEP_LIMITS.maxRetryDelayMs + 1 }))[0]).toMatch(
      /^retry\.maxMs: /,
    );
    expect(issues(click({ maxAttempts: 3, jitter: 0 }))[0]).toMatch(/^retry: .*jitter/);
    expect(issues(click({}))[0]).toMatch(/^retry\.maxAttempts: /);
  });
});

describe('retryDelayMs', () => {
  const exponential: RetryPolicy = {
    maxAttempts: 10,
    backoff: 'exponential',
    initialMs: 1_000,
    maxMs: 20_000,
  };
  const seeds = Array.from({ length: 200 }, (_, i) => `cmd-${i}`);

  it('is the same for the same seed', () => {
    for (const seed of seeds.slice(0, 20))
      expect(retryDelayMs(exponential, 3, seed)).toBe(retryDelayMs(exponential, 3, seed));
  });

  it('doubles per failed attempt within ±10% jitter, and the jitter spreads', () => {
    for (const [attempt, base] of [
      [1, 1_000],
      [2, 2_000],
      [3, 4_000],
      [4, 8_000],
    ] as const) {
      const delays = seeds.map((seed) => retryDelayMs(exponential, attempt, seed));
      expect(Math.min(...delays)).toBeGreaterThanOrEqual(base * 0.9);
      expect(Math.max(...delays)).toBeLessThanOrEqual(base * 1.1);
      expect(new Set(delays).size).toBeGreaterThan(50);
    }
  });

  it('never exceeds maxMs', () => {
    for (const attempt of [6, 10, 50, 2_000]) {
      const delays = seeds.map((seed) => retryDelayMs(exponential, attempt, seed));
      expect(Math.max(...delays)).toBeLessThanOrEqual(20_000);
      expect(Math.min(...delays)).toBeGreaterThanOrEqual(18_000);
    }
  });

  it('with fixed backoff, stays about initialMs whatever the attempt', () => {
    const fixed: RetryPolicy = { ...exponential, backoff: 'fixed', initialMs: 3_000 };
    for (const attempt of [1, 4, 9]) {
      const delays = seeds.map((seed) => retryDelayMs(fixed, attempt, seed));
      expect(Math.min(...delays)).toBeGreaterThanOrEqual(2_700);
      expect(Math.max(...delays)).toBeLessThanOrEqual(3_300);
    }
  });
});

describe('retryable error codes', () => {
  it('retry only what a later attempt may get past', () => {
    expect([...RETRYABLE_ERROR_CODES].sort()).toEqual(['BROWSER_ERROR', 'NAVIGATION_FAILED', 'TIMEOUT']);
    for (const code of [
      'SELECTOR_NOT_FOUND',
      'INTERRUPTED',
      'CANCELLED',
      'DELIVERY_EXHAUSTED',
      'INTERNAL',
    ] as const)
      expect(RETRYABLE_ERROR_CODES.has(code)).toBe(false);
  });
});
