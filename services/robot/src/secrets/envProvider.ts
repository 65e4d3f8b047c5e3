import { SecretName } from '@rpa/shared';
import type { SecretProvider } from './provider.js';

/** The variable that holds secret `name`: `SECRET_` and the name upper-cased, with `.` and `-` as `_`. */
export function secretEnvVar(name: string): string {
  return `SECRET_${name.toUpperCase().replace(/[.-]/g, '_')}`;
}

/**
 * Secrets from environment variables (`login.password` is SECRET_LOGIN_PASSWORD), read from the given environment at
 * each use, so that a value is never copied anywhere else.
 */
export class EnvSecretProvider implements SecretProvider {
  readonly kind = 'environment';

  constructor(private readonly env: Readonly<Record<string, string | undefined>>) {}

  get(name: string): Promise<string | undefined> {
    if (!SecretName.safeParse(name).success) return Promise.resolve(undefined);
    return Promise.resolve(this.env[secretEnvVar(name)]);
  }
}
