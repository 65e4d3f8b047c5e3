import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { ConfigError } from '../errors.js';
import { Scope, type AuthContext } from './auth.js';

/** Key ids appear in event metadata and logs; they are names, not secrets. */
const KeyId = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'must be 1-64 of A-Z a-z 0-9 _ . : -');
const Tenant = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, 'must be 1-64 of A-Z a-z 0-9 _ - (it is part of read-model keys)');

/**
 * One configured API key: who it is (id), the one tenant it acts for, what it may do, and the SHA-256 of the key.
 * Only the hash is kept at rest: a leaked configuration does not leak a key.
 */
export const ApiKeyEntry = z.strictObject({
  id: KeyId,
  tenant: Tenant,
  scopes: z.array(Scope).min(1).max(Scope.options.length),
  hash: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'must be sha256:<64 lowercase hex digits> of the key'),
});
export type ApiKeyEntry = z.infer<typeof ApiKeyEntry>;

/** The configuration format (API_KEYS, API_KEYS_FILE): a JSON array of entries. */
export const ApiKeyList = z.array(ApiKeyEntry).max(10_000);

/** Keys generated here start with this, so that they are recognisable in a secret scanner and never look like a JWT. */
export const API_KEY_PREFIX = 'rpa_';

/** The form every key takes on the wire: the prefix and 43 base64url characters (256 random bits). */
const KEY_SHAPE = /^[A-Za-z0-9_-]{16,200}$/;

/** `sha256:<hex>` of a key, as configuration holds it. */
export function hashApiKey(key: string): string {
  return `sha256:${createHash('sha256').update(key, 'utf8').digest('hex')}`;
}

/** A new random key, and the configuration entry that admits it. */
export function generateApiKey(entry: Omit<ApiKeyEntry, 'hash'>): { key: string; entry: ApiKeyEntry } {
  const key = `${API_KEY_PREFIX}${randomBytes(32).toString('base64url')}`;
  return { key, entry: ApiKeyEntry.parse({ ...entry, hash: hashApiKey(key) }) };
}

/**
 * Parses a JSON array of key entries from one source (named in errors, e.g. `API_KEYS_FILE`). A malformed entry
 * throws a ConfigError naming the source, the index and the field; the text of the source is never quoted, since
 * it may hold a key pasted by mistake.
 */
export function parseApiKeys(text: string, source: string): ApiKeyEntry[] {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new ConfigError(`${source}: is not JSON (expected an array of {id, tenant, scopes, hash})`);
  }
  const result = ApiKeyList.safeParse(json);
  if (!result.success) {
    const lines = result.error.issues.map((i) => `${source}[${i.path.join('.')}]: ${i.message}`);
    throw new ConfigError(`invalid API keys:\n  ${lines.join('\n  ')}`);
  }
  return result.data;
}

/** Refuses two entries with one id (audit could not tell them apart) or one hash (one key, two tenants). */
export function checkApiKeys(entries: readonly ApiKeyEntry[]): void {
  const ids = new Set<string>();
  const hashes = new Set<string>();
  for (const entry of entries) {
    if (ids.has(entry.id)) throw new ConfigError(`API keys: the id ${entry.id} is configured twice`);
    if (hashes.has(entry.hash))
      throw new ConfigError(`API keys: the key of ${entry.id} is also configured under another id`);
    ids.add(entry.id);
    hashes.add(entry.hash);
  }
}

/**
 * Resolves a presented key against the configured hashes. The presented key is hashed, then compared with every
 * entry in constant time and without stopping at a match, so that neither the key nor its position in the list
 * shows in the time taken.
 */
export class ApiKeyVerifier {
  private readonly entries: ReadonlyArray<{ entry: ApiKeyEntry; digest: Buffer }>;

  constructor(entries: readonly ApiKeyEntry[]) {
    checkApiKeys(entries);
    this.entries = entries.map((entry) => ({
      entry,
      digest: Buffer.from(entry.hash.slice('sha256:'.length), 'hex'),
    }));
  }

  get size(): number {
    return this.entries.length;
  }

  verify(key: string): AuthContext | null {
    if (!KEY_SHAPE.test(key)) return null;
    const digest = createHash('sha256').update(key, 'utf8').digest();
    let found: ApiKeyEntry | null = null;
    for (const { entry, digest: expected } of this.entries) {
      if (timingSafeEqual(digest, expected) && found === null) found = entry;
    }
    if (!found) return null;
    return {
      tenantId: found.tenant,
      actor: { kind: 'api-key', id: found.id },
      scopes: [...new Set(found.scopes)],
    };
  }
}
