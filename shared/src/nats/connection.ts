import { connect, type NatsConnection, type ConnectionOptions } from '@nats-io/transport-node';

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
