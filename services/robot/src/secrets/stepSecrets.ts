import type { Logger } from '@rpa/shared';
import { StepFailure } from '../steps/errors.js';
import { SecretUnreadableError, type SecretProvider } from './provider.js';

/**
 * The secrets one attempt of one step resolves, and the names of those it did: those are recorded as SecretUsed
 * with the attempt's result. Nothing here keeps a value; `resolve` hands it straight to the browser call.
 */
export class StepSecrets {
  private readonly names = new Set<string>();

  constructor(
    /** The provider itself, for values read later than the step (a header sent with each request). */
    readonly provider: SecretProvider,
    readonly logger: Logger,
  ) {}

  /**
   * The value of secret `name`, read now. A secret no provider holds (or one that cannot be read) fails the step
   * with SECRET_NOT_FOUND, which no retry can fix; the message names the secret, never a value.
   */
  async resolve(name: string): Promise<string> {
    let value: string | undefined;
    try {
      value = await this.provider.get(name);
    } catch (error) {
      if (!(error instanceof SecretUnreadableError)) throw error;
      this.logger.warn({ secretName: name, reason: error.message }, 'secret unreadable');
      throw new StepFailure('SECRET_NOT_FOUND', error.message);
    }
    if (value === undefined) {
      this.logger.warn({ secretName: name, provider: this.provider.kind }, 'secret not found');
      throw new StepFailure('SECRET_NOT_FOUND', `secret "${name}" is not held by ${this.provider.kind}`);
    }
    this.names.add(name);
    return value;
  }

  /** Names of the secrets resolved so far, in the order of first use. */
  used(): string[] {
    return [...this.names];
  }
}
