import { afterAll, beforeAll } from 'vitest';
import { connectNats, type NatsConnection } from '../nats/connection.js';
import { Topology } from '../nats/topology.js';
import { startNatsServer, uniquePrefix, type NatsServerHandle } from '../testing/index.js';
import { eventStoreContract } from './contract.js';
import { JetStreamEventStore } from './jetstream.js';

let server: NatsServerHandle;
let nc: NatsConnection;
beforeAll(async () => {
  server = await startNatsServer();
  nc = await connectNats(server.url, 'jetstream-contract-test');
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

// Every test gets its own prefix, hence its own events stream, on one shared server.
eventStoreContract('JetStreamEventStore', async () => {
  const store = await JetStreamEventStore.create(nc, new Topology(uniquePrefix()));
  return { store, dispose: () => store.close() };
});
