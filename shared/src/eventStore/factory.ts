import { z } from 'zod';
import type { NatsConnection } from '@nats-io/transport-node';
import { ConfigError } from '../errors.js';
import { envFields } from '../config/env.js';
import type { Logger } from '../logging/logger.js';
import type { Topology } from '../nats/topology.js';
import type { EventStore } from './port.js';

/** Which event store a service talks to, from EVENT_STORE (and KURRENTDB_URL for KurrentDB). */
export const EventStoreEnv = {
  EVENT_STORE: z.enum(['jetstream', 'kurrentdb']).default('jetstream'),
  KURRENTDB_URL: z.string().optional(),
};

/**
 * The variables every service reads: where NATS is, the prefix of its streams and buckets, the log level, the
 * address to listen on and which event store to use. Each service spreads these into its own schema.
 */
export const ServiceEnv = {
  NATS_URL: envFields.natsUrl(),
  NATS_PREFIX: envFields.prefix(),
  LOG_LEVEL: envFields.logLevel(),
  HOST: envFields.host(),
  ...EventStoreEnv,
};

/**
 * Opens the configured event store. JetStream reuses the service's NATS connection; KurrentDB connects to
 * KURRENTDB_URL (a connection string such as kurrentdb://host:2113?tls=false) and must answer a ping first.
 */
export async function openEventStore(
  config: { EVENT_STORE: 'jetstream' | 'kurrentdb'; KURRENTDB_URL?: string | undefined },
  deps: { nc: NatsConnection; topology: Topology; logger: Logger },
): Promise<EventStore> {
  switch (config.EVENT_STORE) {
    case 'jetstream': {
      const { JetStreamEventStore } = await import('./jetstream.js');
      return JetStreamEventStore.create(deps.nc, deps.topology, { logger: deps.logger });
    }
    case 'kurrentdb': {
      if (!config.KURRENTDB_URL)
        throw new ConfigError('KURRENTDB_URL is required when EVENT_STORE=kurrentdb');
      const { KurrentDbEventStore } = await import('./kurrentdb.js');
      const store = KurrentDbEventStore.connect(config.KURRENTDB_URL, { logger: deps.logger });
      // Fail at start-up, not on the first command, when the database is unreachable.
      await store.ping().catch(async (error: unknown) => {
        await store.close();
        throw error;
      });
      return store;
    }
  }
}
