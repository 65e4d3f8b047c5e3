import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '@rpa/shared';
import { StepFailure } from '../steps/errors.js';
import {
  ChainSecretProvider,
  createSecretProvider,
  EnvSecretProvider,
  FileSecretProvider,
  MAX_SECRET_FILE_BYTES,
  noSecrets,
  secretEnvVar,
  SecretUnreadableError,
  StepSecrets,
} from './index.js';

describe('EnvSecretProvider', () => {
  it.each([
    ['password', 'SECRET_PASSWORD'],
    ['login.password', 'SECRET_LOGIN_PASSWORD'],
    ['db-pass.v2', 'SECRET_DB_PASS_V2'],
    ['Api_Key', 'SECRET_API_KEY'],
  ])('reads %s from %s', async (name, variable) => {
    expect(secretEnvVar(name)).toBe(variable);
    expect(await new EnvSecretProvider({ [variable]: 'v' }).get(name)).toBe('v');
  });

  it('reads the environment at each use: a changed value is seen, a removed one is gone', async () => {
    const env: Record<string, string | undefined> = { SECRET_PW: 'one' };
    const provider = new EnvSecretProvider(env);
    expect(await provider.get('pw')).toBe('one');
    env.SECRET_PW = 'two';
    expect(await provider.get('pw')).toBe('two');
    delete env.SECRET_PW;
    expect(await provider.get('pw')).toBeUndefined();
  });

  it('answers nothing for a name that is not a secret name', async () => {
    expect(await new EnvSecretProvider({ SECRET_: 'x', 'SECRET_../X': 'y' }).get('')).toBeUndefined();
    expect(await new EnvSecretProvider({ SECRET_1: 'x' }).get('1')).toBeUndefined();
  });
});

describe('FileSecretProvider', () => {
  let dir: string;
  let outside: string;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'secrets-'));
    outside = mkdtempSync(join(tmpdir(), 'outside-'));
    writeFileSync(join(outside, 'passwd'), 'root');
    writeFileSync(join(dir, 'plain'), 's3cret');
    writeFileSync(join(dir, 'newline'), 's3cret\n');
    writeFileSync(join(dir, 'crlf'), 's3cret\r\n');
    writeFileSync(join(dir, 'two-newlines'), 's3cret\n\n');
    writeFileSync(join(dir, 'spaces'), '  s3cret  ');
    writeFileSync(join(dir, 'empty'), '');
    writeFileSync(join(dir, 'huge'), 'x'.repeat(MAX_SECRET_FILE_BYTES + 1));
    mkdirSync(join(dir, 'adir'));
    // The layout of a Kubernetes Secret volume: each key is a symlink into the current ..data directory.
    mkdirSync(join(dir, '..2026_01_01'));
    writeFileSync(join(dir, '..2026_01_01', 'login.password'), 'from-k8s\n');
    symlinkSync('..2026_01_01', join(dir, '..data'));
    symlinkSync(join('..data', 'login.password'), join(dir, 'login.password'));
  });

  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    rmSync(outside, { recursive: true, force: true });
  });

  it.each([
    ['plain', 's3cret'],
    ['newline', 's3cret'],
    ['crlf', 's3cret'],
    ['two-newlines', 's3cret\n'],
    ['spaces', '  s3cret  '],
    ['empty', ''],
  ])('reads %s with one trailing newline dropped', async (name, value) => {
    expect(await new FileSecretProvider(dir).get(name)).toBe(value);
  });

  it('reads a key of a mounted Kubernetes Secret through its ..data symlink', async () => {
    expect(await new FileSecretProvider(dir).get('login.password')).toBe('from-k8s');
  });

  it('answers nothing for a missing file, a missing directory and names that would leave the directory', async () => {
    const provider = new FileSecretProvider(dir);
    expect(await provider.get('missing')).toBeUndefined();
    expect(await new FileSecretProvider(join(dir, 'nope')).get('plain')).toBeUndefined();
    for (const name of ['../outside/passwd', `..${'/'}passwd`, '..data', '/etc/passwd', ''])
      expect(await provider.get(name)).toBeUndefined();
  });

  it('refuses a directory or an oversized file as unreadable, naming the secret but not its content', async () => {
    const provider = new FileSecretProvider(dir);
    await expect(provider.get('adir')).rejects.toBeInstanceOf(SecretUnreadableError);
    const huge = await provider.get('huge').catch((error: unknown) => error);
    expect(huge).toBeInstanceOf(SecretUnreadableError);
    expect((huge as Error).message).toContain('"huge"');
    expect((huge as Error).message).not.toContain('xxxx');
  });

  it('reads at each use: a rotated file is seen without a restart', async () => {
    const provider = new FileSecretProvider(dir);
    writeFileSync(join(dir, 'rotating'), 'old');
    expect(await provider.get('rotating')).toBe('old');
    writeFileSync(join(dir, 'rotating'), 'new\n');
    expect(await provider.get('rotating')).toBe('new');
  });

  it('comes before the environment when both are configured', async () => {
    const provider = createSecretProvider({
      env: { SECRET_PLAIN: 'env', SECRET_ONLY_ENV: 'env-only' },
      secretsDir: dir,
    });
    expect(await provider.get('plain')).toBe('s3cret');
    expect(await provider.get('only-env')).toBe('env-only');
    expect(await createSecretProvider({ env: { SECRET_PLAIN: 'env' } }).get('plain')).toBe('env');
  });
});

describe('ChainSecretProvider', () => {
  it('answers with the first provider that holds the secret', async () => {
    const chain = new ChainSecretProvider([
      new EnvSecretProvider({ SECRET_A: 'first' }),
      new EnvSecretProvider({ SECRET_A: 'second', SECRET_B: 'b' }),
    ]);
    expect(await chain.get('a')).toBe('first');
    expect(await chain.get('b')).toBe('b');
    expect(await chain.get('c')).toBeUndefined();
  });
});

describe('StepSecrets', () => {
  it('resolves secrets and records the names used, once each, in order', async () => {
    const secrets = new StepSecrets(new EnvSecretProvider({ SECRET_B: 'bb', SECRET_A: 'aa' }), silentLogger);
    expect(await secrets.resolve('b')).toBe('bb');
    expect(await secrets.resolve('a')).toBe('aa');
    expect(await secrets.resolve('b')).toBe('bb');
    expect(secrets.used()).toEqual(['b', 'a']);
  });

  it('fails a missing secret with SECRET_NOT_FOUND naming it, and records no use', async () => {
    const secrets = new StepSecrets(new EnvSecretProvider({}), silentLogger);
    const failure = await secrets.resolve('login.password').catch((error: unknown) => error);
    expect(failure).toBeInstanceOf(StepFailure);
    expect((failure as StepFailure).toStepError()).toEqual({
      code: 'SECRET_NOT_FOUND',
      message: 'secret "login.password" is not held by environment',
    });
    expect(secrets.used()).toEqual([]);
  });

  it('fails an unreadable secret with SECRET_NOT_FOUND saying why, and a robot without secrets fails every one', async () => {
    const unreadable = new StepSecrets(
      {
        kind: 'test',
        get: (name) => Promise.reject(new SecretUnreadableError(name, 'test', 'EACCES')),
      },
      silentLogger,
    );
    await expect(unreadable.resolve('pw')).rejects.toMatchObject({
      code: 'SECRET_NOT_FOUND',
      message: 'secret "pw" could not be read from test: EACCES',
    });
    await expect(new StepSecrets(noSecrets, silentLogger).resolve('pw')).rejects.toMatchObject({
      code: 'SECRET_NOT_FOUND',
    });
  });
});
