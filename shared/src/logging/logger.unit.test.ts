import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger } from './logger.js';

/** A logger writing into memory, and the lines it wrote so far. */
function capture() {
  const chunks: string[] = [];
  const logger = createLogger({
    name: 'test',
    level: 'debug',
    destination: new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk.toString('utf8'));
        callback();
      },
    }),
  });
  return { logger, text: () => chunks.join('') };
}

const CANARY = 'canary-4f1d2c';

describe('log redaction', () => {
  it.each([
    ['request credential headers', { req: { headers: { authorization: `Bearer ${CANARY}`, host: 'h' } } }],
    ['a request cookie', { req: { headers: { cookie: `sid=${CANARY}` } } }],
    ['an API key header', { req: { headers: { 'x-api-key': CANARY } } }],
    [
      "a feed client's subprotocol credential",
      { req: { headers: { 'sec-websocket-protocol': `rpa.feed.v1, rpa.bearer.${CANARY}` } } },
    ],
    ['a response cookie', { res: { headers: { 'set-cookie': [`sid=${CANARY}`] } } }],
    ['bare headers', { headers: { authorization: CANARY, 'x-api-key': CANARY, cookie: CANARY } }],
    ['headers one level down', { upstream: { headers: { 'proxy-authorization': CANARY } } }],
    ['a password', { password: CANARY }],
    ['a nested token', { auth: { token: CANARY, accessToken: CANARY, refreshToken: CANARY } }],
    ['a secret value', { secret: CANARY, resolved: { secretValue: CANARY } }],
    ['an API key field', { key: { apiKey: CANARY } }],
    ['a fill step value', { step: { action: 'fill', selector: '#pw', value: CANARY } }],
    ['submitted step values', { body: { steps: [{ value: CANARY }, { value: CANARY }] } }],
    ['step values in a list', { steps: [{ value: CANARY }] }],
    ['browser storage', { state: { storageState: { cookies: [{ value: CANARY }] } } }],
  ])('keeps %s out of the line', (_what, fields) => {
    const { logger, text } = capture();
    logger.info(fields, 'something happened');
    expect(text()).toContain('[redacted]');
    expect(text()).not.toContain(CANARY);
  });

  it('keeps fields that carry no secret', () => {
    const { logger, text } = capture();
    logger.info({ sessionId: 's-1', secretName: 'login.password', req: { headers: { host: 'api' } } }, 'm');
    const line = JSON.parse(text()) as Record<string, unknown>;
    expect(line).toMatchObject({
      sessionId: 's-1',
      secretName: 'login.password',
      req: { headers: { host: 'api' } },
    });
  });

  it('redacts in child loggers too', () => {
    const { logger, text } = capture();
    logger.child({ sessionId: 's-1' }).warn({ password: CANARY }, 'm');
    expect(text()).not.toContain(CANARY);
  });
});
