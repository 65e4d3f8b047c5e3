import type { KV } from '@nats-io/kv';
import { SchemaError } from '@rpa/shared';
import { z } from 'zod';

/** Where a subscription remembers the global position of the last event it has fully handled. */
export interface CheckpointStore {
  /** The stored position, or null when the subscription has never saved one (start from the beginning). */
  load(name: string): Promise<number | null>;
  save(name: string, position: number): Promise<void>;
  /** Forgets the position, so that the next run starts from the beginning (a rebuild). */
  reset(name: string): Promise<void>;
}

const Checkpoint = z.strictObject({
  position: z.number().int().nonnegative(),
  savedAt: z.string(),
});

const NAME = /^[a-z][a-z0-9_-]{0,62}$/;

/** The KV key of a subscription's checkpoint. */
export function checkpointKey(name: string): string {
  if (!NAME.test(name)) throw new RangeError(`invalid subscription name ${JSON.stringify(name)}`);
  return `projector.${name}`;
}

/** Checkpoints in the topology's checkpoints KV bucket, one key per subscription. */
export class KvCheckpointStore implements CheckpointStore {
  constructor(
    private readonly kv: KV,
    private readonly now: () => Date = () => new Date(),
  ) {}

  async load(name: string): Promise<number | null> {
    const entry = await this.kv.get(checkpointKey(name));
    if (!entry || entry.operation !== 'PUT') return null;
    let json: unknown;
    try {
      json = entry.json();
    } catch {
      json = undefined;
    }
    const parsed = Checkpoint.safeParse(json);
    if (!parsed.success) {
      // Starting over silently would re-run every side effect of the dispatcher: refuse and say why.
      throw new SchemaError(`checkpoint ${checkpointKey(name)} is not a valid checkpoint`, [
        ...parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
      ]);
    }
    return parsed.data.position;
  }

  async save(name: string, position: number): Promise<void> {
    await this.kv.put(checkpointKey(name), JSON.stringify({ position, savedAt: this.now().toISOString() }));
  }

  async reset(name: string): Promise<void> {
    await this.kv.delete(checkpointKey(name));
  }
}

/** Checkpoints held in memory, for tests of subscription logic. */
export class MemoryCheckpointStore implements CheckpointStore {
  readonly positions = new Map<string, number>();
  saves = 0;

  async load(name: string): Promise<number | null> {
    return this.positions.get(name) ?? null;
  }

  async save(name: string, position: number): Promise<void> {
    this.saves++;
    this.positions.set(name, position);
  }

  async reset(name: string): Promise<void> {
    this.positions.delete(name);
  }
}
