import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { connectNats, type SessionDocument, type StepSpec } from '@rpa/shared';
import {
  natsContents,
  startNatsServer,
  uniquePrefix,
  waitFor,
  type NatsServerHandle,
} from '@rpa/shared/testing';
import { startStack, type ServiceProcess, type Stack } from '../scripts/lib/stack.js';
import { robotOnline, RpaClient, type FeedClient, type SessionEventView } from '../scripts/lib/client.js';
import {
  chromiumOf,
  chromiumProcessesOf,
  freeze,
  isChromium,
  killTree,
  type Frozen,
  type ProcessInfo,
} from './support/processes.js';
import {
  SITE,
  startRecoverySite,
  type PortalCredentials,
  type RecoverySite,
} from './support/recoverySite.js';

// Short enough that a take-over happens within seconds, long enough that a busy robot on two cores keeps its work.
const ACK_WAIT_MS = 2_500;
const HEARTBEAT_INTERVAL_MS = 1_000;
const SLOW_MS = 4_000;
const PASSWORD = 'not-a-real-password';
/** The portal's credentials: the robots hold them as secrets; their values must appear nowhere. */
const PORTAL: PortalCredentials = {
  header: 'X-Portal-Token',
  token: `canary-token-${randomBytes(12).toString('hex')}`,
  cookie: 'portal',
  session: `canary-cookie-${randomBytes(12).toString('hex')}`,
};
/** Events a robot writes as the owner of an epoch. */
const OWNER_EVENTS = new Set([
  'StepStarted',
  'StepSucceeded',
  'StepFailed',
  'SessionCheckpointed',
  'SessionRecovered',
  'SessionNeedsAttention',
  'SessionClosed',
]);

const finished = (status: string) => status === 'succeeded' || status === 'failed';
const dataOf = (event: SessionEventView) =>
  event.data as { stepId?: string; robotId?: string; epoch?: number };

/** One pino line as `time level msg {fields}`, without the fields every line repeats. */
function shortLogLine(line: string): string {
  try {
    const fields = JSON.parse(line) as Record<string, unknown>;
    const { time, level, msg, err } = fields;
    for (const repeated of ['time', 'level', 'msg', 'err', 'service', 'name', 'robotId', 'hostname', 'pid'])
      delete fields[repeated];
    const error = (err as { message?: string } | undefined)?.message;
    const text = `${String(time).slice(11, 23)} ${String(level)} ${String(msg)} ${JSON.stringify(fields)}${error ? ` err=${error}` : ''}`;
    return text.length > 400 ? `${text.slice(0, 400)}…` : text;
  } catch {
    return line.slice(0, 400);
  }
}

function loginSteps(site: RecoverySite, user: string): StepSpec[] {
  return [
    { action: 'navigate', url: `${site.url}/login` },
    { action: 'fill', selector: SITE.login.user, value: user },
    { action: 'fill', selector: SITE.login.password, value: PASSWORD },
    // Leads to a new document (/app): the robot's automatic restore point.
    { action: 'click', selector: SITE.login.submit },
  ];
}

describe('crash recovery, robots as processes', () => {
  let nats: NatsServerHandle;
  let site: RecoverySite;
  let stack: Stack;
  let client: RpaClient;
  let feed: FeedClient;
  let logDir: string;
  const frozen = new Map<number, Frozen>();
  /** Robots killed with -9, with the Chromium processes they had. */
  const killed: Array<{ robotId: string; chromium: ProcessInfo[] }> = [];

  /** The last lines of every robot's output, shortened, appended to a failed wait so that the cause is shown. */
  function robotLogs(lines = 10): string {
    return stack.robots
      .map((r) => {
        const tail = r.recentOutput(lines).split('\n').map(shortLogLine).join('\n');
        return `--- ${r.name} (${r.running ? 'running' : 'exited'})\n${tail}`;
      })
      .join('\n');
  }

  async function explained<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      throw new Error(`${message}\nlogs in ${logDir}\n${robotLogs()}`, { cause: error });
    }
  }

  const live = () => stack.robots.filter((r) => r.running && !frozen.has(r.pid));

  /** Starts robots until `count` of them run and are not frozen. */
  async function ensureRobots(count: number): Promise<ServiceProcess[]> {
    for (let started = 0; live().length < count; started++) {
      if (started >= count) throw new Error(`started ${started} robots, yet only ${live().length} run`);
      await stack.addRobot();
    }
    return live();
  }

  function robotOf(doc: SessionDocument): ServiceProcess {
    const robot = doc.robotId ? stack.robotById(doc.robotId) : undefined;
    if (!robot) throw new Error(`session ${doc.sessionId} is owned by an unknown robot ${doc.robotId}`);
    return robot;
  }

  /**
   * kill -9 of robots and their Chromium, as the loss of their machines would do. Resolves once each robot's exit
   * is seen, so that it no longer counts as live; returns the Chromium processes it had.
   */
  async function crash(...robots: ServiceProcess[]): Promise<ProcessInfo[]> {
    const chromium: ProcessInfo[] = [];
    for (const robot of robots) {
      expect(chromiumOf(robot.pid).length, `${robot.name} runs Chromium`).toBeGreaterThan(0);
      const own = killTree(robot.pid).filter(isChromium);
      killed.push({ robotId: robot.robotId!, chromium: own });
      chromium.push(...own);
    }
    await explained(
      waitFor(() => robots.every((r) => !r.running), {
        timeoutMs: 10_000,
        description: 'the killed robots to exit',
      }),
    );
    return chromium;
  }

  async function openSession(label: string): Promise<string> {
    const { sessionId } = await client.openSession({ labels: { suite: 'recovery', test: label } });
    feed.subscribeSession(sessionId);
    return sessionId;
  }

  function waitDoc(sessionId: string, match: (d: SessionDocument) => boolean, ms: number, what: string) {
    return explained(feed.waitFor(sessionId, match, ms, what));
  }

  function waitSteps(sessionId: string, stepIds: readonly string[], ms: number, what: string) {
    return waitDoc(
      sessionId,
      (d) => stepIds.every((id) => finished(d.steps.find((s) => s.stepId === id)?.status ?? 'queued')),
      ms,
      what,
    );
  }

  /** Polls the session's events until `pick` finds what it looks for. */
  function waitEvents<T>(
    sessionId: string,
    pick: (events: SessionEventView[]) => T | undefined,
    timeoutMs: number,
    description: string,
  ): Promise<Exclude<T, false | null | undefined>> {
    return explained(
      waitFor(async () => pick(await client.events(sessionId)), { timeoutMs, intervalMs: 100, description }),
    );
  }

  function expectStepsSucceeded(doc: SessionDocument, stepIds: readonly string[]) {
    const statuses = stepIds.map((id) => {
      const step = doc.steps.find((s) => s.stepId === id);
      return [step?.seq, step?.action, step?.status, step?.error?.code ?? null];
    });
    expect(statuses.filter((s) => s[2] !== 'succeeded')).toEqual([]);
  }

  const textOf = (doc: SessionDocument, stepId: string | undefined) => {
    const output = doc.steps.find((s) => s.stepId === stepId)?.output;
    return output?.kind === 'text' ? output.text : undefined;
  };

  beforeAll(async () => {
    logDir = mkdtempSync(join(tmpdir(), 'rpa-recovery-e2e-'));
    process.stderr.write(`recovery e2e: service logs in ${logDir}\n`);
    nats = await startNatsServer();
    site = await startRecoverySite({ slowMs: SLOW_MS, portal: PORTAL });
    stack = await startStack({
      natsUrl: nats.url,
      prefix: uniquePrefix('rec'),
      robots: 2,
      logDir,
      egressAllow: [site.url],
      env: {
        ACK_WAIT_MS: String(ACK_WAIT_MS),
        HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_INTERVAL_MS),
        SHUTDOWN_GRACE_MS: '5000',
      },
      // Secrets `portal.token` and `portal.session`.
      robotEnv: { SECRET_PORTAL_TOKEN: PORTAL.token, SECRET_PORTAL_SESSION: PORTAL.session },
    });
    client = new RpaClient(stack.commandApiUrl, stack.queryApiUrl, stack.apiKey);
    feed = await client.feed();
  });

  afterAll(async () => {
    for (const f of frozen.values()) f.thaw();
    await feed?.close();
    await stack?.stop();
    await site?.close();
    await nats?.stop();
  });

  it('lists both robots online in the fleet view', async () => {
    const ids = stack.robots.map((r) => r.robotId!);
    const robots = await explained(
      waitFor(
        async () => {
          const fleet = await client.robots();
          return ids.every((id) => robotOnline(fleet.find((r) => r.robotId === id))) ? fleet : null;
        },
        { timeoutMs: 15_000, intervalMs: 200, description: 'both robots online in GET /v1/robots' },
      ),
    );
    expect(robots.filter((r) => ids.includes(r.robotId))).toHaveLength(2);
  });

  it('rebuilds login, storage and page memory on another robot after a kill -9 mid-step, replaying only the tail', async () => {
    await ensureRobots(2);
    site.setSlowMs(SLOW_MS);
    const sessionId = await openSession('kill');
    const specs: StepSpec[] = [
      ...loginSteps(site, 'ada'),
      { action: 'click', selector: SITE.app.save },
      { action: 'click', selector: SITE.app.increment },
      { action: 'click', selector: SITE.app.increment },
      { action: 'click', selector: SITE.app.slow, timeoutMs: 30_000 },
    ];
    const { steps } = await client.submitSteps(sessionId, specs);
    const submit = steps[3]!;
    const slow = steps[7]!;
    const running = await waitDoc(
      sessionId,
      (d) => d.steps.find((s) => s.stepId === slow.stepId)?.status === 'running',
      60_000,
      'the slow step running',
    );
    expect(running.steps.slice(0, 7).map((s) => s.status)).toEqual(Array(7).fill('succeeded'));
    const victim = robotOf(running);
    const claimedEpoch = running.epoch;
    const chromium = await crash(victim);
    // The slow work is what was interrupted; run again, it need not be slow.
    site.setSlowMs(100);

    const recovered = await waitEvents(
      sessionId,
      (events) => events.find((e) => e.type === 'SessionRecovered' && dataOf(e).epoch! > claimedEpoch),
      45_000,
      'SessionRecovered by the successor',
    );
    const recovery = recovered.data as {
      robotId: string;
      fromCheckpoint: { afterStepSeq: number } | null;
      replayedSteps: number;
      skippedSteps: number;
    };
    expect(recovery.robotId).not.toBe(victim.robotId);
    expect(recovery.fromCheckpoint?.afterStepSeq).toBe(submit.seq);
    expect(recovery.replayedSteps).toBe(3);
    expect(recovery.skippedSteps).toBe(0);

    const checks = await client.submitSteps(sessionId, [
      { action: 'extractText', selector: SITE.app.userName },
      { action: 'extractText', selector: SITE.app.itemsCount },
      { action: 'extractText', selector: SITE.app.counter },
      { action: 'extractText', selector: SITE.app.path },
      { action: 'extractText', selector: SITE.app.slowResult },
    ]);
    const all = [...steps, ...checks.steps].map((s) => s.stepId);
    const doc = await waitSteps(sessionId, all, 60_000, 'every step');
    expectStepsSucceeded(doc, all);
    const [user, items, counter, path, slowResult] = checks.steps.map((s) => textOf(doc, s.stepId));
    expect({ user, items, counter, path, slowResult }).toEqual({
      user: 'ada',
      items: '1',
      counter: '2',
      path: '/app',
      slowResult: 'done',
    });
    expect(doc.robotId).toBe(recovery.robotId);

    await client.closeSession(sessionId);
    await waitDoc(sessionId, (d) => d.status === 'closed', 30_000, 'closed');
    const events = await client.events(sessionId);
    const succeeded = events.filter((e) => e.type === 'StepSucceeded').map((e) => dataOf(e).stepId);
    expect(all.map((id) => succeeded.filter((s) => s === id).length)).toEqual(all.map(() => 1));
    expect(events.filter((e) => e.type === 'StepFailed')).toEqual([]);
    expect(events.at(-1)?.type).toBe('SessionClosed');

    await explained(
      waitFor(() => chromiumProcessesOf(chromium).length === 0, {
        timeoutMs: 60_000,
        intervalMs: 200,
        description: `no Chromium process of ${victim.name} alive`,
      }),
    );
  });

  it('shows the killed robot offline in the fleet view', async () => {
    const dead = killed[0];
    expect(dead, 'a robot was killed by the previous test').toBeDefined();
    const others = live().map((r) => r.robotId!);
    await explained(
      waitFor(
        async () => {
          const fleet = await client.robots();
          const deadOffline = !robotOnline(fleet.find((r) => r.robotId === dead!.robotId));
          return deadOffline && others.every((id) => robotOnline(fleet.find((r) => r.robotId === id)));
        },
        { timeoutMs: 30_000, intervalMs: 250, description: `${dead!.robotId} offline, the others online` },
      ),
    );
  });

  it('parks a session whose tail holds a step that must not run twice; resume skips it, cancel ends it', async () => {
    await ensureRobots(2);
    const users = ['bea', 'cyd'] as const;
    const sessions: Array<{ sessionId: string; user: string; pay: string }> = [];
    for (const user of users) {
      const sessionId = await openSession(`pay-${user}`);
      const { steps } = await client.submitSteps(sessionId, [
        ...loginSteps(site, user),
        { action: 'click', selector: SITE.app.pay, replay: 'never' },
      ]);
      sessions.push({ sessionId, user, pay: steps.at(-1)!.stepId });
    }
    const docs: SessionDocument[] = [];
    for (const s of sessions) docs.push(await waitSteps(s.sessionId, [s.pay], 60_000, 'the pay step'));
    for (const [i, s] of sessions.entries()) {
      expectStepsSucceeded(docs[i]!, [s.pay]);
      await explained(
        waitFor(() => site.payHits(s.user) === 1, { timeoutMs: 10_000, description: `${s.user} paid` }),
      );
    }
    // Both owners die (one robot or two); a survivor (or a fresh robot) takes the sessions over.
    const owners = new Map(docs.map((d) => [d.robotId!, robotOf(d)]));
    const chromium = await crash(...owners.values());
    await ensureRobots(1);

    for (const s of sessions) {
      const parked = await waitDoc(
        s.sessionId,
        (d) => d.status === 'needs_attention',
        45_000,
        'needs_attention',
      );
      expect(parked.attention?.code).toBe('UNSAFE_REPLAY');
      expect(parked.attention?.stepIds).toContain(s.pay);
      expect(site.payHits(s.user)).toBe(1);
    }
    const [resumed, cancelled] = sessions as [(typeof sessions)[0], (typeof sessions)[0]];
    const attention = (await client.events(resumed.sessionId)).find(
      (e) => e.type === 'SessionNeedsAttention',
    );
    expect((attention?.data as { code?: string } | undefined)?.code).toBe('UNSAFE_REPLAY');

    await client.resumeSession(resumed.sessionId);
    const recovered = await waitEvents(
      resumed.sessionId,
      (events) => {
        const at = events.findIndex((e) => e.type === 'SessionResumed');
        return at < 0 ? undefined : events.slice(at).find((e) => e.type === 'SessionRecovered');
      },
      45_000,
      'SessionRecovered after the resume',
    );
    expect((recovered.data as { skippedSteps: number }).skippedSteps).toBe(1);
    expect(site.payHits(resumed.user)).toBe(1);
    const more = await client.submitSteps(resumed.sessionId, [
      { action: 'extractText', selector: SITE.app.userName },
      { action: 'click', selector: SITE.app.save },
      { action: 'extractText', selector: SITE.app.itemsCount },
    ]);
    const ids = more.steps.map((s) => s.stepId);
    const after = await waitSteps(resumed.sessionId, ids, 60_000, 'the steps after the resume');
    expectStepsSucceeded(after, ids);
    expect([textOf(after, ids[0]), textOf(after, ids[2])]).toEqual([resumed.user, '1']);
    expect(site.payHits(resumed.user)).toBe(1);

    await client.cancelSession(cancelled.sessionId, 'operator declined');
    await waitDoc(cancelled.sessionId, (d) => d.status === 'cancelled', 30_000, 'cancelled');
    expect(site.payHits(cancelled.user)).toBe(1);

    await client.closeSession(resumed.sessionId);
    await waitDoc(resumed.sessionId, (d) => d.status === 'closed', 30_000, 'closed');
    await explained(
      waitFor(() => chromiumProcessesOf(chromium).length === 0, {
        timeoutMs: 60_000,
        intervalMs: 200,
        description: 'no Chromium process of the killed robots alive',
      }),
    );
  });

  it('sets again the headers and cookies from secrets that the restore point left out, after a kill -9', async () => {
    await ensureRobots(2);
    site.setSlowMs(SLOW_MS);
    const sessionId = await openSession('credentials');
    const { steps } = await client.submitSteps(sessionId, [
      {
        action: 'navigate',
        url: `${site.url}/portal`,
        headers: { [PORTAL.header]: { secret: 'portal.token' } },
        cookies: [{ name: PORTAL.cookie, secret: 'portal.session' }],
      },
      // A new document (/portal/next): the restore point recovery starts from.
      { action: 'click', selector: SITE.portal.next },
      // The page's own fetch of /portal/api needs the header as well.
      { action: 'waitFor', selector: `${SITE.portal.api}:text("api ok")` },
      { action: 'click', selector: SITE.portal.slow, timeoutMs: 30_000 },
    ]);
    const [login, next, , slow] = steps as [(typeof steps)[0], (typeof steps)[0], unknown, (typeof steps)[0]];
    const running = await waitDoc(
      sessionId,
      (d) => d.steps.find((s) => s.stepId === slow.stepId)?.status === 'running',
      60_000,
      'the slow step running',
    );
    expect(running.steps.slice(0, 3).map((s) => s.status)).toEqual(Array(3).fill('succeeded'));
    const portalPaths = site.portalRequests().map((r) => r.path);
    expect(portalPaths).toEqual(expect.arrayContaining(['/portal', '/portal/next', '/portal/api']));
    const before = site.portalRequests().length;
    const victim = robotOf(running);
    await crash(victim);
    site.setSlowMs(100);

    const recovered = await waitEvents(
      sessionId,
      (events) => events.find((e) => e.type === 'SessionRecovered' && dataOf(e).epoch! > running.epoch),
      45_000,
      'SessionRecovered by the successor',
    );
    const recovery = recovered.data as {
      robotId: string;
      fromCheckpoint: { afterStepSeq: number } | null;
      replayedSteps: number;
    };
    expect(recovery.robotId).not.toBe(victim.robotId);
    // The restore point is the one after the click, which holds neither the cookie nor the header.
    expect(recovery.fromCheckpoint?.afterStepSeq).toBe(next.seq);
    expect(recovery.replayedSteps).toBe(1);

    const checks = await client.submitSteps(sessionId, [
      { action: 'extractText', selector: SITE.portal.user },
      { action: 'extractText', selector: SITE.portal.api },
      { action: 'extractText', selector: SITE.portal.slowResult },
    ]);
    const all = [...steps, ...checks.steps].map((s) => s.stepId);
    const doc = await waitSteps(sessionId, all, 60_000, 'every step');
    expectStepsSucceeded(doc, all);
    expect(checks.steps.map((s) => textOf(doc, s.stepId))).toEqual(['alice', 'api ok', 'done']);
    // The successor reopened /portal/next and the page fetched /portal/api again, each with both credentials.
    const after = site.portalRequests().slice(before);
    expect(after.map((r) => r.path)).toEqual(expect.arrayContaining(['/portal/next', '/portal/api']));
    expect(site.portalRequests().filter((r) => !r.authorised)).toEqual([]);

    await client.closeSession(sessionId);
    await waitDoc(sessionId, (d) => d.status === 'closed', 30_000, 'closed');
    const events = await client.events(sessionId);
    // Each secret's use is on record: by the first owner with the navigate's result, by the successor as a replay.
    const uses = events
      .filter((e) => e.type === 'SecretUsed')
      .map((e) => e.data as { name: string; stepId: string; replay: boolean; robotId: string });
    expect(uses.filter((u) => u.stepId !== login.stepId)).toEqual([]);
    const byReplay = (replay: boolean, robotId: string) =>
      uses
        .filter((u) => u.replay === replay && u.robotId === robotId)
        .map((u) => u.name)
        .sort();
    expect(byReplay(false, victim.robotId!)).toEqual(['portal.session', 'portal.token']);
    expect(byReplay(true, recovery.robotId)).toEqual(['portal.session', 'portal.token']);

    // Neither value is in an event, the read model, anything NATS stores, a log line or a metric.
    const canaries = [PORTAL.token, PORTAL.session];
    const nc = await connectNats(nats.url, 'recovery-e2e-scan');
    try {
      const stored = await natsContents(await jetstreamManager(nc));
      expect(stored.text).toContain('portal.token');
      for (const canary of canaries) expect(stored.text).not.toContain(canary);
    } finally {
      await nc.close();
    }
    const logs = readdirSync(logDir)
      .map((name) => readFileSync(join(logDir, name), 'utf8'))
      .join('\n');
    expect(logs).toContain('session recovered');
    const metrics = await Promise.all(
      stack.services.filter((s) => s.running).map(async (s) => (await fetch(`${s.opsUrl}/metrics`)).text()),
    );
    expect(metrics.join('\n')).toContain('rpa_robot_recoveries');
    for (const canary of canaries) {
      expect(JSON.stringify(events)).not.toContain(canary);
      expect(JSON.stringify(await client.getSession(sessionId))).not.toContain(canary);
      expect(logs).not.toContain(canary);
      expect(metrics.join('\n')).not.toContain(canary);
    }
  });

  it('fences a robot frozen past its ack wait: one owner per epoch, nothing written with the old epoch', async () => {
    await ensureRobots(2);
    site.setSlowMs(SLOW_MS);
    const sessionId = await openSession('freeze');
    const { steps } = await client.submitSteps(sessionId, [
      ...loginSteps(site, 'dee'),
      { action: 'click', selector: SITE.app.save },
      { action: 'click', selector: SITE.app.slow, timeoutMs: 30_000 },
    ]);
    const slow = steps.at(-1)!;
    const running = await waitDoc(
      sessionId,
      (d) => d.steps.find((s) => s.stepId === slow.stepId)?.status === 'running',
      60_000,
      'the slow step running',
    );
    const sleeper = robotOf(running);
    const oldEpoch = running.epoch;
    const ice = freeze(sleeper.pid);
    frozen.set(sleeper.pid, ice);
    site.setSlowMs(100);
    let takeover: SessionEventView;
    try {
      takeover = await waitEvents(
        sessionId,
        (events) => events.find((e) => e.type === 'SessionClaimed' && dataOf(e).epoch === oldEpoch + 1),
        45_000,
        'SessionClaimed by another robot',
      );
    } finally {
      ice.thaw();
      frozen.delete(sleeper.pid);
    }
    expect(dataOf(takeover).robotId).not.toBe(sleeper.robotId);

    const check = await client.submitSteps(sessionId, [
      { action: 'extractText', selector: SITE.app.itemsCount },
    ]);
    const ids = [...steps, ...check.steps].map((s) => s.stepId);
    const doc = await waitSteps(sessionId, ids, 60_000, 'every step');
    expectStepsSucceeded(doc, ids);
    expect(textOf(doc, check.steps[0]!.stepId)).toBe('1');
    await client.closeSession(sessionId);
    await waitDoc(sessionId, (d) => d.status === 'closed', 30_000, 'closed');

    const events = await client.events(sessionId);
    const claims = new Map<number, string>();
    for (const e of events) if (e.type === 'SessionClaimed') claims.set(dataOf(e).epoch!, dataOf(e).robotId!);
    const owned = events.filter((e) => OWNER_EVENTS.has(e.type));
    expect(
      owned
        .filter((e) => claims.get(dataOf(e).epoch!) !== dataOf(e).robotId)
        .map((e) => [e.revision, e.type, dataOf(e).robotId, dataOf(e).epoch]),
    ).toEqual([]);
    const takeoverAt = events.findIndex((e) => e.eventId === takeover.eventId);
    expect(
      events
        .slice(takeoverAt + 1)
        .filter((e) => dataOf(e).epoch === oldEpoch)
        .map((e) => [e.revision, e.type]),
    ).toEqual([]);
    expect(events.at(-1)?.type).toBe('SessionClosed');
    expect(sleeper.running).toBe(true);
  });

  it('hands a held session over within 2 s of a SIGTERM', async () => {
    await ensureRobots(2);
    const sessionId = await openSession('sigterm');
    const { steps } = await client.submitSteps(sessionId, [{ action: 'navigate', url: `${site.url}/login` }]);
    const idle = await waitSteps(sessionId, [steps[0]!.stepId], 60_000, 'the first step');
    const leaving = robotOf(idle);
    const signalledAt = Date.now();
    leaving.kill('SIGTERM');
    const claimed = await waitEvents(
      sessionId,
      (events) => events.find((e) => e.type === 'SessionClaimed' && dataOf(e).epoch === idle.epoch + 1),
      // The deadline runs from the signal.
      Math.max(1, 2_000 - (Date.now() - signalledAt)),
      'SessionClaimed by another robot within 2 s of SIGTERM',
    );
    const successor = dataOf(claimed).robotId;
    expect(successor).not.toBe(leaving.robotId);

    const more = await client.submitSteps(sessionId, [
      { action: 'fill', selector: SITE.login.user, value: 'eve' },
      { action: 'extractText', selector: 'h1' },
    ]);
    const ids = more.steps.map((s) => s.stepId);
    const doc = await waitSteps(sessionId, ids, 60_000, 'the steps after the hand-over');
    expectStepsSucceeded(doc, ids);
    expect(textOf(doc, ids[1])).toBe('Sign in');
    const events = await client.events(sessionId);
    const ran = events.filter((e) => e.type === 'StepSucceeded' && ids.includes(dataOf(e).stepId!));
    expect(ran.map((e) => dataOf(e).robotId)).toEqual([successor, successor]);
    await client.closeSession(sessionId);
    await waitDoc(sessionId, (d) => d.status === 'closed', 30_000, 'closed');
    expect((await leaving.exited).code).toBe(0);
  });
});
