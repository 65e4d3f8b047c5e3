import type { NatsConnection } from '@nats-io/transport-node';
import type { Logger } from '../logging/logger.js';
import type { Topology } from '../nats/topology.js';
import type {
  AllSubscription,
  AppendResult,
  EventStore,
  EventToAppend,
  ExpectedVersion,
  ReadStreamOptions,
  RecordedEvent,
  SubscribeOptions,
} from './port.js';

// PLACEHOLDER: being implemented; the public shape below is fixed.
export class JetStreamEventStore implements EventStore {
  private constructor(
    readonly nc: NatsConnection,
    readonly topology: Topology,
    readonly logger?: Logger,
  ) {}

  /** Ensures the events stream exists and returns a store on it. */
  static async create(
    nc: NatsConnection,
    topology: Topology,
    options: { logger?: Logger } = {},
  ): Promise<JetStreamEventStore> {
    return new JetStreamEventStore(nc, topology, options.logger);
  }
  append(
    _s: string,
    _e: readonly EventToAppend[],
    _o: { expectedVersion: ExpectedVersion },
  ): Promise<AppendResult> {
    throw new Error('not implemented');
  }
  readStream(_s: string, _o?: ReadStreamOptions): Promise<RecordedEvent[]> {
    throw new Error('not implemented');
  }
  subscribeToAll(_o: SubscribeOptions): AllSubscription {
    throw new Error('not implemented');
  }
  async ping(): Promise<void> {}
  async close(): Promise<void> {}
}
