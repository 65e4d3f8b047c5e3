import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { SecretName } from '@rpa/shared';
import { SecretUnreadableError, type SecretProvider } from './provider.js';

/** Largest secret file read: a secret is a password or a token, not a document. */
export const MAX_SECRET_FILE_BYTES = 64 * 1024;

/** Errors that mean "no such secret" rather than "cannot read it". */
const ABSENT = new Set(['ENOENT', 'ENOTDIR']);

/**
 * Secrets as files in one directory, one file per secret named after it, the way a Kubernetes Secret mounted as a
 * volume lays them out (each key a file, behind `..data` symlinks that this follows). Read at each use, so that a
 * rotated Secret is picked up without a restart; one trailing newline (left by `echo` or an editor) is dropped.
 * Secret names start with a letter and hold no `/`, so no name reaches outside the directory or its `..data` links.
 */
export class FileSecretProvider implements SecretProvider {
  readonly kind: string;

  constructor(private readonly dir: string) {
    this.kind = `the secrets directory ${dir}`;
  }

  async get(name: string): Promise<string | undefined> {
    if (!SecretName.safeParse(name).success) return undefined;
    let handle;
    try {
      handle = await open(join(this.dir, name), 'r');
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? 'UNKNOWN';
      if (ABSENT.has(code)) return undefined;
      throw new SecretUnreadableError(name, this.kind, code);
    }
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new SecretUnreadableError(name, this.kind, 'not a regular file');
      if (stat.size > MAX_SECRET_FILE_BYTES)
        throw new SecretUnreadableError(name, this.kind, `larger than ${MAX_SECRET_FILE_BYTES} bytes`);
      const text = await handle.readFile({ encoding: 'utf8' });
      return text.replace(/\r?\n$/, '');
    } catch (error) {
      if (error instanceof SecretUnreadableError) throw error;
      throw new SecretUnreadableError(
        name,
        this.kind,
        (error as NodeJS.ErrnoException).code ?? 'read failed',
      );
    } finally {
      await handle.close();
    }
  }
}
