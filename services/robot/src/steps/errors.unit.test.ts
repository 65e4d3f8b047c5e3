import { errors } from 'playwright-core';
import { describe, expect, it } from 'vitest';
import { isStepBusinessFailure, originOf } from '../breakers.js';
import { StepFailure, toStepFailure } from './errors.js';

const CALL_LOG = '\nCall log:\n\u001b[2m  - fill("s3cret value")\u001b[22m\n';

describe('step error mapping', () => {
  it('reads a timeout while locating as SELECTOR_NOT_FOUND and while acting as TIMEOUT', () => {
    const timeout = new errors.TimeoutError('locator.click: Timeout 500ms exceeded.');
    expect(toStepFailure(timeout, 'locate').code).toBe('SELECTOR_NOT_FOUND');
    expect(toStepFailure(timeout, 'act').code).toBe('TIMEOUT');
    expect(toStepFailure(timeout, 'navigate').code).toBe('TIMEOUT');
  });

  it('reads network errors while navigating as NAVIGATION_FAILED', () => {
    const refused = new Error('page.goto: net::ERR_CONNECTION_REFUSED at http://127.0.0.1:9/');
    expect(toStepFailure(refused, 'navigate').code).toBe('NAVIGATION_FAILED');
  });

  it('reads a closed browser as BROWSER_ERROR and an unparsable selector as SELECTOR_NOT_FOUND', () => {
    expect(
      toStepFailure(new Error('page.goto: Target page, context or browser has been closed'), 'navigate').code,
    ).toBe('BROWSER_ERROR');
    expect(
      toStepFailure(new Error('Unexpected token "#" while parsing css selector "###"'), 'locate').code,
    ).toBe('SELECTOR_NOT_FOUND');
  });

  it('drops the call log and every secret from the message', () => {
    const failure = toStepFailure(
      new Error(`locator.fill: Error: rejected "s3cret value"${CALL_LOG}`),
      'act',
      ['s3cret value'],
    );
    expect(failure.message).toBe('locator.fill: Error: rejected "[redacted]"');
  });

  it('keeps business failures from counting against the target', () => {
    expect(isStepBusinessFailure(new StepFailure('SELECTOR_NOT_FOUND', 'x'))).toBe(true);
    expect(isStepBusinessFailure(new StepFailure('NAVIGATION_FAILED', 'x'))).toBe(false);
    expect(isStepBusinessFailure(new StepFailure('TIMEOUT', 'x'))).toBe(false);
  });

  it('keys breakers by origin', () => {
    expect(originOf('https://example.com:8443/a?b')).toBe('https://example.com:8443');
    expect(originOf('about:blank')).toBe('about:');
  });
});
