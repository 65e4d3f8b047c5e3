import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../logging/logger.js';
import type { Topology } from '../nats/topology.js';
import { decodeSnapshot, encodeSnapshot, type SessionSnapshot, type SnapshotStore } from './snapshot.js';

/** Session snapshots in the NATS KV bucket the topology names, keyed by stream id, newest only. */
export class NatsSnapshotStore implements SnapshotStore {
  private constructor(
    private readonly kv: KV,
    private readonly logger: Logger | undefined,
  ) {}

  /** Opens the snapshots bucket, creating it when absent. */
  static async open(
    nc: NatsConnection,
    topology: Topology,
    options: { logger?: Logger } = {},
  ): Promise<NatsSnapshotStore> {
    const kv = await new Kvm(nc).create(topology.snapshotsBucket, {
      ...topology.snapshotsBucketOptions(),
      description: 'folded session state by stream, so that loading a session reads only its newest events',
    });
    return new NatsSnapshotStore(kv, options.logger);
  }

  /**
   * A store that opens the bucket on first use, for wiring that cannot wait for it; a failed opening is tried
   * again on the next use.
   */
  static opening(nc: NatsConnection, topology: Topology, options: { logger?: Logger } = {}): SnapshotStore {
    let opened: Promise<NatsSnapshotStore> | null = null;
    const store = () =>
      (opened ??= NatsSnapshotStore.open(nc, topology, options).catch((error: unknown) => {
        opened = null;
        throw error;
      }));
    return {
      get: async (streamId) => (await store()).get(streamId),
      put: async (snapshot) => (await store()).put(snapshot),
    };
  }

  async get(streamId: string): Promise<SessionSnapshot | null> {
    const entry = await this.kv.get(streamId);
    if (!entry || entry.operation !== 'PUT') return null;
    const reading = await decodeSnapshot(entry.value, streamId);
    if (reading.ok) return reading.snapshot;
    this.logger?.warn(
      { streamId, revision: entry.revision, reason: reading.reason },
      'ignoring an unusable snapshot',
    );
    return null;
  }

  async put(snapshot: SessionSnapshot): Promise<void> {
    await this.kv.put(snapshot.streamId, await encodeSnapshot(snapshot));
  }
}
