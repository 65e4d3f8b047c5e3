import type { KV } from '@nats-io/kv';
import { SessionDocument, type Topology } from '@rpa/shared';

/** A valid session document for tests; `overrides` replace top-level fields. */
export function sessionDocument(
  overrides: Partial<SessionDocument> & { sessionId: string },
): SessionDocument {
  const createdAt = overrides.createdAt ?? '2030-01-01T00:00:00.000Z';
  return SessionDocument.parse({
    tenantId: 'acme',
    status: 'open',
    robotId: null,
    epoch: 0,
    labels: { team: 'billing' },
    browser: { viewport: { width: 1280, height: 720 } },
    idleTimeoutMs: 60_000,
    createdAt,
    updatedAt: createdAt,
    closedAt: null,
    stepCounts: { total: 1, queued: 1, running: 0, succeeded: 0, failed: 0 },
    steps: [
      {
        stepId: 'step-1',
        seq: 1,
        action: 'navigate',
        replay: 'safe',
        status: 'queued',
        attempts: 0,
        output: null,
        error: null,
        submittedAt: createdAt,
        startedAt: null,
        finishedAt: null,
        durationMs: null,
      },
    ],
    version: 1,
    position: 1,
    ...overrides,
  });
}

/** Writes a document where the projector would: under `<tenant>.<sessionId>` in the sessions bucket. */
export async function putDocument(kv: KV, topology: Topology, doc: SessionDocument): Promise<number> {
  return kv.put(topology.sessionKey(doc.tenantId, doc.sessionId), JSON.stringify(doc));
}
