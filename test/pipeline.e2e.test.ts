import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startNatsServer, uniquePrefix, type NatsServerHandle } from '@rpa/shared/testing';
import { startStack, type Stack } from '../scripts/lib/stack.js';
import { RpaClient, type FeedClient } from '../scripts/lib/client.js';
import {
  DEMO_HEADERS,
  DEMO_ORDERS,
  demoSteps,
  startDemoSite,
  type DemoSite,
} from '../scripts/demo/demoSite.js';

const finished = (status: string) => status === 'succeeded' || status === 'failed';

describe('the whole pipeline, services as processes', () => {
  let nats: NatsServerHandle;
  let stack: Stack;
  let site: DemoSite;
  let client: RpaClient;
  let feed: FeedClient;

  beforeAll(async () => {
    nats = await startNatsServer();
    site = await startDemoSite();
    stack = await startStack({
      natsUrl: nats.url,
      prefix: uniquePrefix('e'),
      robots: 1,
      logLevel: 'warn',
      egressAllow: [site.url],
    });
    client = new RpaClient(stack.commandApiUrl, stack.queryApiUrl, stack.apiKey);
    feed = await client.feed();
  });

  afterAll(async () => {
    await feed?.close();
    await stack?.stop();
    await site?.close();
    await nats?.stop();
  });

  it('runs a submitted session in Chromium and shows every step succeeding on the live feed', async () => {
    const { sessionId, version } = await client.openSession({
      labels: { suite: 'e2e' },
      browser: { viewport: { width: 1024, height: 768 } },
    });
    expect(version).toBe(0);
    feed.subscribeSession(sessionId);
    const steps = demoSteps(site.url);
    const accepted = await client.submitSteps(sessionId, steps);
    expect(accepted.steps.map((s) => s.seq)).toEqual(steps.map((_, i) => i + 1));

    const doc = await feed.waitFor(
      sessionId,
      (d) => d.steps.length === steps.length && d.steps.every((s) => finished(s.status)),
      90_000,
      'all steps',
    );
    expect(doc.steps.map((s) => [s.action, s.status])).toEqual(steps.map((s) => [s.action, 'succeeded']));
    expect(doc.robotId).toMatch(/^robot-1-/);
    expect(doc.steps.find((s) => s.action === 'extractText')?.output).toEqual({
      kind: 'text',
      text: 'Orders for Ada Lovelace',
    });
    expect(doc.steps.find((s) => s.action === 'extractTable')?.output).toEqual({
      kind: 'table',
      headers: [...DEMO_HEADERS],
      rows: DEMO_ORDERS.map((r) => [...r]),
    });
    const shot = doc.steps.find((s) => s.action === 'screenshot')?.output;
    expect(shot?.kind).toBe('artifact');
    if (shot?.kind !== 'artifact') return;
    const png = Buffer.from(
      await (
        await fetch(`${stack.queryApiUrl}/v1/artifacts/${shot.artifactKey}`, { headers: client.authHeaders })
      ).arrayBuffer(),
    );
    expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
    expect(png.length).toBe(shot.bytes);

    // The same document over plain HTTP.
    const fetched = await client.getSession(sessionId);
    expect(fetched.steps.find((s) => s.action === 'extractTable')?.output).toEqual(
      doc.steps.find((s) => s.action === 'extractTable')?.output,
    );

    // A step whose selector is missing fails for good at once (no retry can find it) and, by the session's default
    // policy, pauses the session: the next step waits until an operator resumes past the failure.
    const more = await client.submitSteps(sessionId, [
      { action: 'extractText', selector: '#no-such-element', timeoutMs: 1_000 },
      { action: 'extractText', selector: '#count' },
    ]);
    const [missing, next] = more.steps;
    const paused = await feed.waitFor(sessionId, (d) => d.status === 'paused', 60_000, 'the pause');
    const missingDoc = paused.steps.find((s) => s.stepId === missing!.stepId)!;
    expect(missingDoc.status).toBe('failed');
    expect(missingDoc.error?.code).toBe('SELECTOR_NOT_FOUND');
    expect(missingDoc.attempts).toBe(1);
    expect(missingDoc.deadLetter?.reason).toBe('not_retryable');
    expect(paused.pause).toMatchObject({ reason: 'step_failed', stepId: missing!.stepId });
    expect(paused.steps.find((s) => s.stepId === next!.stepId)?.status).toBe('queued');

    expect((await client.resumeSession(sessionId)).status).toBe('open');
    const after = await feed.waitFor(
      sessionId,
      (d) => finished(d.steps.find((s) => s.stepId === next!.stepId)?.status ?? 'queued'),
      60_000,
      'the step after the resume',
    );
    expect(after.steps.find((s) => s.stepId === next!.stepId)).toMatchObject({
      status: 'succeeded',
      output: { kind: 'text', text: '3 orders' },
    });

    await client.closeSession(sessionId);
    const closed = await feed.waitFor(sessionId, (d) => d.status === 'closed', 30_000, 'close');
    expect(closed.closedAt).not.toBeNull();

    // The stream holds exactly one result per step.
    const { events } = (await (
      await fetch(`${stack.queryApiUrl}/v1/sessions/${sessionId}/events`, { headers: client.authHeaders })
    ).json()) as { events: Array<{ type: string; data: { stepId?: string } }> };
    const results = events
      .filter((e) => e.type === 'StepSucceeded' || e.type === 'StepFailed')
      .map((e) => e.data.stepId);
    expect(results).toHaveLength(steps.length + 2);
    expect(new Set(results).size).toBe(results.length);
    expect(events.at(-1)?.type).toBe('SessionClosed');
  });

  it('refuses steps for a closed session with 409 and appends nothing', async () => {
    const { sessionId } = await client.openSession({});
    await client.closeSession(sessionId);
    const res = await fetch(`${stack.commandApiUrl}/v1/sessions/${sessionId}/steps`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...client.authHeaders },
      body: JSON.stringify({ steps: [{ action: 'click', selector: '#x' }] }),
    });
    expect(res.status).toBe(409);
    const { events } = (await (
      await fetch(`${stack.queryApiUrl}/v1/sessions/${sessionId}/events`, { headers: client.authHeaders })
    ).json()) as { events: Array<{ type: string }> };
    expect(events.map((e) => e.type)).not.toContain('StepSubmitted');
  });
});
