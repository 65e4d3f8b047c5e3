/**
 * Deterministic generators of inputs both APIs must refuse: malformed, oversized and just-past-the-limit requests
 * and WebSocket messages. Every input carries at least one fault that makes it invalid, so that any answer other
 * than a refusal is a finding. The same seed always yields the same inputs.
 */

/** mulberry32: small, fast and seedable; enough for test inputs. */
export class Rng {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  }

  int(n: number): number {
    return Math.floor(this.next() * n);
  }

  between(min: number, max: number): number {
    return min + this.int(max - min + 1);
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }

  chance(p: number): boolean {
    return this.next() < p;
  }
}

export interface FuzzContext {
  /** An open session of the caller's tenant. */
  sessionId: string;
  /** A valid API key of that tenant. */
  apiKey: string;
}

export interface HttpInput {
  api: 'command' | 'query';
  /** What the input exercises, for the report. */
  kind: string;
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS' | 'HEAD';
  url: string;
  headers: Record<string, string | string[]>;
  payload?: string | Buffer;
  /**
   * A batch whose envelope is valid but whose every item is invalid: answered 200 with each item refused in its
   * place (by design: one bad item does not fail a batch), which counts as a refusal.
   */
  batchOfInvalidItems?: boolean;
}

export interface WsInput {
  kind: string;
  data: string | Buffer;
  binary: boolean;
}

const KIB = 1024;

/** Strings that have broken parsers, routers and templates elsewhere. */
const NASTY_TEXT = [
  '',
  ' ',
  '\u0000',
  '\ud800',
  '\udfff',
  '😀',
  '\u202e\u0644\u0627',
  '\u200b',
  'ﷺ',
  'e\u0301\u0301\u0301',
  '../../etc/passwd',
  '..%2f..%2f',
  '%00',
  '%ZZ',
  '<script>alert(1)</script>',
  "' OR 1=1 --",
  '${7*7}',
  '{{7*7}}',
  '__proto__',
  'constructor',
  'javascript:alert(1)',
  'file:///etc/passwd',
  '\r\nX-Injected: 1',
  'ａｄｍｉｎ',
  'null',
  'NaN',
];

const NASTY_NUMBERS = [
  -1,
  0,
  0.5,
  1.5,
  -0.000001,
  1e308,
  -1e308,
  2 ** 31,
  2 ** 53,
  2 ** 53 + 2,
  Number.MIN_VALUE,
];

function unicodeString(rng: Rng, length: number): string {
  const ranges: Array<[number, number]> = [
    [0x20, 0x7e],
    [0x00, 0x1f],
    [0xa0, 0x2ff],
    [0x300, 0x36f],
    [0x590, 0x6ff],
    [0x4e00, 0x4fff],
    [0xd800, 0xdfff],
    [0xfff0, 0xffff],
    [0x1f600, 0x1f64f],
  ];
  let out = '';
  while (out.length < length) {
    const [lo, hi] = rng.pick(ranges);
    out += String.fromCodePoint(rng.between(lo, hi));
  }
  return out;
}

/**
 * A string of `length` characters (callers ask for one past a limit), plain or full of odd characters. Limits
 * count code points (zod counts an emoji as one), so the odd variant is built code point by code point, without
 * surrogate halves that could pair up into fewer.
 */
function longString(rng: Rng, length: number): string {
  if (rng.chance(0.5)) return 'x'.repeat(length);
  const points = Array.from(unicodeString(rng, 64)).filter((p) => !/^[\ud800-\udfff]$/.test(p));
  if (points.length === 0) points.push('é');
  let out = '';
  for (let i = 0; i < length; i++) out += points[i % points.length];
  return out;
}

/** A URL component of `text`, without the surrogate halves that cannot be encoded; never empty. */
function uriComponent(text: string): string {
  return encodeURIComponent(text.replace(/[\ud800-\udfff]/g, '')) || '%20';
}

/** Any JSON value other than a string of reasonable length: the wrong type for almost every field. */
function wrongValue(rng: Rng): unknown {
  switch (rng.int(7)) {
    case 0:
      return rng.pick(NASTY_NUMBERS);
    case 1:
      return rng.chance(0.5);
    case 2:
      return null;
    case 3:
      return [rng.pick(NASTY_TEXT), rng.pick(NASTY_NUMBERS)];
    case 4:
      return { [rng.pick(NASTY_TEXT)]: rng.pick(NASTY_TEXT) };
    case 5:
      return nested(rng.between(2, 200));
    default:
      return [];
  }
}

function nested(depth: number): unknown {
  let value: unknown = 'bottom';
  for (let i = 0; i < depth; i++) value = i % 2 ? [value] : { a: value };
  return value;
}

/** A key no schema of ours knows. */
function unknownKey(rng: Rng): string {
  return rng.pick([
    'extra',
    'admin',
    'tenantId',
    'ｓｔｅｐｓ',
    'steps ',
    '',
    '$where',
    '😀',
    unicodeString(rng, 8),
  ]);
}

const MAX_IDLE_TIMEOUT_MS = 7 * 24 * 3_600_000;

/** Open-session fields with one fault each. */
function invalidOpenFields(rng: Rng): unknown {
  const base: Record<string, unknown> = { labels: { team: 'fuzz' }, priority: 'normal' };
  switch (rng.int(9)) {
    case 0:
      return { ...base, [unknownKey(rng)]: rng.pick(NASTY_TEXT) };
    case 1:
      return {
        ...base,
        labels: rng.pick<unknown>([
          'team=fuzz',
          42,
          ['a'],
          { [longString(rng, 64)]: 'v' },
          { 'bad key': 'v' },
          { [rng.pick(['😀', 'é', '', '*'])]: 'v' },
          { team: longString(rng, 257) },
          { team: rng.pick([1, true, null, {}]) },
          Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`l${i}`, 'v'])),
        ]),
      };
    case 2:
      return {
        ...base,
        idleTimeoutMs: rng.pick<unknown>([
          999,
          0,
          -1,
          1.5,
          MAX_IDLE_TIMEOUT_MS + 1,
          1e308,
          '60000',
          true,
          {},
        ]),
      };
    case 3:
      return { ...base, priority: rng.pick<unknown>(['urgent', '', 'HIGH', 'high ', 1, null, [], {}]) };
    case 4:
      return { ...base, onStepFailure: rng.pick<unknown>(['retry', 'PAUSE', '', 0, null, ['pause']]) };
    case 5:
      return {
        ...base,
        browser: rng.pick<unknown>([
          'chromium',
          { viewport: { width: 99, height: 600 } },
          { viewport: { width: 800, height: 4_321 } },
          { viewport: { width: 800.5, height: 600 } },
          { viewport: { width: 800 } },
          { userAgent: '' },
          { userAgent: longString(rng, 1_001) },
          { [unknownKey(rng)]: 1 },
        ]),
      };
    case 6:
      return { ...base, requires: rng.pick<unknown>(['eu', [], { region: 1 }, { 'r e g': 'eu' }]) };
    case 7:
      return rng.pick<unknown>(['session', 42, true, [], [{}], '']);
    default:
      return {
        ...base,
        [rng.pick(['labels', 'priority', 'browser', 'idleTimeoutMs'])]: nested(rng.between(50, 2_000)),
      };
  }
}

/** One step with one fault. */
function invalidStep(rng: Rng): unknown {
  const click = { action: 'click', selector: '#go' };
  switch (rng.int(12)) {
    case 0:
      return {
        ...click,
        action: rng.pick<unknown>(['evaluate', 'script', 'eval', 'CLICK', '', 1, null, rng.pick(NASTY_TEXT)]),
      };
    case 1:
      return { action: 'click' };
    case 2:
      return {
        ...click,
        selector: rng.pick<unknown>(['', longString(rng, 2_001), 1, null, ['#a'], { css: '#a' }]),
      };
    case 3:
      return {
        action: 'navigate',
        url: rng.pick<unknown>([
          'javascript:alert(1)',
          'file:///etc/passwd',
          'data:text/html,<script>alert(1)</script>',
          'chrome://settings',
          'about:blank',
          'view-source:https://example.com',
          'ftp://example.com/',
          'ws://example.com/',
          'not a url',
          '//example.com/',
          '',
          `https://example.com/${'a'.repeat(4_097)}`,
          42,
        ]),
      };
    case 4:
      return {
        action: 'fill',
        selector: '#a',
        value: rng.pick<unknown>([longString(rng, 10_001), 1, null, ['x']]),
      };
    case 5:
      return { action: 'fill', selector: '#a' };
    case 6:
      return { action: 'press', selector: '#a', key: rng.pick<unknown>(['', longString(rng, 65), 13, null]) };
    case 7:
      return { ...click, timeoutMs: rng.pick<unknown>([0, -1, 1.5, 300_001, 1e308, '100', null]) };
    case 8:
      return {
        ...click,
        retry: rng.pick<unknown>([
          { maxAttempts: 0 },
          { maxAttempts: 11 },
          { maxAttempts: 2.5 },
          { backoff: 'linear' },
          { initialMs: 99 },
          { maxMs: 600_001 },
          { [unknownKey(rng)]: 1 },
          'always',
        ]),
      };
    case 9:
      return { ...click, [unknownKey(rng)]: rng.pick(NASTY_TEXT) };
    case 10:
      return { action: 'waitFor', selector: '#a', state: rng.pick<unknown>(['gone', '', 1]) };
    default:
      return rng.pick<unknown>(['click #go', 42, null, [], true]);
  }
}

/** A steps body with one fault. */
function invalidStepsBody(rng: Rng): unknown {
  const ok = () => ({ action: 'click', selector: `#b${rng.int(1_000)}` });
  switch (rng.int(6)) {
    case 0:
      return { steps: [] };
    case 1:
      return { steps: Array.from({ length: 501 }, ok) };
    case 2:
      return { steps: wrongValue(rng) };
    case 3:
      return rng.chance(0.5) ? {} : { steps: [ok()], [unknownKey(rng)]: 1 };
    case 4:
      return { steps: nested(rng.between(50, 3_000)) };
    default: {
      // A fault anywhere among valid steps.
      const steps: unknown[] = Array.from({ length: rng.between(0, 20) }, ok);
      steps.splice(rng.int(steps.length + 1), 0, invalidStep(rng));
      return { steps };
    }
  }
}

/** A body for a route that takes nothing (or only a reason), with one fault. */
function invalidEmptyBody(rng: Rng, reason: boolean): unknown {
  if (reason && rng.chance(0.5))
    return { reason: rng.pick<unknown>([longString(rng, 501), 42, null, ['why'], { text: 'why' }]) };
  return rng.pick<unknown>([
    { [unknownKey(rng)]: rng.pick(NASTY_TEXT) },
    [],
    'stop',
    0,
    true,
    { reason: 'x', steps: [] },
  ]);
}

/** Bytes that are not JSON (or not JSON a parser should take), whatever the route. */
function invalidJsonText(rng: Rng): string | Buffer {
  switch (rng.int(10)) {
    case 0:
      return rng.pick([
        '{',
        '}',
        '[',
        '{"a":}',
        "{'a':1}",
        '{"a":1,}',
        '{a:1}',
        '[1,]',
        '"',
        'tru',
        'nul',
        '-',
      ]);
    case 1:
      return rng.pick(['NaN', 'Infinity', '-Infinity', 'undefined', '0x10', '.5', '01', '1e', '+1']);
    case 2:
      return `\ufeff${rng.pick(['{', '{"x":', '[}'])}`;
    case 3: {
      const bytes = Buffer.alloc(rng.between(1, 4 * KIB));
      for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(256);
      bytes[0] = 0xff;
      return bytes;
    }
    case 4:
      return '['.repeat(rng.between(1_000, 100_000));
    case 5:
      return `{"steps": ${'['.repeat(rng.between(10, 50_000))}`;
    case 6:
      return '{"__proto__": {"admin": true}}';
    case 7:
      return '{"constructor": {"prototype": {"admin": true}}}';
    case 8:
      return Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xc3, 0x28, 0xa0, 0xa1, 0x22]);
    default:
      return JSON.stringify({ steps: [{ action: 'click', selector: '#a' }] }).slice(0, rng.between(1, 40));
  }
}

/** A body larger than the route takes. */
function oversizedBody(minBytes: number, rng: Rng): string {
  const size = minBytes + rng.between(1, 64 * KIB);
  return JSON.stringify({ steps: [{ action: 'fill', selector: '#a', value: 'v'.repeat(size) }] });
}

/** A session id the command API refuses (it takes UUIDs only), URL-encoded as a client would send it. */
function invalidUuidParam(rng: Rng): string {
  return rng.pick([
    'not-a-uuid',
    '0195f2a0-1111-7000-8000-00000000000',
    '0195f2a0-1111-7000-8000-0000000000000',
    '0195f2a0-1111-7000-8000-00000000000g',
    '0195f2a0_1111_7000_8000_000000000000',
    encodeURIComponent('😀'),
    '%ZZ',
    '%ED%A0%80',
    '%00',
    '..%2F..%2Fetc',
    'a'.repeat(rng.between(101, 600)),
    uriComponent(unicodeString(rng, 20)),
    '%20',
    '*',
  ]);
}

/** A session, robot or artifact id the query API refuses, URL-encoded. */
function invalidIdParam(rng: Rng): string {
  return rng.pick([
    encodeURIComponent('a b'),
    encodeURIComponent('😀'),
    encodeURIComponent('<script>'),
    '%ZZ',
    '%ED%A0%80',
    '%00',
    encodeURIComponent('id!'),
    encodeURIComponent("' OR 1=1"),
    '*',
    '~',
    'a'.repeat(rng.between(201, 600)),
  ]);
}

const UNKNOWN_UUID = '0195f2a0-1111-7000-8000-000000000000';

/** Headers of a well-formed request: the key, and JSON when there is a body. */
function goodHeaders(ctx: FuzzContext, json: boolean): Record<string, string> {
  return { authorization: `Bearer ${ctx.apiKey}`, ...(json ? { 'content-type': 'application/json' } : {}) };
}

/** Credentials every API refuses. */
function badCredentials(rng: Rng, ctx: FuzzContext): Record<string, string | string[]> {
  return rng.pick<Record<string, string | string[]>>([
    {},
    { authorization: 'Bearer' },
    { authorization: 'Bearer ' },
    { authorization: `Bearer rpa_${'A'.repeat(43)}` },
    { authorization: `Bearer ${ctx.apiKey}x` },
    { authorization: `bearer  ${ctx.apiKey.slice(0, -1)}` },
    { authorization: 'Basic YWxhZGRpbjpvcGVuc2VzYW1l' },
    { authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4IiwidGVuYW50IjoiYWNtZSJ9.' },
    { authorization: 'Bearer a.b.c' },
    { authorization: `Bearer ${'x'.repeat(rng.between(1_000, 60_000))}` },
    { authorization: `Bearer ${ctx.apiKey}`, 'x-api-key': `rpa_${'B'.repeat(43)}` },
    { 'x-api-key': [ctx.apiKey, ctx.apiKey] },
    { 'x-api-key': '' },
    { authorization: `Bearer ${ctx.apiKey} extra` },
  ]);
}

const COMMAND_ROUTES = ['steps', 'close', 'pause', 'resume', 'cancel', 'retry'] as const;

function commandUrl(route: (typeof COMMAND_ROUTES)[number], sessionId: string, stepId = 'step-1'): string {
  return route === 'retry'
    ? `/v1/sessions/${sessionId}/steps/${stepId}/retry`
    : `/v1/sessions/${sessionId}/${route}`;
}

function invalidBodyFor(route: (typeof COMMAND_ROUTES)[number] | 'open', rng: Rng): unknown {
  switch (route) {
    case 'open':
      return invalidOpenFields(rng);
    case 'steps':
      return invalidStepsBody(rng);
    case 'close':
    case 'cancel':
      return invalidEmptyBody(rng, true);
    default:
      return invalidEmptyBody(rng, false);
  }
}

/** A valid body for a route, to carry a fault elsewhere (a header, a parameter). */
function validBodyFor(route: (typeof COMMAND_ROUTES)[number] | 'open'): unknown {
  return route === 'steps' ? { steps: [{ action: 'click', selector: '#ok' }] } : {};
}

/** One request to the command API with at least one fault. */
export function commandInput(rng: Rng, ctx: FuzzContext): HttpInput {
  const route = rng.pick(['open', ...COMMAND_ROUTES, 'batch'] as const);
  const base = (
    kind: string,
    url: string,
    payload: string | Buffer | undefined,
    headers = goodHeaders(ctx, true),
  ): HttpInput => ({
    api: 'command',
    kind,
    method: 'POST',
    url,
    headers,
    ...(payload === undefined ? {} : { payload }),
  });
  const urlOf = (r: typeof route) =>
    r === 'open' ? '/v1/sessions' : r === 'batch' ? '/v1/sessions:batch' : commandUrl(r, ctx.sessionId);

  if (route === 'batch') {
    switch (rng.int(5)) {
      case 0:
        return base(
          'batch envelope',
          urlOf(route),
          JSON.stringify(
            rng.pick<unknown>([
              { items: [] },
              { items: Array.from({ length: 101 }, () => ({})) },
              { items: 'all' },
              {},
              { items: [{}], [unknownKey(rng)]: 1 },
              [],
              null,
            ]),
          ),
        );
      case 1:
        return base('batch json', urlOf(route), invalidJsonText(rng));
      case 2:
        return base('batch oversized', urlOf(route), oversizedBody(1024 * KIB, rng));
      default: {
        const items = Array.from({ length: rng.between(1, 5) }, () =>
          rng.chance(0.5) ? invalidOpenFields(rng) : { steps: [invalidStep(rng)] },
        );
        return { ...base('batch items', urlOf(route), JSON.stringify({ items })), batchOfInvalidItems: true };
      }
    }
  }

  switch (rng.int(10)) {
    case 0:
    case 1:
    case 2:
      return base(`${route} body`, urlOf(route), JSON.stringify(invalidBodyFor(route, rng)));
    case 3:
      return base(`${route} json`, urlOf(route), invalidJsonText(rng));
    case 4: {
      if (route === 'open' || rng.chance(0.3)) {
        const r = route === 'open' ? rng.pick(COMMAND_ROUTES) : route;
        // Unknown session or step: the body is fine, the target is not there (404) ...
        const unknown = rng.chance(0.5);
        const url = unknown
          ? r === 'retry' && rng.chance(0.5)
            ? commandUrl(r, ctx.sessionId, rng.pick(['nope', 'a'.repeat(101), encodeURIComponent('é')]))
            : commandUrl(r, UNKNOWN_UUID)
          : commandUrl(r, invalidUuidParam(rng));
        return base(`${r} params`, url, JSON.stringify(validBodyFor(r)));
      }
      // ... or the id is not an id at all (400), with a faulty body too.
      return base(
        `${route} params`,
        commandUrl(route, invalidUuidParam(rng)),
        JSON.stringify(invalidBodyFor(route, rng)),
      );
    }
    case 5:
      return base(`${route} oversized`, urlOf(route), oversizedBody(256 * KIB, rng));
    case 6: {
      // Only opening and submitting steps take an Idempotency-Key; other routes ignore the header.
      const r = route === 'steps' ? route : 'open';
      const key = rng.pick([
        'a b',
        'k'.repeat(201),
        'ÿ',
        'key/1',
        '%00',
        '*',
        'a\tb',
        'k'.repeat(rng.between(202, 4_000)),
      ]);
      const headers = { ...goodHeaders(ctx, true), 'idempotency-key': key };
      return base(`${r} idempotency-key`, urlOf(r), JSON.stringify(validBodyFor(r)), headers);
    }
    case 7: {
      const contentType = rng.pick([
        'text/plain',
        'application/xml',
        'multipart/form-data; boundary=x',
        'application/x-www-form-urlencoded',
        'application/json-patch+json',
        'application/jsonx',
        'image/png',
        'json',
        '*/*',
      ]);
      return base(`${route} content-type`, urlOf(route), JSON.stringify(validBodyFor(route)), {
        ...goodHeaders(ctx, false),
        'content-type': contentType,
      });
    }
    case 8:
      return base(`${route} credentials`, urlOf(route), JSON.stringify(validBodyFor(route)), {
        'content-type': 'application/json',
        ...badCredentials(rng, ctx),
      });
    default: {
      const method = rng.pick(['GET', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const);
      const url = rng.chance(0.7)
        ? urlOf(route)
        : rng.pick([
            '/v1/sessions:bogus',
            '/v1//sessions',
            '/v2/sessions',
            '/v1/sessions/:id',
            `/v1/${encodeURIComponent('séssions')}`,
          ]);
      const payload =
        method === 'GET' || method === 'OPTIONS' ? undefined : JSON.stringify(validBodyFor(route));
      return { ...base(`${route} method`, url, payload, goodHeaders(ctx, payload !== undefined)), method };
    }
  }
}

/** One request to the query API with at least one fault. */
export function queryInput(rng: Rng, ctx: FuzzContext): HttpInput {
  const get = (
    kind: string,
    url: string,
    headers: Record<string, string | string[]> = goodHeaders(ctx, false),
  ): HttpInput => ({
    api: 'query',
    kind,
    method: 'GET',
    url,
    headers,
  });
  const listQuery = (): string => {
    const faults = [
      () =>
        `limit=${rng.pick(['0', '201', '-1', 'abc', '1.5', '1e3', '', '%00', '1e999', 'Infinity', '-0.5'])}`,
      () => `status=${rng.pick(['bogus', '', 'OPEN', encodeURIComponent('😀'), 'open,closed'])}`,
      () =>
        `cursor=${rng.pick(['garbage', '', 'a'.repeat(601), encodeURIComponent('{"k":1}'), '%ZZ', 'eyJ4Ijox'])}`,
      () => `limit=1&limit=2`,
    ];
    const parts = [rng.pick(faults)()];
    if (rng.chance(0.3)) parts.push(`${uriComponent(unknownKey(rng))}=1`);
    return parts.join('&');
  };
  switch (rng.int(10)) {
    case 0:
    case 1:
      return get('sessions query', `/v1/sessions?${listQuery()}`);
    case 2: {
      const fault = rng.pick([
        () => `sessionId=${invalidIdParam(rng)}`,
        () => `reason=${rng.pick(['bogus', '', 'ATTEMPTS_EXHAUSTED'])}`,
        () => listQuery().replace(/status=[^&]*/, 'reason=nope'),
      ]);
      return get('dead-letters query', `/v1/dead-letters?${fault()}`);
    }
    case 3:
    case 4: {
      const id = rng.chance(0.8) ? invalidIdParam(rng) : UNKNOWN_UUID;
      return get(
        'id params',
        rng.pick([
          `/v1/sessions/${id}`,
          `/v1/sessions/${id}/events`,
          `/v1/robots/${id}`,
          `/v1/artifacts/${id}`,
        ]),
      );
    }
    case 5:
      return get(
        'artifact key',
        `/v1/artifacts/${rng.pick([
          `${ctx.sessionId}.step-1.png`,
          `${ctx.sessionId}.step-1`,
          `${ctx.sessionId}..png`,
          `${ctx.sessionId}.step-1.PNG`,
          `${ctx.sessionId}.step-1.${'p'.repeat(11)}`,
          `../${ctx.sessionId}.step-1.png`,
          encodeURIComponent(`${ctx.sessionId}/step-1.png`),
        ])}`,
      );
    case 6:
      return get(
        'credentials',
        rng.pick([
          '/v1/sessions',
          `/v1/sessions/${ctx.sessionId}`,
          `/v1/sessions/${ctx.sessionId}/events`,
          '/v1/robots',
          '/v1/dead-letters',
          '/v1/feed',
        ]),
        badCredentials(rng, ctx),
      );
    case 7:
      return get('feed without upgrade', rng.pick(['/v1/feed', '/v1/feed?subscribe=all']), {
        ...goodHeaders(ctx, false),
        ...(rng.chance(0.5)
          ? { connection: 'Upgrade', upgrade: rng.pick(['websocket', 'h2c', 'WebSocket2']) }
          : {}),
      });
    case 8: {
      const method = rng.pick(['POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const);
      const url = rng.pick([
        '/v1/sessions',
        `/v1/sessions/${ctx.sessionId}`,
        '/v1/robots',
        '/v1/dead-letters',
        '/v1/feed',
      ]);
      return {
        ...get('method', url, goodHeaders(ctx, method !== 'OPTIONS')),
        method,
        ...(method === 'OPTIONS' ? {} : { payload: JSON.stringify({ status: 'closed' }) }),
      };
    }
    default:
      return get(
        'unknown path',
        rng.pick([
          '/v1/session',
          '/v1/sessions/',
          `/v1/sessions/${ctx.sessionId}/events/1`,
          '/%2e%2e/%2e%2e/etc/passwd',
          `/v1/${'a'.repeat(rng.between(100, 8_000))}`,
          `/v1/${uriComponent(unicodeString(rng, 10))}`,
          '/v1/robots/',
          '/.env',
          '/v1/sessions%00',
        ]),
      );
  }
}

/** One WebSocket message with at least one fault. */
export function wsInput(rng: Rng): WsInput {
  const text = (kind: string, data: string): WsInput => ({ kind, data, binary: false });
  const json = (kind: string, value: unknown): WsInput => text(kind, JSON.stringify(value));
  switch (rng.int(20)) {
    case 0:
    case 1:
      return text('invalid json', String(invalidJsonText(rng)).slice(0, 2_000));
    case 2:
      return json(
        'wrong type',
        rng.pick<unknown>([
          42,
          'subscribe',
          null,
          true,
          [],
          [{ subscribe: { all: true } }],
          nested(rng.between(10, 500)),
        ]),
      );
    case 3:
    case 4:
      return json(
        'subscribe',
        rng.pick<unknown>([
          {},
          { subscribe: {} },
          { subscribe: { all: false } },
          { subscribe: { all: 'yes' } },
          { subscribe: { session: 'a', all: true } },
          { subscribe: { session: rng.pick(['', 'a b', 'x'.repeat(193), '😀', '../a', 1, null]) } },
          { subscribe: { all: true, fromPosition: rng.pick<unknown>([-1, 1.5, '1', null, 1e308 * 10]) } },
          { subscribe: { all: true }, unsubscribe: { all: true } },
          { subscribe: { all: true }, [unknownKey(rng)]: 1 },
          { subscribe: { session: 'a', [unknownKey(rng)]: 1 } },
          { unsubscribe: {} },
          { unsubscribe: { session: rng.pick(['', 'a b', 2]) } },
          { Subscribe: { all: true } },
        ]),
      );
    case 5:
    case 6:
    case 7:
      return json(
        'control',
        rng.pick<unknown>([
          { type: rng.pick(['delete', 'PAUSE', '', 'evaluate', 1, null]), sessionId: 's1' },
          { type: 'pause' },
          { type: 'resume', sessionId: rng.pick(['', 'a b', 'x'.repeat(193), 5, null]) },
          { type: 'cancel', sessionId: 's1', reason: rng.pick<unknown>([longString(rng, 501), 7]) },
          { type: 'retry', sessionId: 's1' },
          { type: 'retry', sessionId: 's1', stepId: rng.pick<unknown>(['', longString(rng, 101), 3]) },
          { type: 'pause', sessionId: 's1', requestId: rng.pick<unknown>(['', longString(rng, 101), 1, {}]) },
          { type: 'pause', sessionId: 's1', [unknownKey(rng)]: 'x' },
          { type: 'pause', sessionId: 's1', subscribe: { all: true } },
        ]),
      );
    case 8:
    case 9: {
      const bytes = Buffer.alloc(rng.between(0, 2 * KIB));
      for (let i = 0; i < bytes.length; i++) bytes[i] = rng.int(256);
      return {
        kind: 'binary',
        data: rng.chance(0.3) ? Buffer.from('{"subscribe":{"all":true}}') : bytes,
        binary: true,
      };
    }
    case 10:
      return text('unicode', unicodeString(rng, rng.between(1, 500)));
    case 11:
      return json('deep', { subscribe: nested(rng.between(100, 3_000)) });
    case 12:
      return text('deep text', `${'['.repeat(rng.between(100, 30_000))}`);
    case 13:
      return text(
        'huge string',
        JSON.stringify({ subscribe: { session: 'x'.repeat(rng.between(200, 60 * KIB)) } }),
      );
    case 14:
      return text(
        'number edge',
        rng.pick([
          '{"subscribe":{"all":true,"fromPosition":1e999}}',
          '{"subscribe":{"all":true,"fromPosition":-0.5}}',
          '{"subscribe":{"all":true,"fromPosition":"1"}}',
        ]),
      );
    default:
      return json('unknown message', { [unknownKey(rng)]: rng.pick(NASTY_TEXT) });
  }
}

/** Messages that end the connection: over the answered limit, over the frame limit, or not UTF-8. */
export function closingWsInput(rng: Rng, maxMessageBytes: number): WsInput & { closeCodes: number[] } {
  switch (rng.int(3)) {
    case 0:
      return {
        kind: 'oversized',
        data: JSON.stringify({
          subscribe: { all: true },
          pad: 'p'.repeat(maxMessageBytes + rng.between(1, maxMessageBytes - 100)),
        }),
        binary: false,
        closeCodes: [1009],
      };
    case 1:
      return {
        kind: 'over frame limit',
        data: Buffer.alloc(maxMessageBytes * 2 + rng.between(1, 256 * KIB), 0x61),
        binary: rng.chance(0.5),
        closeCodes: [1009],
      };
    default:
      return {
        kind: 'invalid utf-8',
        data: Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0xed, 0xa0, 0x80, 0xff, 0x22, 0x7d]),
        binary: false,
        closeCodes: [1007],
      };
  }
}
