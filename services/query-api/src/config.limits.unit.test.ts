import { describe, expect, it } from 'vitest';
import { DEFAULT_HTTP_LIMITS, httpLimitsFromConfig } from '@rpa/shared';
import { loadConfig as loadCommandConfig } from '../../command-api/src/config.js';
import { DEFAULT_FEED_OPTIONS } from './feed/feedHub.js';
import { loadConfig } from './config.js';

describe('abuse limit configuration of both APIs', () => {
  it('defaults to the documented limits', () => {
    for (const config of [loadConfig({}), loadCommandConfig({})])
      expect(httpLimitsFromConfig(config)).toEqual(DEFAULT_HTTP_LIMITS);
    expect(loadConfig({})).toMatchObject({
      FEED_MAX_SUBSCRIPTIONS: DEFAULT_FEED_OPTIONS.maxSubscriptions,
      FEED_MAX_MESSAGE_BYTES: DEFAULT_FEED_OPTIONS.maxMessageBytes,
    });
    expect(DEFAULT_FEED_OPTIONS).toMatchObject({ maxSubscriptions: 100, maxMessageBytes: 64 * 1024 });
  });

  it('reads each variable and names a bad one', () => {
    expect(
      loadConfig({
        HTTP_BODY_LIMIT_BYTES: '131072',
        RATE_LIMIT_MAX: '50',
        RATE_LIMIT_WINDOW_MS: '10000',
        FEED_MAX_SUBSCRIPTIONS: '10',
        FEED_MAX_MESSAGE_BYTES: '4096',
      }),
    ).toMatchObject({
      HTTP_BODY_LIMIT_BYTES: 131_072,
      RATE_LIMIT_MAX: 50,
      RATE_LIMIT_WINDOW_MS: 10_000,
      FEED_MAX_SUBSCRIPTIONS: 10,
      FEED_MAX_MESSAGE_BYTES: 4_096,
    });
    expect(() => loadConfig({ FEED_MAX_SUBSCRIPTIONS: '0' })).toThrow(/FEED_MAX_SUBSCRIPTIONS/);
    expect(() => loadConfig({ FEED_MAX_MESSAGE_BYTES: '2097152' })).toThrow(/FEED_MAX_MESSAGE_BYTES/);
    expect(() => loadCommandConfig({ HTTP_REQUEST_TIMEOUT_MS: 'soon' })).toThrow(/HTTP_REQUEST_TIMEOUT_MS/);
  });
});
