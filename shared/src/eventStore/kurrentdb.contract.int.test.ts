import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { uniquePrefix } from '../testing/index.js';
import { eventStoreContract } from './contract.js';
import { KurrentDbEventStore } from './kurrentdb.js';
import { KURRENTDB_IMAGE } from './kurrentdbImage.js';

/**
 * The shared contract against a real KurrentDB: the one at KURRENTDB_URL when set, else one started by
 * testcontainers when a Docker engine is reachable, else the suite is reported as skipped with its reason (no
 * KurrentDB server can run without one). Docker is detected from DOCKER_HOST or the default socket only, so that
 * the check costs nothing where there is no engine.
 */
const IMAGE = process.env.KURRENTDB_IMAGE ?? KURRENTDB_IMAGE;
const configuredUrl = process.env.KURRENTDB_URL;
const dockerReachable = Boolean(process.env.DOCKER_HOST) || existsSync('/var/run/docker.sock');

if (!configuredUrl && !dockerReachable) {
  const reason =
    'KurrentDB contract suite: skipped — no KURRENTDB_URL and no Docker engine (DOCKER_HOST unset, /var/run/docker.sock absent)';
  console.log(reason);
  // Skipped on purpose, with the reason as the test's name: no KurrentDB server can run without one of the two.
  describe.skip('KurrentDbEventStore satisfies the event store contract', () => {
    it.skip(reason, () => {}); // reported as skipped, never passed: see the reason above
  });
} else {
  let url = configuredUrl ?? '';
  let stopContainer: (() => Promise<unknown>) | undefined;
  beforeAll(async () => {
    if (configuredUrl) return;
    const { KurrentDbContainer } = await import('@testcontainers/kurrentdb');
    const container = await new KurrentDbContainer(IMAGE).start();
    stopContainer = () => container.stop();
    url = container.getConnectionString();
  }, 180_000);
  afterAll(async () => {
    await stopContainer?.();
  });

  // Every test gets its own namespace, hence its own streams and its own view of $all, on one shared database.
  eventStoreContract('KurrentDbEventStore', async () => {
    const store = KurrentDbEventStore.connect(url, { namespace: uniquePrefix() });
    return { store, dispose: () => store.close() };
  });
}
