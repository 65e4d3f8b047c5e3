import { jetstreamManager } from '@nats-io/jetstream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, uniquePrefix, type NatsServerHandle } from '../testing/index.js';
import { connectNats, type NatsConnection } from './connection.js';
import { ensureWorkTopology, Topology } from './topology.js';

describe('work topology on a real nats-server', () => {
  let server: NatsServerHandle;
  let nc: NatsConnection;
  beforeAll(async () => {
    server = await startNatsServer();
    nc = await connectNats(server.url, 'topology-test');
  });
  afterAll(async () => {
    await nc?.close();
    await server?.stop();
  });

  it('creates the work stream and the assignments consumer with explicit delivery limits, idempotently', async () => {
    const topology = new Topology(uniquePrefix());
    await ensureWorkTopology(nc, topology, { ackWaitMs: 5_000, stepMaxDeliver: 3 });
    await ensureWorkTopology(nc, topology, { ackWaitMs: 7_000, stepMaxDeliver: 3 });
    const jsm = await jetstreamManager(nc);
    const info = await jsm.consumers.info(topology.workStream, topology.assignmentsConsumer);
    expect(info.config.ack_wait).toBe(7_000 * 1_000_000);
    expect(info.config.max_deliver).toBe(-1);
    expect(info.config.max_ack_pending).toBe(10_000);
    expect(info.config.filter_subject).toBe(topology.assignSubject);
  });
});
