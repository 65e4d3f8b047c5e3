import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  startNatsServer,
  startTestIssuer,
  testApiKey,
  uniquePrefix,
  waitFor,
  type NatsServerHandle,
  type TestIssuer,
} from '@rpa/shared/testing';
import type { SessionDocument } from '@rpa/shared';
import { startStack, type Stack } from '../scripts/lib/stack.js';
import { RpaClient, type FeedClient } from '../scripts/lib/client.js';

const A = 'tenant-a';
const B = 'tenant-b';
/** Sessions each tenant runs at once; both tenants' together fit the one robot's default capacity (4). */
const PER_TENANT = 2;

/** Bodies that pass validation, so that a cross-tenant call reaches the tenant check. Default `{}`. */
const VALID_BODIES: Record<string, unknown> = {
  'post /v1/sessions/{id}/steps': { steps: [{ action: 'screenshot' }] },
};

interface OpenApi {
  paths: Record<string, Record<string, unknown>>;
}

async function send(url: string, method: string, credential: string, body?: unknown) {
  const res = await fetch(url, {
    method: method.toUpperCase(),
    headers: {
      authorization: `Bearer ${credential}`,
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return { status: res.status, text: await res.text() };
}

/** The session a tenant ran: its id, its screenshot's artifact key and its last document. */
interface Ran {
  sessionId: string;
  artifactKey: string;
  doc: SessionDocument;
}

/** Opens a session, takes a screenshot in it and waits on the tenant's own feed until the step succeeded. */
async function runOne(client: RpaClient, feed: FeedClient, tenant: string, n: number): Promise<Ran> {
  const { sessionId } = await client.openSession({ labels: { tenant, n: String(n) } });
  await client.submitSteps(sessionId, [{ action: 'screenshot' }]);
  const doc = await feed.waitFor(
    sessionId,
    (d) => d.steps[0]?.status === 'succeeded',
    90_000,
    `the screenshot of ${tenant}`,
  );
  const output = doc.steps[0]!.output;
  if (output?.kind !== 'artifact') throw new Error(`no artifact: ${JSON.stringify(output)}`);
  return { sessionId, artifactKey: output.artifactKey, doc };
}

describe('two tenants on one stack, at once', () => {
  let nats: NatsServerHandle;
  let issuer: TestIssuer;
  let stack: Stack;
  let clientA: RpaClient;
  let clientB: RpaClient;
  let feedA: FeedClient;
  let feedB: FeedClient;
  /** Tenant B's JWT (through the issuer's JWKS), and a key of B's for the command API. */
  let bJwt: string;
  const bKey = testApiKey('b-operator', B, ['sessions:write', 'sessions:read', 'admin']);
  const ran: Record<string, Ran[]> = {};

  beforeAll(async () => {
    nats = await startNatsServer();
    issuer = await startTestIssuer();
    stack = await startStack({
      natsUrl: nats.url,
      prefix: uniquePrefix('ti'),
      robots: 1,
      logLevel: 'warn',
      tenant: A,
      apiKeys: [bKey.entry],
      env: { JWT_JWKS_URL: issuer.jwksUrl, JWT_ISSUER: issuer.issuer, JWT_AUDIENCE: issuer.audience },
    });
    bJwt = await issuer.token({
      sub: 'bob@tenant-b',
      tenant: B,
      scope: 'sessions:write sessions:read admin',
    });
    clientA = new RpaClient(stack.commandApiUrl, stack.queryApiUrl, stack.apiKey);
    clientB = new RpaClient(stack.commandApiUrl, stack.queryApiUrl, bJwt);
    [feedA, feedB] = await Promise.all([clientA.feed(), clientB.feed()]);
    feedA.subscribeAll();
    feedB.subscribeAll();
    await waitFor(
      () => [feedA, feedB].every((f) => f.frames.some((x) => (x as { type?: string }).type === 'subscribed')),
      { timeoutMs: 10_000, description: 'both feed subscriptions' },
    );

    // Both tenants work at the same time: sessions opened, run and read concurrently.
    const [a, b] = await Promise.all([
      Promise.all(Array.from({ length: PER_TENANT }, (_, n) => runOne(clientA, feedA, A, n))),
      Promise.all(Array.from({ length: PER_TENANT }, (_, n) => runOne(clientB, feedB, B, n))),
    ]);
    ran[A] = a;
    ran[B] = b;
  });

  afterAll(async () => {
    await feedA?.close();
    await feedB?.close();
    await stack?.stop();
    await issuer?.close();
    await nats?.stop();
  });

  it('answers 404 to the other tenant on every session route of both APIs, and changes nothing', async () => {
    // Every route each running API documents, so that a route added later is probed too.
    const described = async (base: string) => (await (await fetch(`${base}/openapi.json`)).json()) as OpenApi;
    const [commandApi, queryApi] = [await described(stack.commandApiUrl), await described(stack.queryApiUrl)];
    const pairs: Array<[string, Ran[], string]> = [
      [bJwt, ran[A]!, A],
      [bKey.key, ran[A]!, A],
      [stack.apiKey, ran[B]!, B],
    ];
    let probed = 0;
    for (const [credential, victims] of pairs) {
      for (const victim of victims) {
        const before = await (victim.doc.tenantId === A ? clientA : clientB).events(victim.sessionId);
        for (const [base, api] of [
          [stack.commandApiUrl, commandApi],
          [stack.queryApiUrl, queryApi],
        ] as const) {
          for (const [path, operations] of Object.entries(api.paths)) {
            if (!/\{(id|key)\}/.test(path) || path.startsWith('/v1/robots')) continue;
            for (const method of Object.keys(operations)) {
              const url = path
                .replace('{id}', victim.sessionId)
                .replace('{key}', victim.artifactKey)
                .replace('{stepId}', victim.doc.steps[0]!.stepId);
              const res = await send(
                `${base}${url}`,
                method,
                credential,
                method === 'get' ? undefined : (VALID_BODIES[`${method} ${path}`] ?? {}),
              );
              expect(res.status, `${method} ${path} of ${victim.doc.tenantId}`).toBe(404);
              probed += 1;
            }
          }
        }
        const after = await (victim.doc.tenantId === A ? clientA : clientB).events(victim.sessionId);
        expect(after.length).toBe(before.length);
      }
    }
    // open: steps, close, pause, resume, cancel, retry; query: session, events, artifact.
    expect(probed).toBeGreaterThanOrEqual(pairs.length * PER_TENANT * 9);
  });

  it("lists only the caller's own sessions, dead letters and robot assignments", async () => {
    for (const [client, own, other] of [
      [clientA, A, B],
      [clientB, B, A],
    ] as const) {
      const headers = client.authHeaders;
      const sessions = (await (
        await fetch(`${stack.queryApiUrl}/v1/sessions?limit=200`, { headers })
      ).json()) as {
        items: SessionDocument[];
      };
      expect(new Set(sessions.items.map((d) => d.tenantId))).toEqual(new Set([own]));
      expect(sessions.items.map((d) => d.sessionId).sort()).toEqual(ran[own]!.map((r) => r.sessionId).sort());
      for (const path of ['/v1/dead-letters', '/v1/robots']) {
        const text = await (await fetch(`${stack.queryApiUrl}${path}`, { headers })).text();
        for (const r of ran[other]!) expect(text, path).not.toContain(r.sessionId);
      }
      const fleet = await client.robots();
      expect(fleet.flatMap((r) => r.sessions).every((s) => s.tenantId === own)).toBe(true);
    }
  });

  it("serves each tenant its own artifacts, and never the other's", async () => {
    for (const [client, own, other] of [
      [clientA, A, B],
      [clientB, B, A],
    ] as const) {
      for (const r of ran[own]!) {
        const res = await fetch(`${stack.queryApiUrl}/v1/artifacts/${r.artifactKey}`, {
          headers: client.authHeaders,
        });
        expect(res.status).toBe(200);
        expect(
          Buffer.from(await res.arrayBuffer())
            .subarray(0, 4)
            .toString('hex'),
        ).toBe('89504e47');
      }
      for (const r of ran[other]!) {
        const res = await fetch(`${stack.queryApiUrl}/v1/artifacts/${r.artifactKey}`, {
          headers: client.authHeaders,
        });
        expect(res.status).toBe(404);
      }
    }
  });

  it("never delivered one tenant's documents on the other's feed, even when asked by id", async () => {
    feedB.send({ subscribe: { session: ran[A]![0]!.sessionId } });
    // A change to A's session after B asked for it by id: A sees it, B does not.
    await clientA.closeSession(ran[A]![0]!.sessionId);
    await feedA.waitFor(ran[A]![0]!.sessionId, (d) => d.status === 'closed', 30_000, 'the close');
    // B's own change, arriving after A's, proves B's connection was flowing meanwhile.
    await clientB.closeSession(ran[B]![0]!.sessionId);
    await feedB.waitFor(ran[B]![0]!.sessionId, (d) => d.status === 'closed', 30_000, "B's close");
    for (const [feed, own] of [
      [feedA, A],
      [feedB, B],
    ] as const) {
      const docs = feed.frames.filter((f) => (f as { type?: string }).type === 'session') as Array<{
        document: SessionDocument;
      }>;
      expect(docs.length).toBeGreaterThan(0);
      expect(new Set(docs.map((d) => d.document.tenantId))).toEqual(new Set([own]));
    }
    const otherIds = ran[A]!.map((r) => r.sessionId);
    expect(otherIds.some((id) => feedB.latest.has(id))).toBe(false);
  });

  it('records who issued each command: the key id, the JWT subject, the feed caller', async () => {
    const [a] = ran[A]!;
    const [, b] = ran[B]!;
    // A control over the feed, as B's JWT subject.
    feedB.send({ type: 'pause', sessionId: b!.sessionId, requestId: 'audit' });
    await waitFor(async () => (await clientB.events(b!.sessionId)).some((e) => e.type === 'SessionPaused'), {
      timeoutMs: 15_000,
      description: 'the pause from the feed',
    });
    await fetch(`${stack.commandApiUrl}/v1/sessions/${b!.sessionId}/resume`, {
      method: 'POST',
      headers: { authorization: `Bearer ${bKey.key}`, 'content-type': 'application/json' },
      body: '{}',
    });
    const eventsA = await clientA.events(a!.sessionId);
    const byType = (events: typeof eventsA, type: string) =>
      events.find((e) => e.type === type)?.metadata.actor as { kind: string; id: string } | undefined;
    expect(byType(eventsA, 'SessionOpened')).toEqual({
      kind: 'api-key',
      id: expect.stringMatching(/^stack-/),
    });
    expect(byType(eventsA, 'StepSubmitted')).toEqual(byType(eventsA, 'SessionOpened'));
    expect(byType(eventsA, 'StepSucceeded')?.kind).toBe('robot');
    const eventsB = await clientB.events(b!.sessionId);
    expect(byType(eventsB, 'SessionOpened')).toEqual({ kind: 'jwt', id: 'bob@tenant-b' });
    expect(byType(eventsB, 'SessionPaused')).toEqual({ kind: 'jwt', id: 'bob@tenant-b' });
    expect(byType(eventsB, 'SessionResumed')).toEqual({ kind: 'api-key', id: 'b-operator' });
    const stored = JSON.stringify([eventsA, eventsB]);
    for (const secret of [stack.apiKey, bJwt, bKey.key]) expect(stored).not.toContain(secret);
  });
});
