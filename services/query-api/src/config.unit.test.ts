import { describe, expect, it } from 'vitest';
import { ConfigError } from '@rpa/shared';
import { loadConfig } from './config.js';

describe('query API configuration', () => {
  it('applies the defaults', () => {
    expect(loadConfig({})).toMatchObject({
      PORT: 8081,
      HOST: '0.0.0.0',
      NATS_PREFIX: 'rpa',
      DEFAULT_TENANT: 'default',
      EVENT_STORE: 'jetstream',
    });
  });

  it('names every bad variable', () => {
    const attempt = () => loadConfig({ PORT: 'eighty', DEFAULT_TENANT: 'a.b', EVENT_STORE: 'postgres' });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/PORT[\s\S]*DEFAULT_TENANT[\s\S]*EVENT_STORE/);
  });
});
