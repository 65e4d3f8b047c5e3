import type { Logger } from '../logging/logger.js';
import { decodeSnapshot, encodeSnapshot, type SessionSnapshot, type SnapshotStore } from './snapshot.js';

/**
 * Snapshots in memory, for unit tests of the command handler. They are kept as the bytes a real store would hold,
 * so that every read goes through the same validation.
 */
export class InMemorySnapshotStore implements SnapshotStore {
  private readonly stored = new Map<string, Uint8Array>();
  /** Snapshots put, in the order they were stored: what a test inspects. */
  readonly puts: SessionSnapshot[] = [];

  constructor(private readonly logger?: Logger) {}

  async get(streamId: string): Promise<SessionSnapshot | null> {
    const bytes = this.stored.get(streamId);
    if (!bytes) return null;
    const reading = await decodeSnapshot(bytes, streamId);
    if (reading.ok) return reading.snapshot;
    this.logger?.warn({ streamId, reason: reading.reason }, 'ignoring an unusable snapshot');
    return null;
  }

  async put(snapshot: SessionSnapshot): Promise<void> {
    this.stored.set(snapshot.streamId, await encodeSnapshot(snapshot));
    this.puts.push(snapshot);
  }

  /** Stores raw bytes under a stream id, as a corrupt or foreign writer might have. */
  putRaw(streamId: string, bytes: Uint8Array | string): void {
    this.stored.set(streamId, typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes);
  }
}
