import type { SecretProvider } from './provider.js';
import { ChainSecretProvider } from './provider.js';
import { EnvSecretProvider } from './envProvider.js';
import { FileSecretProvider } from './fileProvider.js';

export { ChainSecretProvider, noSecrets, SecretUnreadableError, type SecretProvider } from './provider.js';
export { EnvSecretProvider, secretEnvVar } from './envProvider.js';
export { FileSecretProvider, MAX_SECRET_FILE_BYTES } from './fileProvider.js';
export { StepSecrets } from './stepSecrets.js';

/**
 * The robot's secret provider: files in `secretsDir` (a mounted Kubernetes Secret) when one is configured, then
 * `SECRET_*` variables of `env`. The environment is read at each use, never copied.
 */
export function createSecretProvider(options: {
  env: Readonly<Record<string, string | undefined>>;
  secretsDir?: string | undefined;
}): SecretProvider {
  const providers: SecretProvider[] = [];
  if (options.secretsDir) providers.push(new FileSecretProvider(options.secretsDir));
  providers.push(new EnvSecretProvider(options.env));
  return new ChainSecretProvider(providers);
}
