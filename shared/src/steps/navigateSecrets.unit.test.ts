import { describe, expect, it } from 'vitest';
import { MAX_NAVIGATE_HEADERS, StepSpec } from './stepSpec.js';

const base = { action: 'navigate', url: 'https://example.com/' } as const;

function issues(input: unknown): string[] {
  const result = StepSpec.safeParse(input);
  if (result.success) return [];
  return result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
}

describe('navigate headers and cookies', () => {
  it('accepts headers from secrets or literals and cookies from secrets', () => {
    const step = {
      ...base,
      headers: { 'X-Api-Token': { secret: 'api.token' }, Accept: { value: 'text/html' } },
      cookies: [{ name: 'session', secret: 'session.id' }],
    };
    expect(StepSpec.parse(step)).toEqual(step);
  });

  it.each([
    ['X Bad', 'must be an RFC 7230 token'],
    ['Host', 'browser-controlled'],
    ['cookie', 'browser-controlled'],
    ['Content-Length', 'browser-controlled'],
    ['Connection', 'browser-controlled'],
    ['Proxy-Authorization', 'browser-controlled'],
    ['Sec-Fetch-Site', 'browser-controlled'],
    ['Transfer-Encoding', 'browser-controlled'],
  ])('refuses header name %s, naming the field', (name, message) => {
    const found = issues({ ...base, headers: { [name]: { value: 'x' } } });
    expect(found.length).toBeGreaterThan(0);
    expect(found.join('\n')).toMatch(/^headers/m);
    expect(found.join('\n')).toContain(message);
  });

  it('refuses a value that is neither a secret nor a literal, or holds a line break', () => {
    expect(issues({ ...base, headers: { 'X-A': { secret: 'a', value: 'b' } } }).join()).toMatch(
      /headers\.X-A/,
    );
    expect(issues({ ...base, headers: { 'X-A': { secret: '../etc' } } }).join()).toMatch(/headers\.X-A/);
    expect(issues({ ...base, headers: { 'X-A': { value: 'a\r\nHost: evil' } } }).join()).toContain(
      'headers.X-A.value: must not contain CR, LF or NUL',
    );
  });

  it('refuses more than the maximum of headers or cookies, and duplicates', () => {
    const many = Object.fromEntries(
      Array.from({ length: MAX_NAVIGATE_HEADERS + 1 }, (_, i) => [`X-H${i}`, { value: 'v' }]),
    );
    expect(issues({ ...base, headers: many })).toEqual([`headers: at most ${MAX_NAVIGATE_HEADERS} headers`]);
    expect(issues({ ...base, headers: { 'X-A': { value: '1' }, 'x-a': { value: '2' } } })).toEqual([
      'headers: header names must be unique regardless of case',
    ]);
    const cookies = Array.from({ length: MAX_NAVIGATE_HEADERS + 1 }, (_, i) => ({
      name: `c${i}`,
      secret: 's',
    }));
    expect(issues({ ...base, cookies }).join()).toMatch(/^cookies/);
    expect(
      issues({
        ...base,
        cookies: [
          { name: 'a', secret: 's' },
          { name: 'a', secret: 't' },
        ],
      }),
    ).toEqual(['cookies: cookie names must be unique']);
  });

  it('refuses a cookie with an invalid name, a literal value or no secret, naming the field', () => {
    expect(issues({ ...base, cookies: [{ name: 'a b', secret: 's' }] })).toEqual([
      'cookies.0.name: must be an RFC 7230 token',
    ]);
    expect(issues({ ...base, cookies: [{ name: 'a', value: 'v' }] }).join()).toMatch(/cookies\.0/);
  });
});
