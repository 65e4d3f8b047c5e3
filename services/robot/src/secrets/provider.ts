import { RpaError } from '@rpa/shared';

/**
 * Where the robot finds the value of a secret a step names. Implementations read at the moment of use and keep
 * nothing: a value lives only as long as the browser call that types it.
 */
export interface SecretProvider {
  /** What kind of store this is (for messages and logs; never a value). */
  readonly kind: string;
  /** The secret's value, or undefined when this provider does not hold it. */
  get(name: string): Promise<string | undefined>;
}

/** A provider holds the secret but could not read it (a file that cannot be opened, say). */
export class SecretUnreadableError extends RpaError {
  constructor(
    readonly secretName: string,
    readonly providerKind: string,
    reason: string,
  ) {
    super('SECRET_UNREADABLE', `secret "${secretName}" could not be read from ${providerKind}: ${reason}`);
  }
}

/** Asks each provider in turn; the first that holds the secret answers. */
export class ChainSecretProvider implements SecretProvider {
  readonly kind: string;

  constructor(private readonly providers: readonly SecretProvider[]) {
    this.kind = providers.map((p) => p.kind).join(', ') || 'no secret provider';
  }

  async get(name: string): Promise<string | undefined> {
    for (const provider of this.providers) {
      const value = await provider.get(name);
      if (value !== undefined) return value;
    }
    return undefined;
  }
}

/** A provider that holds nothing: a robot configured without secrets fails every step that names one. */
export const noSecrets: SecretProvider = {
  kind: 'no secret provider',
  get: () => Promise.resolve(undefined),
};
