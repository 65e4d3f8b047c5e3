import type { KV, KvWatchEntry } from '@nats-io/kv';
import { SessionDocument } from '@rpa/shared';
import { WatchedIndex, type WatchedIndexOptions } from './bucketWatch.js';
import type { ListingKey } from './listingOrder.js';
import { TenantListing, type ListingPage } from './tenantListing.js';

/** A change to the index, as feeds see it. */
export type SessionChange =
  { kind: 'upsert'; document: SessionDocument } | { kind: 'remove'; tenantId: string; sessionId: string };

export type SessionChangeListener = (change: SessionChange) => void;

export interface SessionIndexOptions extends WatchedIndexOptions {
  /** The sessions bucket (topology.sessionsBucket). */
  kv: KV;
}

interface Located {
  tenantId: string;
  sessionId: string;
}

/**
 * An in-memory index of the session documents in the sessions KV bucket, per tenant, kept current by a KV watch:
 * the last value of every key first (`ready` resolves once they are in), then every update and delete. A value
 * that fails the SessionDocument schema is logged and skipped. When the watch ends for any reason other than
 * `stop()`, the index watches again from the current values and drops keys that vanished meanwhile.
 */
export class SessionIndex extends WatchedIndex {
  private readonly tenants = new Map<string, TenantListing>();
  /** Which document each key holds, so that a delete (which carries no value) can be applied. */
  private readonly located = new Map<string, Located>();
  private readonly listeners = new Set<SessionChangeListener>();

  constructor(options: SessionIndexOptions) {
    super('sessions', options);
  }

  protected onPut(entry: KvWatchEntry): void {
    this.apply(entry);
  }

  protected onRemove(key: string): void {
    this.removeKey(key);
  }

  protected onLoaded(): void {
    this.logger.info({ sessions: this.stats().sessions }, 'sessions index loaded');
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

  /** Every document of a tenant, in no particular order. */
  *documents(tenantId: string): Generator<SessionDocument> {
    const listing = this.tenants.get(tenantId);
    if (listing) yield* listing.values();
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

  private apply(entry: KvWatchEntry): void {
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
    const parsed = this.parseEntry(SessionDocument, entry, 'session document');
    if (!parsed) return null;
    // The key is the tenant boundary: a document filed under another tenant's key must not be served to either.
    if (entry.key !== `${parsed.tenantId}.${parsed.sessionId}`) {
      this.skip(
        entry,
        [{ path: '(key)', message: 'key does not match the tenantId and sessionId inside' }],
        'session document',
      );
      return null;
    }
    return parsed;
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

  private emit(change: SessionChange): void {
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (error) {
        this.logger.error({ err: error }, 'session change listener failed');
      }
    }
  }
}
