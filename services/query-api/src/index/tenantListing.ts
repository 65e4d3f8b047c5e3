import type { SessionDocument } from '@rpa/shared';
import { compareListingKeys, listingKeyOf, type ListingKey } from './listingOrder.js';

interface Listed {
  doc: SessionDocument;
  key: ListingKey;
}

/** One page of a listing, and the key to continue after (null on the last page). */
export interface ListingPage {
  items: SessionDocument[];
  nextKey: ListingKey | null;
}

/** The sessions of one tenant, by id and in listing order. */
export class TenantListing {
  private readonly byId = new Map<string, Listed>();
  /** Kept sorted by compareListingKeys: inserts and removals are a binary search and a splice. */
  private readonly ordered: Listed[] = [];

  get size(): number {
    return this.byId.size;
  }

  get(sessionId: string): SessionDocument | undefined {
    return this.byId.get(sessionId)?.doc;
  }

  *values(): Generator<SessionDocument> {
    for (const listed of this.byId.values()) yield listed.doc;
  }

  /** Inserts or replaces a document; its place in the order moves if its creation time did. */
  upsert(doc: SessionDocument): void {
    this.remove(doc.sessionId);
    const listed = { doc, key: listingKeyOf(doc) };
    this.ordered.splice(this.firstAfter(listed.key, true), 0, listed);
    this.byId.set(doc.sessionId, listed);
  }

  /** Removes a session; returns whether it was there. */
  remove(sessionId: string): boolean {
    const existing = this.byId.get(sessionId);
    if (!existing) return false;
    const at = this.firstAfter(existing.key, true);
    if (this.ordered[at] === existing) this.ordered.splice(at, 1);
    else this.ordered.splice(this.ordered.indexOf(existing), 1);
    this.byId.delete(sessionId);
    return true;
  }

  /** Up to `limit` documents after `after` (exclusive), optionally of one status. */
  page(options: { limit: number; after?: ListingKey | undefined; status?: string | undefined }): ListingPage {
    const items: SessionDocument[] = [];
    const start = options.after ? this.firstAfter(options.after, false) : 0;
    for (let i = start; i < this.ordered.length; i++) {
      const listed = this.ordered[i]!;
      if (options.status !== undefined && listed.doc.status !== options.status) continue;
      // A match beyond a full page proves there is a next page; the cursor is the last item served.
      if (items.length === options.limit) return { items, nextKey: listingKeyOf(items[items.length - 1]!) };
      items.push(listed.doc);
    }
    return { items, nextKey: null };
  }

  /** Index of the first entry not before `key` (inclusive) or strictly after it (exclusive). */
  private firstAfter(key: ListingKey, inclusive: boolean): number {
    let lo = 0;
    let hi = this.ordered.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      const c = compareListingKeys(this.ordered[mid]!.key, key);
      if (c < 0 || (!inclusive && c === 0)) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
