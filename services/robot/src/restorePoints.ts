import { Objm, type ObjectResult, type ObjectStore } from '@nats-io/obj';
import { z } from 'zod';
import { RpaError, type NatsConnection, type Topology } from '@rpa/shared';

/** How long a restore point is kept: a session idle for longer than this recovers by replaying from its first step. */
export const RESTORE_POINT_MAX_AGE_MS = 7 * 24 * 3_600_000;

const NS_PER_MS = 1_000_000;

/**
 * A browser context's storage (cookies and localStorage per origin), as Playwright captures and restores it. It
 * holds credentials: it lives only in the restore-points bucket, never in an event or a log line.
 */
export const StorageState = z.object({
  cookies: z.array(
    z.object({
      name: z.string(),
      value: z.string(),
      domain: z.string(),
      path: z.string(),
      expires: z.number(),
      httpOnly: z.boolean(),
      secure: z.boolean(),
      sameSite: z.enum(['Strict', 'Lax', 'None']),
    }),
  ),
  origins: z.array(
    z.object({
      origin: z.string(),
      localStorage: z.array(z.object({ name: z.string(), value: z.string() })),
    }),
  ),
});
export type StorageState = z.infer<typeof StorageState>;

/** Reads an object's data, cancelling the read (and the consumer behind it) when it takes longer than `timeoutMs`. */
async function readAll(result: ObjectResult, key: string, timeoutMs: number): Promise<Uint8Array> {
  const reader = result.data.getReader();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    reader.cancel().catch(() => undefined);
  }, timeoutMs);
  const chunks: Uint8Array[] = [];
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      chunks.push(value);
    }
  } finally {
    clearTimeout(timer);
  }
  if (timedOut) throw new RestorePointUnavailableError(key, timeoutMs);
  const error = await result.error;
  if (error) throw error;
  return Buffer.concat(chunks);
}

/** The fields a storage state failed on, by path only: the values are cookies. */
function issuePaths(error: z.ZodError): string {
  return `invalid fields ${error.issues.map((i) => i.path.join('.') || '(root)').join(', ')}`;
}

/** A restore point could not be stored or read back as storage state. */
export class RestorePointCorruptError extends RpaError {
  constructor(key: string, detail: string) {
    super('RESTORE_POINT_CORRUPT', `restore point ${key} is not a valid storage state: ${detail}`);
  }
}

/** Reading a restore point did not finish in time (it may have been deleted while being read). */
export class RestorePointUnavailableError extends RpaError {
  constructor(key: string, timeoutMs: number) {
    super('RESTORE_POINT_UNAVAILABLE', `restore point ${key} could not be read within ${timeoutMs} ms`);
  }
}

/** Where restore points (storage states) are kept, by key; events refer to them by that key only. */
export interface RestorePointStore {
  /** Stores the storage state taken right after step `afterStepSeq` by the owner at `epoch`; resolves with its key. */
  put(sessionId: string, afterStepSeq: number, epoch: number, state: StorageState): Promise<string>;
  /** The storage state under the key, or null when there is none (never taken, deleted or expired). */
  get(key: string): Promise<StorageState | null>;
  /** Removes the restore point; a missing one is not an error. */
  delete(key: string): Promise<void>;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Restore points in the NATS object store named by the topology. */
export class NatsRestorePointStore implements RestorePointStore {
  private constructor(
    private readonly store: ObjectStore,
    private readonly topology: Topology,
    private readonly readTimeoutMs: number,
  ) {}

  /**
   * Opens the restore-points bucket, creating it (with its maximum age) when absent. `readTimeoutMs` bounds one
   * read: an object deleted between its metadata and its data being read would otherwise be waited for forever.
   */
  static async open(
    nc: NatsConnection,
    topology: Topology,
    options: { maxAgeMs?: number; readTimeoutMs?: number } = {},
  ): Promise<NatsRestorePointStore> {
    const maxAgeMs = options.maxAgeMs ?? RESTORE_POINT_MAX_AGE_MS;
    const store = await new Objm(nc).create(topology.restorePointsBucket, {
      description: 'browser storage states that sessions are recovered from',
      ttl: maxAgeMs * NS_PER_MS,
    });
    return new NatsRestorePointStore(store, topology, options.readTimeoutMs ?? 10_000);
  }

  async put(sessionId: string, afterStepSeq: number, epoch: number, state: StorageState): Promise<string> {
    const key = this.topology.restorePointKey(sessionId, afterStepSeq, epoch);
    const parsed = StorageState.safeParse(state);
    if (!parsed.success) throw new RestorePointCorruptError(key, issuePaths(parsed.error));
    await this.store.putBlob({ name: key }, encoder.encode(JSON.stringify(parsed.data)));
    return key;
  }

  async get(key: string): Promise<StorageState | null> {
    const result = await this.store.get(key);
    if (result === null) return null;
    const bytes = await readAll(result, key, this.readTimeoutMs);
    let json: unknown;
    try {
      json = JSON.parse(decoder.decode(bytes));
    } catch {
      throw new RestorePointCorruptError(key, 'not JSON');
    }
    const parsed = StorageState.safeParse(json);
    if (!parsed.success) throw new RestorePointCorruptError(key, issuePaths(parsed.error));
    return parsed.data;
  }

  async delete(key: string): Promise<void> {
    await this.store.delete(key);
  }
}
