import { KvWatchInclude, type KV, type KvWatchEntry } from '@nats-io/kv';
import type { Logger } from '@rpa/shared';
import type { z } from 'zod';

/** What a watch hands over: new values, and keys that are gone. */
export interface BucketWatchHandler {
  /** A key's new value (a put); never called twice for one revision. */
  put(entry: KvWatchEntry): void;
  /** A key was deleted or purged: by a marker the watch saw, or because a fresh load no longer found it. */
  remove(key: string): void;
  /** The initial values of a watch are all in (after every watch, not only the first). */
  loaded?(): void;
}

export interface BucketWatchOptions {
  kv: KV;
  /** Names the bucket in log lines ("sessions", "robots"). */
  name: string;
  logger: Logger;
  handler: BucketWatchHandler;
  /** First delay before watching again after a watch ended unexpectedly; it doubles up to the maximum. */
  rewatchDelayMs?: number;
  maxRewatchDelayMs?: number;
}

type Watcher = Awaited<ReturnType<KV['watch']>>;

/**
 * Keeps a handler in step with a KV bucket: the last value of every key first (`ready` resolves once they are in),
 * then every update and delete. When the watch ends for any reason other than `stop()`, it watches again from the
 * current values, hands over only what changed meanwhile and removes keys that vanished without a marker.
 */
export class BucketWatch {
  /** Resolves once the initial values have been loaded. Never rejects. */
  readonly ready: Promise<void>;
  private markReady!: () => void;
  private loaded = false;
  private readonly rewatchDelayMs: number;
  private readonly maxRewatchDelayMs: number;
  /** KV revision last seen per key, so that a re-watch does not hand over values that did not change. */
  private readonly revisions = new Map<string, number>();
  private watcher: Watcher | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private wake: (() => void) | null = null;
  private resyncRequested = false;
  private watchCount = 0;

  constructor(private readonly options: BucketWatchOptions) {
    this.rewatchDelayMs = options.rewatchDelayMs ?? 250;
    this.maxRewatchDelayMs = options.maxRewatchDelayMs ?? 5_000;
    this.ready = new Promise((resolve) => {
      this.markReady = resolve;
    });
  }

  /** Starts watching; idempotent. */
  start(): void {
    if (this.running || this.stopped) return;
    this.running = this.run();
  }

  /** Stops watching; safe to call twice. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    this.watcher?.stop();
    await this.running;
  }

  /** Ends the current watch and loads the bucket afresh, removing keys that vanished without a delete marker. */
  resync(): void {
    if (!this.watcher) return;
    this.resyncRequested = true;
    this.watcher.stop();
  }

  /** True once the initial values have been loaded. */
  isReady(): boolean {
    return this.loaded;
  }

  /** True while a watch is open on the bucket. */
  isWatching(): boolean {
    return this.watcher !== null;
  }

  /** Watches opened since start. */
  get watches(): number {
    return this.watchCount;
  }

  private async run(): Promise<void> {
    const { logger, name } = this.options;
    let delay = this.rewatchDelayMs;
    while (!this.stopped) {
      try {
        const completedLoad = await this.watchOnce();
        // A watch that got through its initial values was healthy: the next failure starts the backoff over.
        if (completedLoad) delay = this.rewatchDelayMs;
        if (this.resyncRequested) {
          this.resyncRequested = false;
          continue;
        }
        if (!this.stopped) logger.warn({ delayMs: delay }, `${name} watch ended; watching again`);
      } catch (error) {
        if (!this.stopped) logger.warn({ err: error, delayMs: delay }, `${name} watch failed; retrying`);
      }
      if (this.stopped) break;
      await this.pause(delay);
      delay = Math.min(delay * 2, this.maxRewatchDelayMs);
    }
  }

  /** One watch, from the current values until the iterator ends. Returns whether the initial load completed. */
  private async watchOnce(): Promise<boolean> {
    const { kv } = this.options;
    const { values } = await kv.status();
    const watcher = await kv.watch({ include: KvWatchInclude.LastValue });
    if (this.stopped) {
      watcher.stop();
      return false;
    }
    this.watcher = watcher;
    this.watchCount++;
    const seen = new Set<string>();
    let loading = true;
    const finishLoad = () => {
      loading = false;
      this.removeUnseen(seen);
      if (!this.loaded) {
        this.loaded = true;
        this.markReady();
      }
      this.options.handler.loaded?.();
    };
    // The watch marks the last of its initial values as the first update; an empty bucket has none to mark.
    if (values === 0) finishLoad();
    try {
      for await (const entry of watcher) {
        if (loading) seen.add(entry.key);
        this.apply(entry);
        if (loading && entry.isUpdate) finishLoad();
      }
    } finally {
      this.watcher = null;
    }
    return !loading;
  }

  private apply(entry: KvWatchEntry): void {
    const last = this.revisions.get(entry.key);
    if (last !== undefined && entry.revision <= last) return;
    this.revisions.set(entry.key, entry.revision);
    if (entry.operation === 'DEL' || entry.operation === 'PURGE') {
      this.revisions.delete(entry.key);
      this.options.handler.remove(entry.key);
      return;
    }
    this.options.handler.put(entry);
  }

  /** After a re-watch has loaded, keys it did not see were deleted and purged while nobody watched. */
  private removeUnseen(seen: Set<string>): void {
    for (const key of [...this.revisions.keys()]) {
      if (seen.has(key)) continue;
      this.revisions.delete(key);
      this.options.handler.remove(key);
    }
  }

  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wake = done;
    });
  }
}

/** What every index over a watched bucket is built from. */
export interface WatchedIndexOptions {
  kv: KV;
  logger: Logger;
  /** First delay before watching again after a watch ended unexpectedly; it doubles up to the maximum. */
  rewatchDelayMs?: number;
  maxRewatchDelayMs?: number;
}

/**
 * An in-memory index kept in step with one KV bucket: a subclass says what a new value, a removed key and the end
 * of a load mean to it; starting, stopping and re-loading the watch are the same for every index.
 */
export abstract class WatchedIndex {
  /** Resolves once the initial values have been loaded. Never rejects. */
  readonly ready: Promise<void>;
  protected readonly logger: Logger;
  private readonly watch: BucketWatch;

  protected constructor(name: string, options: WatchedIndexOptions) {
    this.logger = options.logger;
    // The watch calls back only after start(), when the subclass's own fields exist.
    this.watch = new BucketWatch({
      kv: options.kv,
      name,
      logger: options.logger,
      ...(options.rewatchDelayMs === undefined ? {} : { rewatchDelayMs: options.rewatchDelayMs }),
      ...(options.maxRewatchDelayMs === undefined ? {} : { maxRewatchDelayMs: options.maxRewatchDelayMs }),
      handler: {
        put: (entry) => this.onPut(entry),
        remove: (key) => this.onRemove(key),
        loaded: () => this.onLoaded(),
      },
    });
    this.ready = this.watch.ready;
  }

  /** A key's new value. */
  protected abstract onPut(entry: KvWatchEntry): void;
  /** A key that is gone. */
  protected abstract onRemove(key: string): void;
  /** The initial values of a watch are all in. */
  protected abstract onLoaded(): void;

  /** Starts watching the bucket; idempotent. */
  start(): void {
    this.watch.start();
  }

  /** Stops watching; safe to call twice. */
  stop(): Promise<void> {
    return this.watch.stop();
  }

  /**
   * Ends the current watch and loads the bucket afresh, treating keys that vanished without a delete marker (a
   * stream purge, a restored backup, an expired entry) as removed. For operators who suspect a gap, and for tests.
   */
  resync(): void {
    this.watch.resync();
  }

  /** True once the initial values have been loaded. */
  isReady(): boolean {
    return this.watch.isReady();
  }

  /** True while a watch is open on the bucket. */
  isWatching(): boolean {
    return this.watch.isWatching();
  }

  /** Values skipped because they failed their schema. */
  protected skipped = 0;

  /**
   * Parses a value with its schema; a value that is not JSON or fails the schema is counted, logged with the paths
   * and messages only (a value may hold data that has no place in a log line) and skipped.
   */
  protected parseEntry<S extends z.ZodType>(schema: S, entry: KvWatchEntry, what: string): z.infer<S> | null {
    let raw: unknown;
    try {
      raw = JSON.parse(entry.string());
    } catch {
      this.skip(entry, [{ path: '(root)', message: 'not JSON' }], what);
      return null;
    }
    const parsed = schema.safeParse(raw);
    if (parsed.success) return parsed.data;
    this.skip(
      entry,
      parsed.error.issues.map((i) => ({ path: i.path.join('.') || '(root)', message: i.message })),
      what,
    );
    return null;
  }

  /** Counts and logs a value that cannot be used. */
  protected skip(entry: KvWatchEntry, issues: Array<{ path: string; message: string }>, what: string): void {
    this.skipped++;
    this.logger.warn({ key: entry.key, revision: entry.revision, issues }, `skipping an invalid ${what}`);
  }

  /** How many watches have been opened (re-watches after failures included). */
  protected get watches(): number {
    return this.watch.watches;
  }
}
