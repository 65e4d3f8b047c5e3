import { connect, type NatsConnection, type ConnectionOptions } from '@nats-io/transport-node';
import type { Logger } from '../logging/logger.js';

export type { NatsConnection };

/**
 * Connects to NATS the way every service should: async stack traces off (the client's biggest CPU cost),
 * reconnecting forever, with a name that shows in server monitoring.
 */
export async function connectNats(
  url: string,
  name: string,
  extra: Partial<ConnectionOptions> = {},
): Promise<NatsConnection> {
  return connect({
    servers: url.split(',').map((s) => s.trim()),
    name,
    noAsyncTraces: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    ...extra,
  });
}

/** Logs the connection's disconnects, reconnects and errors for as long as it lives. */
export function logNatsStatus(nc: NatsConnection, logger: Logger): void {
  void (async () => {
    for await (const status of nc.status()) {
      if (status.type === 'disconnect' || status.type === 'reconnect' || status.type === 'error')
        logger.warn({ nats: status.type }, 'NATS connection status changed');
    }
  })();
}
