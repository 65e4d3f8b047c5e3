import type { JetStreamManager } from '@nats-io/jetstream';
import { isNotFound, type Logger, type Topology } from '@rpa/shared';
import type { RestorePointStore } from './restorePoints.js';

export interface SessionCleanupDeps {
  jsm: JetStreamManager;
  topology: Topology;
  restorePoints: RestorePointStore;
  logger: Logger;
}

/**
 * Removes what a closed or cancelled session leaves in NATS: its step consumer, any messages left on its subject
 * (nothing will ever consume them) and its restore point. Best effort: each part is tried even when another fails.
 */
export async function cleanUpSession(
  deps: SessionCleanupDeps,
  sessionId: string,
  restorePointKey: string | null,
): Promise<void> {
  const { jsm, topology, restorePoints, logger } = deps;
  try {
    await jsm.consumers.delete(topology.workStream, topology.stepsConsumer(sessionId));
  } catch (error) {
    if (!isNotFound(error)) logger.warn({ err: error, sessionId }, 'deleting the step consumer failed');
  }
  try {
    await jsm.streams.purge(topology.workStream, { filter: topology.stepsSubject(sessionId) });
  } catch (error) {
    logger.warn({ err: error, sessionId }, 'purging the finished session subject failed');
  }
  if (restorePointKey) await deleteRestorePoint(restorePoints, restorePointKey, logger);
}

/** Deletes a restore point, logging rather than throwing: an orphan only costs space until it expires. */
export async function deleteRestorePoint(
  restorePoints: RestorePointStore,
  key: string,
  logger: Logger,
): Promise<void> {
  try {
    await restorePoints.delete(key);
  } catch (error) {
    logger.warn({ err: error, stateKey: key }, 'deleting a restore point failed; it expires on its own');
  }
}
