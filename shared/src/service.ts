import type { z } from 'zod';
import { parseEnvOrExit } from './config/env.js';
import { openEventStore, type ServiceEnv } from './eventStore/factory.js';
import type { EventStore } from './eventStore/port.js';
import type { ReadinessCheck } from './http/ops.js';
import { closeAll } from './lifecycle.js';
import { createLogger, type Logger } from './logging/logger.js';
import { createMetricsRegistry, type Registry } from './metrics/metrics.js';
import { connectNats, logNatsStatus, type NatsConnection } from './nats/connection.js';
import { Topology } from './nats/topology.js';

type ServiceConfig = z.infer<z.ZodObject<typeof ServiceEnv>>;

/** What every service process starts with: its parsed environment and its connections. */
export interface ServiceContext<C extends ServiceConfig> {
  config: C;
  logger: Logger;
  topology: Topology;
  registry: Registry;
  nc: NatsConnection;
  store: EventStore;
  /** NATS answers a round trip and the event store answers a ping. */
  checks: ReadinessCheck[];
  /** Closes the event store, then drains NATS; call it last in a shutdown. */
  close(): Promise<void>;
}

/**
 * The start every entry file shares: parses the environment (a bad variable prints its name and exits 1),
 * creates the logger and metrics registry, connects to NATS (logging its status changes) and opens the
 * configured event store.
 */
export async function openServiceContext<S extends z.ZodObject>(
  service: string,
  schema: S,
  options: { connectionName?: (config: z.infer<S> & ServiceConfig) => string } = {},
): Promise<ServiceContext<z.infer<S> & ServiceConfig>> {
  // Every service schema spreads ServiceEnv, so these fields are always there.
  const config = parseEnvOrExit(service, schema) as z.infer<S> & ServiceConfig;
  const logger = createLogger({ name: service, level: config.LOG_LEVEL });
  const topology = new Topology(config.NATS_PREFIX);
  const registry = createMetricsRegistry(service);
  const nc = await connectNats(config.NATS_URL, options.connectionName?.(config) ?? service);
  logNatsStatus(nc, logger);
  const store = await openEventStore(config, { nc, topology, logger });
  return {
    config,
    logger,
    topology,
    registry,
    nc,
    store,
    checks: [
      {
        name: 'nats',
        check: async () => {
          await nc.flush();
        },
      },
      { name: 'eventStore', check: () => store.ping() },
    ],
    close: () =>
      closeAll(
        [
          ['event store', () => store.close()],
          ['nats', () => nc.drain()],
        ],
        logger,
      ),
  };
}
