import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectNats, silentLogger, Topology, type NatsConnection, type SessionDocument } from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';
import { putDocument, sessionDocument } from '../testing/sessionFixtures.js';
import { SessionIndex, type SessionChange } from './sessionIndex.js';
import type { ListingKey } from './listingOrder.js';

const STATUSES = ['open', 'closing', 'closed'] as const;

/** The order the API promises: createdAt descending, then sessionId ascending. */
function expectedOrder(docs: SessionDocument[]): string[] {
  return [...docs]
    .sort((a, b) =>
      a.createdAt === b.createdAt
        ? a.sessionId.localeCompare(b.sessionId)
        : Date.parse(b.createdAt) - Date.parse(a.createdAt),
    )
    .map((d) => d.sessionId);
}

function walk(
  index: SessionIndex,
  tenantId: string,
  options: { limit: number; status?: SessionDocument['status'] },
  between?: (page: number) => Promise<void>,
): Promise<string[]> {
  return (async () => {
    const seen: string[] = [];
    let after: ListingKey | undefined;
    for (let page = 0; page < 1_000; page++) {
      const result = index.list(tenantId, { ...options, after });
      expect(result.items.length).toBeLessThanOrEqual(options.limit);
      seen.push(...result.items.map((d) => d.sessionId));
      if (!result.nextKey) return seen;
      after = result.nextKey;
      await between?.(page);
    }
    throw new Error('listing did not end');
  })();
}

describe('SessionIndex over a real sessions bucket', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  const indexes: SessionIndex[] = [];

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'session-index-test');
  });
  afterEach(async () => {
    await Promise.all(indexes.splice(0).map((i) => i.stop()));
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  async function bucket(): Promise<{ kv: KV; topology: Topology }> {
    const topology = new Topology(uniquePrefix());
    return { kv: await new Kvm(nc).create(topology.sessionsBucket), topology };
  }

  function startIndex(kv: KV): SessionIndex {
    const index = new SessionIndex({ kv, logger: silentLogger });
    indexes.push(index);
    index.start();
    return index;
  }

  it('is ready at once on an empty bucket', async () => {
    const { kv } = await bucket();
    const index = startIndex(kv);
    await index.ready;
    expect(index.isReady()).toBe(true);
    expect(index.list('acme', { limit: 10 })).toEqual({ items: [], nextKey: null });
  });

  it('loads the current values before ready, skipping invalid ones without stopping', async () => {
    const { kv, topology } = await bucket();
    const docs = [1, 2, 3].map((n) => sessionDocument({ sessionId: `s${n}`, position: n }));
    for (const doc of docs) await putDocument(kv, topology, doc);
    // A newer value of s1 replaces the first one.
    await putDocument(kv, topology, { ...docs[0]!, status: 'closed', position: 9 });
    await kv.put('acme.broken', 'not json {');
    await kv.put('acme.invalid', JSON.stringify({ sessionId: 'invalid', tenantId: 'acme' }));
    // A document filed under another tenant's key is refused: the key is the tenant boundary.
    await kv.put('other.s9', JSON.stringify(sessionDocument({ sessionId: 's9', tenantId: 'acme' })));
    await kv.delete('acme.s3');

    const index = startIndex(kv);
    await index.ready;

    expect(index.get('acme', 's1')).toMatchObject({ status: 'closed', position: 9 });
    expect(index.get('acme', 's2')).toEqual(docs[1]);
    expect(index.get('acme', 's3')).toBeUndefined();
    expect(index.get('acme', 's9')).toBeUndefined();
    expect(index.get('other', 's9')).toBeUndefined();
    expect(index.stats()).toMatchObject({ sessions: 2, tenants: 1, skipped: 3 });

    // Still watching after the bad values.
    await putDocument(kv, topology, sessionDocument({ sessionId: 's4' }));
    await waitFor(() => index.get('acme', 's4'), { description: 's4 indexed' });
  });

  it('lists newest first with ties broken by id, filters by status, and pages without duplicates or gaps', async () => {
    const { kv, topology } = await bucket();
    const acme: SessionDocument[] = [];
    for (let n = 0; n < 30; n++) {
      acme.push(
        sessionDocument({
          sessionId: `s${String(n).padStart(2, '0')}`,
          // Ten distinct times, three sessions each: ties must be ordered by id.
          createdAt: new Date(Date.UTC(2030, 0, 1, 0, n % 10)).toISOString(),
          status: STATUSES[n % 3],
          position: n + 1,
        }),
      );
    }
    const other = [0, 1, 2].map((n) => sessionDocument({ sessionId: `o${n}`, tenantId: 'other' }));
    for (const doc of [...acme, ...other]) await putDocument(kv, topology, doc);
    const index = startIndex(kv);
    await index.ready;

    const all = await walk(index, 'acme', { limit: 4 });
    expect(all).toEqual(expectedOrder(acme));
    expect(new Set(all).size).toBe(30);

    const closed = await walk(index, 'acme', { limit: 3, status: 'closed' });
    expect(closed).toEqual(expectedOrder(acme.filter((d) => d.status === 'closed')));

    expect(await walk(index, 'other', { limit: 50 })).toEqual(expectedOrder(other));
    expect(index.list('nobody', { limit: 5 }).items).toEqual([]);
    // A full last page says so: no cursor to an empty page.
    expect(index.list('other', { limit: 3 }).nextKey).toBeNull();
  });

  it('serves every session that exists throughout a walk exactly once while others come and go', async () => {
    const { kv, topology } = await bucket();
    const stable = Array.from({ length: 20 }, (_, n) =>
      sessionDocument({
        sessionId: `s${String(n).padStart(2, '0')}`,
        createdAt: new Date(Date.UTC(2030, 0, 1, 0, n)).toISOString(),
      }),
    );
    const doomed = sessionDocument({ sessionId: 'doomed', createdAt: '2029-06-01T00:00:00.000Z' });
    for (const doc of [...stable, doomed]) await putDocument(kv, topology, doc);
    const index = startIndex(kv);
    await index.ready;

    const seen = await walk(index, 'acme', { limit: 6 }, async (page) => {
      if (page !== 0) return;
      const newest = sessionDocument({ sessionId: 'newest', createdAt: '2031-01-01T00:00:00.000Z' });
      const oldest = sessionDocument({ sessionId: 'oldest', createdAt: '2001-01-01T00:00:00.000Z' });
      await putDocument(kv, topology, newest);
      await putDocument(kv, topology, oldest);
      await kv.delete(topology.sessionKey('acme', 'doomed'));
      await waitFor(() => index.get('acme', 'oldest') && !index.get('acme', 'doomed'), {
        description: 'changes indexed',
      });
    });

    expect(new Set(seen).size).toBe(seen.length);
    for (const doc of stable) expect(seen).toContain(doc.sessionId);
    // Behind the cursor when it arrived: not served. Ahead of it: served.
    expect(seen).not.toContain('newest');
    expect(seen).toContain('oldest');
    expect(seen).not.toContain('doomed');
  });

  it('announces updates and deletes to subscribers, and a resync drops keys purged without a trace', async () => {
    const { kv, topology } = await bucket();
    await putDocument(kv, topology, sessionDocument({ sessionId: 'a', position: 1 }));
    await putDocument(kv, topology, sessionDocument({ sessionId: 'b', position: 2 }));
    const index = startIndex(kv);
    const changes: SessionChange[] = [];
    index.subscribe((c) => changes.push(c));
    await index.ready;
    expect(changes.map((c) => c.kind === 'upsert' && c.document.sessionId)).toEqual(['a', 'b']);

    await putDocument(kv, topology, sessionDocument({ sessionId: 'a', status: 'closing', position: 3 }));
    await kv.delete(topology.sessionKey('acme', 'b'));
    await waitFor(() => changes.length === 4, { description: 'update and delete announced' });
    expect(changes[2]).toMatchObject({ kind: 'upsert', document: { sessionId: 'a', status: 'closing' } });
    expect(changes[3]).toEqual({ kind: 'remove', tenantId: 'acme', sessionId: 'b' });

    // A stream purge leaves no delete marker for a watch to see; only a fresh load notices.
    await putDocument(kv, topology, sessionDocument({ sessionId: 'c', position: 4 }));
    await waitFor(() => index.get('acme', 'c'), { description: 'c indexed' });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.purge(`KV_${topology.sessionsBucket}`, {
      filter: `$KV.${topology.sessionsBucket}.acme.c`,
    });
    const watchesBefore = index.stats().watches;
    const before = changes.length;
    index.resync();
    await waitFor(() => index.stats().watches > watchesBefore && !index.get('acme', 'c'), {
      description: 'c dropped by the resync',
    });
    // Unchanged documents are not announced again; only the vanished one is.
    expect(changes.slice(before)).toEqual([{ kind: 'remove', tenantId: 'acme', sessionId: 'c' }]);
    expect(index.get('acme', 'a')).toMatchObject({ status: 'closing' });

    // And the new watch is live.
    await putDocument(kv, topology, sessionDocument({ sessionId: 'd', position: 5 }));
    await waitFor(() => index.get('acme', 'd'), { description: 'd indexed after resync' });
  });

  it('stops cleanly, twice', async () => {
    const { kv } = await bucket();
    const index = startIndex(kv);
    await index.ready;
    await index.stop();
    await index.stop();
    expect(index.isWatching()).toBe(false);
  });
});
