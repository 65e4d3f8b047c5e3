import { gzipSync } from 'node:zlib';
import { Kvm } from '@nats-io/kv';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SessionCommand } from '../commands/sessionCommands.js';
import { sessionStreamId } from '../events/codec.js';
import { JetStreamEventStore } from '../eventStore/jetstream.js';
import type { Logger } from '../logging/logger.js';
import { connectNats, type NatsConnection } from '../nats/connection.js';
import { Topology } from '../nats/topology.js';
import { startNatsServer, uniquePrefix, waitFor, type NatsServerHandle } from '../testing/index.js';
import { SessionCommandHandler } from './commandHandler.js';
import { SNAPSHOT_FORMAT, type SessionSnapshot } from './snapshot.js';
import { NatsSnapshotStore } from './snapshotNats.js';
import { stateHash } from './stateHash.js';

const SESSION = '0195e0c1-2f4a-7000-8000-0000000000a1';
const STREAM = sessionStreamId(SESSION);
const at = '2026-01-01T00:00:00.000Z';
const base = { sessionId: SESSION, tenantId: 't1', at, actor: { kind: 'api-key', id: 'key-1' } } as const;

const commands = (steps: number): SessionCommand[] => [
  { ...base, type: 'OpenSession', commandId: 'open', labels: {}, browser: {}, idleTimeoutMs: null },
  ...Array.from({ length: steps }, (_, i): SessionCommand => ({
    ...base,
    type: 'SubmitSteps',
    commandId: `submit-${i}`,
    steps: [{ stepId: `step-${i + 1}`, step: { action: 'click', selector: `#s${i + 1}` } }],
  })),
];

function recordingLogger(): Logger & { warnings: Array<{ obj: object; msg: string }> } {
  const warnings: Array<{ obj: object; msg: string }> = [];
  const logger = {
    warnings,
    debug: () => {},
    info: () => {},
    warn: (obj: object, msg?: string) => void warnings.push({ obj, msg: msg ?? '' }),
    error: () => {},
    child: () => logger,
  };
  return logger;
}

describe('NatsSnapshotStore on nats-server', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'snapshot-store-test');
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  /** A session of `steps` steps in the JetStream event store, and the snapshot of its end. */
  async function session(topology: Topology, steps: number) {
    const store = await JetStreamEventStore.create(nc, topology);
    const handler = new SessionCommandHandler({ store });
    for (const command of commands(steps)) await handler.handle(command);
    const loaded = await handler.load(SESSION);
    const snapshot: SessionSnapshot = { v: SNAPSHOT_FORMAT, streamId: STREAM, ...loaded };
    return { store, snapshot };
  }

  it('keeps the newest snapshot per stream in a bucket with history 1, and reads it back', async () => {
    const topology = new Topology(uniquePrefix());
    const snapshots = await NatsSnapshotStore.open(nc, topology);
    const { store, snapshot } = await session(topology, 3);
    expect(await snapshots.get(STREAM)).toBeNull();

    const older = { ...snapshot, version: 1 };
    await snapshots.put(older);
    await snapshots.put(snapshot);
    expect(await snapshots.get(STREAM)).toEqual(snapshot);

    const kv = await new Kvm(nc).open(topology.snapshotsBucket);
    const status = await kv.status();
    expect(status.history).toBe(1);
    expect(status.ttl).toBe(topology.snapshotsBucketOptions().ttl);
    const history = [];
    for await (const entry of await kv.history({ key: STREAM })) history.push(entry.revision);
    expect(history).toHaveLength(1);
    await store.close();
  });

  it('ignores, and reports, what is not a usable snapshot of the stream', async () => {
    const topology = new Topology(uniquePrefix());
    const logger = recordingLogger();
    const snapshots = await NatsSnapshotStore.open(nc, topology, { logger });
    const { store, snapshot } = await session(topology, 2);
    const kv = await new Kvm(nc).open(topology.snapshotsBucket);
    const stored = [
      'plain text',
      gzipSync(JSON.stringify({ ...snapshot, v: SNAPSHOT_FORMAT + 1 })),
      gzipSync(JSON.stringify({ ...snapshot, state: { ...snapshot.state, status: 'exploded' } })),
      gzipSync(JSON.stringify({ ...snapshot, streamId: 'session-other' })),
    ];
    for (const value of stored) {
      await kv.put(STREAM, value);
      expect(await snapshots.get(STREAM)).toBeNull();
    }
    expect(logger.warnings.map((w) => w.msg)).toEqual(stored.map(() => 'ignoring an unusable snapshot'));
    expect(logger.warnings.map((w) => (w.obj as { reason: string }).reason)).toEqual([
      'not gzip, or too large',
      `format ${SNAPSHOT_FORMAT + 1}`,
      'invalid fields state.status',
      'snapshot of another stream (session-other)',
    ]);
    await kv.delete(STREAM);
    expect(await snapshots.get(STREAM)).toBeNull();
    await store.close();
  });

  it('lets a new handler load a session from the snapshot another one wrote, to the same state', async () => {
    const topology = new Topology(uniquePrefix());
    const store = await JetStreamEventStore.create(nc, topology);
    // Opened lazily, as the robot wires it: the bucket appears on first use.
    const writer = new SessionCommandHandler({
      store,
      snapshots: NatsSnapshotStore.opening(nc, topology),
      snapshotEvery: 10,
    });
    for (const command of commands(25)) await writer.handle(command);
    const snapshots = await NatsSnapshotStore.open(nc, topology);
    const snapshot = await waitFor(async () => {
      const s = await snapshots.get(STREAM);
      return s && s.version >= 19 ? s : null;
    });
    expect(snapshot.version).toBeLessThanOrEqual(25);

    const fresh = await JetStreamEventStore.create(nc, topology);
    const reader = new SessionCommandHandler({ store: fresh, snapshots });
    const loaded = await reader.load(SESSION);
    const folded = await new SessionCommandHandler({ store: fresh }).load(SESSION);
    expect(loaded.version).toBe(25);
    expect(loaded.position).toBe(folded.position);
    expect(stateHash(loaded.state)).toBe(stateHash(folded.state));
    await fresh.close();
    await store.close();
  });
});
