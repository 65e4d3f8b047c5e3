import { jetstreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { connectNats, silentLogger, Topology, type NatsConnection } from '@rpa/shared';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '@rpa/shared/testing';
import { heartbeat, putHeartbeat } from '../testing/robotFixtures.js';
import { RobotIndex, type RobotIndexOptions } from './robotIndex.js';

const T0 = Date.parse('2030-01-01T00:00:00.000Z');
const iso = (ms: number) => new Date(ms).toISOString();

describe('RobotIndex over a real robots bucket', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  const indexes: RobotIndex[] = [];

  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'robot-index-test');
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
    return { kv: await new Kvm(nc).create(topology.robotsBucket, topology.robotsBucketOptions()), topology };
  }

  /** An index whose clock the test moves: `clock.now` is epoch ms. */
  function startIndex(kv: KV, options: Partial<RobotIndexOptions> = {}) {
    const clock = { now: T0 };
    const index = new RobotIndex({ kv, logger: silentLogger, clock: () => new Date(clock.now), ...options });
    indexes.push(index);
    index.start();
    return { index, clock };
  }

  const statusOf = (index: RobotIndex, robotId: string) => index.get('acme', robotId)?.status;

  it('is ready at once on an empty bucket and lists nothing', async () => {
    const { kv } = await bucket();
    const { index } = startIndex(kv);
    await index.ready;
    expect(index.list('acme')).toEqual([]);
    expect(index.stats()).toMatchObject({ robots: 0, skipped: 0 });
  });

  it('a running robot is online while its beat is fresh, offline once it is not, and online again on a new beat', async () => {
    const { kv, topology } = await bucket();
    await putHeartbeat(kv, topology, heartbeat({ robotId: 'r1', at: iso(T0), ttlMs: 15_000 }));
    const { index, clock } = startIndex(kv);
    await index.ready;

    expect(index.get('acme', 'r1')).toMatchObject({
      robotId: 'r1',
      status: 'online',
      reportedStatus: 'running',
      lastSeenAt: iso(T0),
    });
    clock.now = T0 + 14_999;
    expect(statusOf(index, 'r1')).toBe('online');
    clock.now = T0 + 15_000;
    expect(statusOf(index, 'r1')).toBe('offline');
    expect(index.stats().byStatus).toEqual({ online: 0, offline: 1, stopping: 0, stopped: 0 });

    await putHeartbeat(kv, topology, heartbeat({ robotId: 'r1', at: iso(T0 + 20_000) }));
    await waitFor(() => statusOf(index, 'r1') === 'online', { description: 'r1 online again' });
    expect(index.get('acme', 'r1')?.lastSeenAt).toBe(iso(T0 + 20_000));
  });

  it('a stopping robot is stopping while it beats and offline when it goes quiet; a goodbye stays stopped', async () => {
    const { kv, topology } = await bucket();
    const { index, clock } = startIndex(kv);
    await index.ready;
    await putHeartbeat(kv, topology, heartbeat({ robotId: 'r1', at: iso(T0), status: 'stopping' }));
    await putHeartbeat(kv, topology, heartbeat({ robotId: 'r2', at: iso(T0), status: 'running' }));
    await waitFor(() => index.list('acme').length === 2, { description: 'both robots indexed' });
    expect(index.list('acme').map((r) => [r.robotId, r.status])).toEqual([
      ['r1', 'stopping'],
      ['r2', 'online'],
    ]);

    await putHeartbeat(kv, topology, heartbeat({ robotId: 'r2', at: iso(T0 + 1_000), status: 'stopped' }));
    await waitFor(() => statusOf(index, 'r2') === 'stopped', { description: 'r2 stopped' });
    clock.now = T0 + 3_600_000;
    expect(index.list('acme').map((r) => [r.robotId, r.status, r.reportedStatus])).toEqual([
      ['r1', 'offline', 'stopping'],
      ['r2', 'stopped', 'stopped'],
    ]);
  });

  it('a deleted entry is offline at once and forgotten after the retention period, like one purged unseen', async () => {
    const { kv, topology } = await bucket();
    for (const robotId of ['r1', 'r2', 'r3']) {
      await putHeartbeat(kv, topology, heartbeat({ robotId, at: iso(T0), ttlMs: 60_000 }));
    }
    const { index, clock } = startIndex(kv, { retentionMs: 3_600_000 });
    await index.ready;
    expect(index.stats().byStatus.online).toBe(3);

    clock.now = T0 + 10_000;
    await kv.delete(topology.robotKey('r1'));
    await waitFor(() => statusOf(index, 'r1') === 'offline', { description: 'r1 offline after delete' });
    expect(statusOf(index, 'r2')).toBe('online');

    // A purge leaves no marker for a watch to see; a fresh load notices the entry is gone.
    const jsm = await jetstreamManager(nc);
    await jsm.streams.purge(`KV_${topology.robotsBucket}`, { filter: `$KV.${topology.robotsBucket}.r2` });
    const watches = index.stats().watches;
    index.resync();
    await waitFor(() => index.stats().watches > watches && statusOf(index, 'r2') === 'offline', {
      description: 'r2 offline after resync',
    });

    // Retention counts from the last moment each robot was vouched for: r1 and r2 at their removal, r3 at expiry.
    clock.now = T0 + 10_000 + 3_600_000 - 1;
    expect(index.list('acme').map((r) => r.robotId)).toEqual(['r1', 'r2', 'r3']);
    clock.now = T0 + 60_000 + 3_600_000 - 1;
    expect(index.list('acme').map((r) => [r.robotId, r.status])).toEqual([['r3', 'offline']]);
    clock.now = T0 + 60_000 + 3_600_000;
    expect(index.list('acme')).toEqual([]);
    expect(index.get('acme', 'r3')).toBeUndefined();

    // A robot that comes back is listed again.
    await putHeartbeat(kv, topology, heartbeat({ robotId: 'r1', at: iso(clock.now) }));
    await waitFor(() => statusOf(index, 'r1') === 'online', { description: 'r1 back' });
  });

  it('skips invalid entries with a count, keeps the last valid beat, and keeps watching', async () => {
    const { kv, topology } = await bucket();
    await putHeartbeat(kv, topology, heartbeat({ robotId: 'good', at: iso(T0) }));
    await kv.put('broken', 'not json {');
    await kv.put('partial', JSON.stringify({ v: 1, robotId: 'partial' }));
    await kv.put('future-version', JSON.stringify({ ...heartbeat({ robotId: 'x', at: iso(T0) }), v: 2 }));
    // Filed under another robot's key: it would shadow that robot.
    await kv.put('victim', JSON.stringify(heartbeat({ robotId: 'intruder', at: iso(T0) })));
    await kv.put(
      'undated',
      JSON.stringify({ ...heartbeat({ robotId: 'undated', at: iso(T0) }), at: 'soon' }),
    );
    const { index } = startIndex(kv);
    await index.ready;

    expect(index.list('acme').map((r) => r.robotId)).toEqual(['good']);
    expect(index.stats().skipped).toBe(5);

    await kv.put('good', JSON.stringify({ robotId: 'good' }));
    await putHeartbeat(kv, topology, heartbeat({ robotId: 'later', at: iso(T0) }));
    await waitFor(() => index.get('acme', 'later'), { description: 'later indexed' });
    expect(index.stats().skipped).toBe(6);
    expect(index.get('acme', 'good')).toMatchObject({ status: 'online', lastSeenAt: iso(T0) });
  });

  it('shows each tenant only its own sessions on a robot', async () => {
    const { kv, topology } = await bucket();
    const sessions = [
      { sessionId: 'a1', tenantId: 'acme', epoch: 1 },
      { sessionId: 'g1', tenantId: 'globex', epoch: 2 },
      { sessionId: 'a2', tenantId: 'acme', epoch: 1 },
    ];
    await putHeartbeat(
      kv,
      topology,
      heartbeat({ robotId: 'r1', at: iso(T0), sessions, capacity: { maxSessions: 4, sessionsHeld: 3 } }),
    );
    const { index } = startIndex(kv);
    await index.ready;
    expect(index.get('acme', 'r1')?.sessions.map((s) => s.sessionId)).toEqual(['a1', 'a2']);
    expect(index.list('globex')[0]?.sessions).toEqual([{ sessionId: 'g1', tenantId: 'globex', epoch: 2 }]);
    expect(index.get('initech', 'r1')?.sessions).toEqual([]);
    expect(index.get('initech', 'r1')?.capacity).toEqual({ maxSessions: 4, sessionsHeld: 3 });
  });

  it('stays bounded: a robot new to a full index displaces the one heard from longest ago', async () => {
    const { kv, topology } = await bucket();
    await putHeartbeat(kv, topology, heartbeat({ robotId: 'old', at: iso(T0 - 60_000) }));
    await putHeartbeat(kv, topology, heartbeat({ robotId: 'mid', at: iso(T0 - 30_000) }));
    await putHeartbeat(kv, topology, heartbeat({ robotId: 'new', at: iso(T0) }));
    const { index } = startIndex(kv, { maxRobots: 2 });
    await index.ready;
    expect(index.list('acme').map((r) => r.robotId)).toEqual(['mid', 'new']);
    // A known robot's new beat displaces nobody.
    await putHeartbeat(kv, topology, heartbeat({ robotId: 'mid', at: iso(T0 + 1_000) }));
    await waitFor(() => index.get('acme', 'mid')?.lastSeenAt === iso(T0 + 1_000), {
      description: 'mid updated',
    });
    expect(index.list('acme').map((r) => r.robotId)).toEqual(['mid', 'new']);
  });

  it('stops cleanly, twice', async () => {
    const { kv } = await bucket();
    const { index } = startIndex(kv);
    await index.ready;
    await index.stop();
    await index.stop();
    expect(index.isWatching()).toBe(false);
  });
});
