import type { FastifyInstance } from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import {
  ALL_SCOPES,
  InMemoryEventStore,
  Registry,
  SessionCommandHandler,
  sessionStreamId,
  silentLogger,
  STEP_LIMITS,
  type Authenticator,
} from '@rpa/shared';
import { buildApp, DEFAULT_LIMITS } from './app.js';

/**
 * The length caps of step fields and the refused URL schemes, as a caller meets them: over HTTP, with the real
 * decider behind the route. The schemas (stepSpec.unit.test.ts), the per-request limit (app.unit.test.ts) and
 * the per-session limit (decide.unit.test.ts) have their own tests; these hold the wiring: the status, the field
 * named, nothing appended.
 */

const caller: Authenticator = async () => ({
  tenantId: 'acme',
  actor: { kind: 'api-key', id: 'key-acme' },
  scopes: ALL_SCOPES,
});

let app: FastifyInstance | undefined;
afterEach(async () => {
  await app?.close();
  app = undefined;
});

async function setup() {
  const store = new InMemoryEventStore();
  app = await buildApp({
    handler: new SessionCommandHandler({ store }),
    authenticator: caller,
    logger: silentLogger,
    registry: new Registry(),
    readiness: [],
    // Not what is tested here; high enough to stay out of the way.
    http: { rateLimitMax: 100_000 },
  });
  const post = (url: string, payload: object) => app!.inject({ method: 'POST', url, payload });
  const opened = await post('/v1/sessions', {});
  expect(opened.statusCode).toBe(201);
  const sessionId = opened.json<{ sessionId: string }>().sessionId;
  const submit = (steps: unknown[]) => post(`/v1/sessions/${sessionId}/steps`, { steps });
  const stored = async () => (await store.readStream(sessionStreamId(sessionId))).length;
  return { submit, stored };
}

const fieldsOf = (res: { json: <T>() => T }) =>
  res
    .json<{ error: { code: string; details?: Array<{ field: string }> } }>()
    .error.details?.map((d) => d.field);

describe('step limits over HTTP', () => {
  it.each([
    ['selector', (n: number) => ({ action: 'click', selector: 's'.repeat(n) }), STEP_LIMITS.selector],
    [
      'url',
      (n: number) => ({
        action: 'navigate',
        url: `https://example.com/${'u'.repeat(n - 'https://example.com/'.length)}`,
      }),
      STEP_LIMITS.url,
    ],
    ['value', (n: number) => ({ action: 'fill', selector: '#a', value: 'v'.repeat(n) }), STEP_LIMITS.value],
    ['key', (n: number) => ({ action: 'press', selector: '#a', key: 'k'.repeat(n) }), STEP_LIMITS.key],
  ])(
    'takes a %s at its cap and refuses one a character longer with 400 naming it',
    async (field, step, cap) => {
      const { submit, stored } = await setup();
      expect((await submit([step(cap)])).statusCode).toBe(202);
      const over = await submit([{ action: 'click', selector: '#ok' }, step(cap + 1)]);
      expect(over.statusCode).toBe(400);
      expect(fieldsOf(over)).toEqual([`body.steps.1.${field}`]);
      expect(await stored()).toBe(2);
    },
  );

  it('counts characters, not UTF-16 units: a selector of emoji at the cap is taken, one more is refused', async () => {
    const { submit } = await setup();
    expect(
      (await submit([{ action: 'click', selector: '😀'.repeat(STEP_LIMITS.selector) }])).statusCode,
    ).toBe(202);
    const over = await submit([{ action: 'click', selector: '😀'.repeat(STEP_LIMITS.selector + 1) }]);
    expect(over.statusCode).toBe(400);
    expect(fieldsOf(over)).toEqual(['body.steps.0.selector']);
  });

  it.each([
    'javascript:alert(1)',
    'file:///etc/passwd',
    'data:text/html,<b>x</b>',
    'chrome://settings',
    'about:blank',
  ])('refuses a navigation to %s with 400 naming body.steps.0.url', async (url) => {
    const { submit, stored } = await setup();
    const res = await submit([{ action: 'navigate', url }]);
    expect(res.statusCode).toBe(400);
    expect(fieldsOf(res)).toEqual(['body.steps.0.url']);
    expect(await stored()).toBe(1);
  });

  it('keeps the per-request step limit at 500 by default', () => {
    // Exercised over HTTP (500 taken, 501 refused) in app.unit.test.ts.
    expect(DEFAULT_LIMITS.maxStepsPerRequest).toBe(500);
  });
});
