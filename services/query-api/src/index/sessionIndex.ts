import { KvWatchInclude, type KV, type KvWatchEntry } from '@nats-io/kv';
import { SessionDocument, type Logger } from '@rpa/shared';
import type { ListingKey } from './listingOrder.js';
import { TenantListing, type ListingPage } from './tenantListing.js';

/** A change to the index, as feeds see it. */
export type SessionChange =
  { kind: 'upsert'; document: SessionDocument } | { kind: 'remove'; tenantId: string; sessionId: string };

export type SessionChangeListener = (change: SessionChange) => void;

export interface SessionIndexOptions {
  /** The sessions bucket (topology.sessionsBucket). */
  kv: KV;
  logger: Logger;
  /** First delay before watching again after a watch ended unexpectedly; it doubles up to the maximum. */
  rewatchDelayMs?: number;
  maxRewatchDelayMs?: number;
}

interface Located {
  tenantId: string;
  sessionId: string;
}

type Watcher = Awaited<ReturnType<KV['watch']>>;

/**
 * An in-memory index of the session documents in the sessions KV bucket, per tenant, kept current by a KV watch:
 * the last value of every key first (`ready` resolves once they are in), then every update and delete. A value
 * that fails the SessionDocument schema is logged and skipped. When the watch ends for any reason other than
 * `stop()`, the index watches again from the current values and drops keys that vanished meanwhile.
 */
export class SessionIndex {
  /** Resolves once the initial values have been loaded. Never rejects. */
  readonly ready: Promise<void>;
  private markReady!: () => void;
  private loaded = false;
  private readonly kv: KV;
  private readonly logger: Logger;
  private readonly rewatchDelayMs: number;
  private readonly maxRewatchDelayMs: number;
  private readonly tenants = new Map<string, TenantListing>();
  /** KV revision last seen per key, so that a re-watch does not re-announce documents that did not change. */
  private readonly revisions = new Map<string, number>();
  /** Which document each key holds, so that a delete (which carries no value) can be applied. */
  private readonly located = new Map<string, Located>();
  private readonly listeners = new Set<SessionChangeListener>();
  private watcher: Watcher | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  private wake: (() => void) | null = null;
  private resyncRequested = false;
  private skipped = 0;
  private watches = 0;

  constructor(options: SessionIndexOptions) {
    this.kv = options.kv;
    this.logger = options.logger;
    this.rewatchDelayMs = options.rewatchDelayMs ?? 250;
    this.maxRewatchDelayMs = options.maxRewatchDelayMs ?? 5_000;
    this.ready = new Promise((resolve) => {
      this.markReady = resolve;
    });
  }

  /** Starts watching the bucket; idempotent. */
  start(): void {
    if (this.running || this.stopped) return;
    this.running = this.run();
  }

  /** Stops watching; safe to call twice. Listeners are kept but receive nothing more. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake?.();
    this.watcher?.stop();
    await this.running;
  }

  /**
   * Ends the current watch and loads the bucket afresh, dropping keys that vanished without a delete marker (a
   * stream purge, a restored backup). For operators who suspect a gap, and for tests of the re-watch path.
   */
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

  /** The document of a session, only within its tenant. */
  get(tenantId: string, sessionId: string): SessionDocument | undefined {
    return this.tenants.get(tenantId)?.get(sessionId);
  }

  /** A page of a tenant's sessions, newest first, after `after` (exclusive). */
  list(
    tenantId: string,
    options: {
      limit: number;
      after?: ListingKey | undefined;
      status?: SessionDocument['status'] | undefined;
    },
  ): ListingPage {
    return this.tenants.get(tenantId)?.page(options) ?? { items: [], nextKey: null };
  }

  /** A tenant's documents whose position is above `position`, oldest change first (for resuming feeds). */
  changedSince(tenantId: string, position: number): SessionDocument[] {
    const listing = this.tenants.get(tenantId);
    if (!listing) return [];
    const docs: SessionDocument[] = [];
    for (const doc of listing.values()) if (doc.position > position) docs.push(doc);
    return docs.sort((a, b) => a.position - b.position);
  }

  /** Calls `listener` synchronously on every change; returns the unsubscribe function. */
  subscribe(listener: SessionChangeListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  /** Counters for metrics. */
  stats(): { sessions: number; tenants: number; skipped: number; watches: number } {
    let sessions = 0;
    for (const listing of this.tenants.values()) sessions += listing.size;
    return { sessions, tenants: this.tenants.size, skipped: this.skipped, watches: this.watches };
  }

  private async run(): Promise<void> {
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
        if (!this.stopped) this.logger.warn({ delayMs: delay }, 'sessions watch ended; watching again');
      } catch (error) {
        if (!this.stopped)
          this.logger.warn({ err: error, delayMs: delay }, 'sessions watch failed; retrying');
      }
      if (this.stopped) break;
      await this.pause(delay);
      delay = Math.min(delay * 2, this.maxRewatchDelayMs);
    }
  }

  /** One watch, from the current values until the iterator ends. Returns whether the initial load completed. */
  private async watchOnce(): Promise<boolean> {
    const { values } = await this.kv.status();
    const watcher = await this.kv.watch({ include: KvWatchInclude.LastValue });
    if (this.stopped) {
      watcher.stop();
      return false;
    }
    this.watcher = watcher;
    this.watches++;
    const seen = new Set<string>();
    let loading = true;
    const finishLoad = () => {
      loading = false;
      this.dropUnseen(seen);
      if (!this.loaded) {
        this.loaded = true;
        this.markReady();
      }
      this.logger.info({ sessions: this.stats().sessions }, 'sessions index loaded');
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
      this.removeKey(entry.key);
      this.revisions.delete(entry.key);
      return;
    }
    const doc = this.parse(entry);
    if (!doc) return;
    let listing = this.tenants.get(doc.tenantId);
    if (!listing) {
      listing = new TenantListing();
      this.tenants.set(doc.tenantId, listing);
    }
    listing.upsert(doc);
    this.located.set(entry.key, { tenantId: doc.tenantId, sessionId: doc.sessionId });
    this.emit({ kind: 'upsert', document: doc });
  }

  private parse(entry: KvWatchEntry): SessionDocument | null {
    let raw: unknown;
    try {
      raw = JSON.parse(entry.string());
    } catch {
      this.skip(entry, [{ path: '(root)', message: 'not JSON' }]);
      return null;
    }
    const parsed = SessionDocument.safeParse(raw);
    if (!parsed.success) {
      this.skip(
        entry,
        parsed.error.issues.map((i) => ({ path: i.path.join('.') || '(root)', message: i.message })),
      );
      return null;
    }
    // The key is the tenant boundary: a document filed under another tenant's key must not be served to either.
    if (entry.key !== `${parsed.data.tenantId}.${parsed.data.sessionId}`) {
      this.skip(entry, [{ path: '(key)', message: 'key does not match the tenantId and sessionId inside' }]);
      return null;
    }
    return parsed.data;
  }

  private skip(entry: KvWatchEntry, issues: Array<{ path: string; message: string }>): void {
    this.skipped++;
    // Paths and messages only: a value might hold data that has no place in a log line.
    this.logger.warn(
      { key: entry.key, revision: entry.revision, issues },
      'skipping an invalid session document',
    );
  }

  private removeKey(key: string): void {
    const where = this.located.get(key);
    if (!where) return;
    this.located.delete(key);
    const listing = this.tenants.get(where.tenantId);
    if (!listing?.remove(where.sessionId)) return;
    if (listing.size === 0) this.tenants.delete(where.tenantId);
    this.emit({ kind: 'remove', tenantId: where.tenantId, sessionId: where.sessionId });
  }

  /** After a re-watch has loaded, keys it did not see were deleted and purged while nobody watched. */
  private dropUnseen(seen: Set<string>): void {
    for (const key of [...this.revisions.keys()]) {
      if (seen.has(key)) continue;
      this.revisions.delete(key);
      this.removeKey(key);
    }
  }

  private emit(change: SessionChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (error) {
        this.logger.error({ err: error }, 'session change listener failed');
      }
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
