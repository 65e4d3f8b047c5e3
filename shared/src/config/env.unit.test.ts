import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { envFields, parseEnv } from './env.js';

const Schema = z.object({
  PORT: envFields.port(8080),
  HOST: envFields.host(),
  NATS_URL: envFields.natsUrl(),
  NATS_PREFIX: envFields.prefix(),
  LOG_LEVEL: envFields.logLevel(),
  WORKERS: envFields.positiveInt(4),
  HEADLESS: envFields.bool(true),
});

function configError(env: NodeJS.ProcessEnv, schema: z.ZodObject = Schema): ConfigError {
  try {
    parseEnv(schema, env);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new TypeError('expected parseEnv to throw');
}

describe('parseEnv', () => {
  it('fills defaults for unset variables', () => {
    expect(parseEnv(Schema, {})).toEqual({
      PORT: 8080,
      HOST: '0.0.0.0',
      NATS_URL: 'nats://127.0.0.1:4222',
      NATS_PREFIX: 'rpa',
      LOG_LEVEL: 'info',
      WORKERS: 4,
      HEADLESS: true,
    });
  });

  it('coerces and checks the values that are set', () => {
    expect(
      parseEnv(Schema, {
        PORT: '9090',
        NATS_URL: 'nats://a:4222, tls://b:4222,c:4222',
        NATS_PREFIX: 'team_a1',
        LOG_LEVEL: 'debug',
        WORKERS: '2',
        HEADLESS: 'no',
      }),
    ).toMatchObject({ PORT: 9090, NATS_PREFIX: 'team_a1', LOG_LEVEL: 'debug', WORKERS: 2, HEADLESS: false });
  });

  it('ignores variables the schema does not name', () => {
    expect(parseEnv(Schema, { PATH: '/usr/bin', HOME: '/root' })).not.toHaveProperty('PATH');
  });

  it.each([
    ['PORT', 'abc'],
    ['PORT', '70000'],
    ['PORT', '80.5'],
    ['NATS_URL', 'http://localhost:4222'],
    ['NATS_PREFIX', 'Upper'],
    ['NATS_PREFIX', 'has-dash'],
    ['LOG_LEVEL', 'loud'],
    ['WORKERS', '0'],
    ['HEADLESS', 'maybe'],
    ['HOST', ''],
  ])('a bad %s (%j) throws a ConfigError whose message names the variable', (name, value) => {
    const error = configError({ [name]: value });
    expect(error.code).toBe('CONFIG_INVALID');
    expect(error.message).toMatch(new RegExp(`^\\s*${name}: `, 'm'));
  });

  it('names every offending variable at once', () => {
    const error = configError({ PORT: 'abc', LOG_LEVEL: 'loud' });
    expect(error.message).toContain('PORT:');
    expect(error.message).toContain('LOG_LEVEL:');
  });

  it('names a required variable that is missing', () => {
    const error = configError({}, z.object({ API_TOKEN_FILE: z.string().min(1) }));
    expect(error.message).toContain('API_TOKEN_FILE:');
  });

  it('never echoes the offending value, which may be a credential', () => {
    const error = configError({ PORT: 'hunter2-secret' });
    expect(error.message).not.toContain('hunter2');
  });
});
