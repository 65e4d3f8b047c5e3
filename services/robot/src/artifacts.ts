import { Objm, type ObjectStore } from '@nats-io/obj';
import type { NatsConnection, Topology } from '@rpa/shared';

/** Where step artifacts (screenshots) go; the step output refers to them by key. */
export interface ArtifactStore {
  /** The key a step's artifact is stored under. */
  keyFor(sessionId: string, stepId: string, extension: string): string;
  put(key: string, bytes: Uint8Array, contentType: string): Promise<void>;
}

/** Artifacts in the NATS object store named by the topology. */
export class NatsArtifactStore implements ArtifactStore {
  private constructor(
    private readonly store: ObjectStore,
    private readonly topology: Topology,
  ) {}

  /** Opens the artifacts bucket, creating it when absent. */
  static async open(nc: NatsConnection, topology: Topology): Promise<NatsArtifactStore> {
    const store = await new Objm(nc).create(topology.artifactsBucket);
    return new NatsArtifactStore(store, topology);
  }

  keyFor(sessionId: string, stepId: string, extension: string): string {
    return this.topology.artifactKey(sessionId, stepId, extension);
  }

  async put(key: string, bytes: Uint8Array, contentType: string): Promise<void> {
    // A redelivered screenshot step overwrites its own key: the latest capture is the one its result refers to.
    await this.store.putBlob({ name: key, metadata: { 'content-type': contentType } }, bytes);
  }
}
