import type { Consumer, JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import type { BrowserContext, Page } from 'playwright-core';
import {
  CommandRejectedError,
  decodeMessage,
  DEFAULT_STEP_TIMEOUT_MS,
  isTerminal,
  SessionWorkMessage,
  type NatsConnection,
  type ExpiryReason,
  type Logger,
  type RestorePointRef,
  type SessionState,
  type StepSpec,
  type StepState,
  type Topology,
  type WorkSettings,
} from '@rpa/shared';
import type { ArtifactStore } from './artifacts.js';
import { originOf, type Breakers } from './breakers.js';
import { BrowserUnavailableError, type RobotBrowser } from './browser.js';
import { isRestorableUrl, watchDocuments } from './documentBoundary.js';
import { ReportFailedError, RobotStoppingError, SessionLostError } from './errors.js';
import { ControlNotices } from './controlNotices.js';
import { startHeartbeat } from './heartbeat.js';
import type { RobotMetrics } from './metrics.js';
import { recoverSession, type ExistingSession, type NavigateSpec, type RecoveryDeps } from './recovery.js';
import type { Ownership, Reporter, StepCompletion } from './reporter.js';
import type { RestorePointStore, StorageState } from './restorePoints.js';
import { cleanUpSession, deleteRestorePoint } from './sessionCleanup.js';
import { pullOne } from './pull.js';
import { sleep } from './sleep.js';
import { executeStep, type StepRunOutcome } from './stepExecutor.js';
import { createStepContext } from './steps/context.js';
import { toStepFailure } from './steps/errors.js';
import { applyCredentials } from './steps/navigate.js';
import { noSecrets, StepSecrets, type SecretProvider } from './secrets/index.js';

/**
 * How a session's run ended. closed: done for good (closed, cancelled or expired); lost: another robot owns it; stopped: handed back; failed: gave
 * up for now; parked: it waits for an operator (resuming it offers it again).
 */
export type RunnerOutcome = 'closed' | 'lost' | 'stopped' | 'failed' | 'parked';

type StepWork = Extract<SessionWorkMessage, { kind: 'step' | 'retry' }>;

/** How one attempt at a step ended for the message in hand. */
type AttemptResult =
  /** Its result is in the stream for good (or already was). */
  | { kind: 'done'; status: 'succeeded' | 'failed' }
  /** It failed and is tried again after the decider's delay. */
  | { kind: 'retry'; delayMs: number }
  /** The session changed while the step was held (resumed): look at it again. */
  | { kind: 'again' }
  /** The session is over and cleaned up: the run ends. */
  | { kind: 'over'; outcome: RunnerOutcome };

/** Default interval at which a paused session's stream is re-read, in case a control notice was lost. */
export const DEFAULT_PAUSE_POLL_MS = 5_000;

/** Why and after how long of idleness a held session is to be expired. */
interface Expiry {
  reason: ExpiryReason;
  idleMs?: number;
}

export interface SessionRunnerDeps {
  js: JetStreamClient;
  jsm: JetStreamManager;
  topology: Topology;
  settings: WorkSettings;
  reporter: Reporter;
  browser: RobotBrowser;
  breakers: Breakers;
  artifacts: ArtifactStore;
  restorePoints: RestorePointStore;
  metrics: RobotMetrics;
  logger: Logger;
  /** How long one pull for the next message waits on the server; also bounds how late a stop is noticed. */
  pullExpiresMs: number;
  /** Interval of in-progress signals on the message being worked on. */
  heartbeatMs: number;
  /** Longest a session is held before it is expired with reason max_duration; 0: no limit. */
  maxSessionDurationMs: number;
  /** Milliseconds, for step durations. */
  clock: () => number;
  /** For the session's control notices (pause, resume, cancel); without it a paused step only polls. */
  nc?: NatsConnection;
  /** How often a step held in a paused session re-reads the stream. Default DEFAULT_PAUSE_POLL_MS. */
  pausePollMs?: number;
  /** Where the secrets steps name are read, at the moment of use; absent: such steps fail SECRET_NOT_FOUND. */
  secrets?: SecretProvider;
}

/** Pull failures in a row (NATS down, consumer gone) before the session is handed back. */
const MAX_PULL_FAILURES = 10;

/**
 * Runs one owned session: binds its durable step consumer, rebuilds the session's browser when another robot ran
 * it before (see recovery.ts), and consumes step, retry and close messages one at a time, in order. A step is acked
 * only after its result is in the stream; a step whose result is already there is acked without running again. After
 * a step that loaded a new document, and after a checkpoint step, a restore point is taken and recorded with the
 * step's result.
 *
 * Retries ride on JetStream redelivery: a failure the decider will retry naks the message with the recorded delay,
 * a final one terminates it; attempt numbers come from the stream, never from the delivery count. A message is
 * held (its in-progress signals go on) without starting its step while the target origin's breaker is open (no
 * attempt is spent; the first call after is the half-open probe) and while the session is paused. The session's
 * control notices wake a paused hold, and a cancellation interrupts the step in hand by closing its browser context.
 */
export class SessionRunner {
  private readonly stopController = new AbortController();
  private readonly abortController = new AbortController();
  /** Aborted when the session is found cancelled while a step is held or running. */
  private readonly cancelController = new AbortController();
  /** True while a step runs or waits for its origin's breaker: only then does a cancellation interrupt it. */
  private inStep = false;
  private readonly notices: ControlNotices;
  private readonly logger: Logger;
  private context: BrowserContext | null = null;
  private page: Page | null = null;
  /** The session's idle timeout, from its stream; null: it never expires for idleness. */
  private idleTimeoutMs: number | null = null;
  /** Clock time of the claim, and of the last activity (claim, recovery, a step arriving or finishing). */
  private heldSince = 0;
  private lastActivity = 0;
  /**
   * Per host, the names of the cookies the session's navigate steps set from secrets: restore points leave them
   * out, so that no secret value is ever stored. Recovery replays the navigate steps after its restore point, which
   * sets them again; one taken after such a navigate restores the session without them (and without the step's
   * headers): its later steps see the origin as a visitor without those credentials would.
   */
  private readonly secretCookies = new Map<string, Set<string>>();

  constructor(
    private readonly deps: SessionRunnerDeps,
    readonly owner: Ownership,
  ) {
    this.logger = deps.logger.child({ sessionId: owner.sessionId, epoch: owner.epoch });
    this.notices = new ControlNotices({
      nc: deps.nc,
      topology: deps.topology,
      sessionId: owner.sessionId,
      tenantId: owner.tenantId,
      logger: this.logger,
      onNotice: (notice) => {
        if (notice.event === 'SessionCancelled') void this.checkCancelled();
      },
    });
  }

  private get cancelled(): boolean {
    return this.cancelController.signal.aborted;
  }

  /**
   * On a cancellation notice while a step is held or running: confirmed by the stream, the step is interrupted at
   * once by closing the session's browser context (its browser calls reject).
   */
  private async checkCancelled(): Promise<void> {
    if (!this.inStep || this.cancelled) return;
    try {
      const { state } = await this.deps.reporter.loadOnce(this.owner.sessionId);
      if (state.status !== 'cancelled' || !this.inStep) return;
    } catch (error) {
      this.logger.warn({ err: error }, 'could not confirm a cancellation; the step goes on');
      return;
    }
    this.logger.info({}, 'session cancelled: interrupting the step in hand');
    this.cancelController.abort();
    await this.closeContext();
  }

  /** Finishes the message in hand, then ends the run with "stopped". */
  stop(): void {
    this.stopController.abort();
  }

  /** Ends the run now: the step in hand is interrupted and handed back unreported. */
  async abort(): Promise<void> {
    this.stopController.abort();
    this.abortController.abort();
    await this.closeContext();
  }

  private get stopping(): boolean {
    return this.stopController.signal.aborted;
  }

  /** Runs until the session closes, is lost or parked, or the runner is stopped. Never rejects. */
  async run(): Promise<RunnerOutcome> {
    try {
      this.heldSince = this.lastActivity = this.deps.clock();
      const consumer = await this.bindConsumer();
      this.notices.start();
      if ((await this.prepare()) === 'parked') return 'parked';
      this.lastActivity = this.deps.clock();
      let failures = 0;
      while (!this.stopping) {
        let msg: JsMsg | null;
        try {
          msg = await pullOne(consumer, this.deps.pullExpiresMs, this.stopController.signal);
          failures = 0;
        } catch (error) {
          // Another robot that took the cancel's assignment may have removed the consumer of the finished session.
          if (await this.sessionIsOver()) return await this.closeFinished();
          failures += 1;
          this.logger.warn({ err: error, failures }, 'pulling the next step failed');
          if (failures >= MAX_PULL_FAILURES) return 'failed';
          await sleep(Math.min(5_000, 250 * 2 ** failures), this.stopController.signal);
          continue;
        }
        if (!msg) {
          // Expiry is checked here, between pulls: a pull wakes at least every pullExpiresMs.
          const expiry = this.dueExpiry();
          if (expiry) {
            const outcome = await this.expire(expiry);
            if (outcome) return outcome;
          }
          continue;
        }
        this.lastActivity = this.deps.clock();
        if (this.stopping) {
          // Arrived as we stopped: hand it back at once rather than after its ack wait.
          msg.nak();
          break;
        }
        const outcome = await this.handle(msg);
        if (outcome) return outcome;
        this.lastActivity = this.deps.clock();
        // The step in hand always finishes first: a session held too long is expired between steps.
        const expiry = this.dueExpiry();
        if (expiry) {
          const expired = await this.expire(expiry);
          if (expired) return expired;
        }
      }
      return 'stopped';
    } catch (error) {
      if (error instanceof SessionLostError) {
        this.logger.warn({ reason: error.message }, 'session lost to another robot: stopping without acks');
        return 'lost';
      }
      if (error instanceof RobotStoppingError) return 'stopped';
      this.logger.error({ err: error }, 'session run failed');
      return 'failed';
    } finally {
      this.notices.stop();
      await this.closeContext();
    }
  }

  private async bindConsumer(): Promise<Consumer> {
    const { jsm, js, topology, settings } = this.deps;
    const config = topology.stepsConsumerConfig(this.owner.sessionId, settings);
    const name = topology.stepsConsumer(this.owner.sessionId);
    try {
      await jsm.consumers.add(topology.workStream, config);
    } catch (error) {
      // The consumer outlives robots: a previous owner created it, possibly with other settings.
      this.logger.debug({ err: error }, 'step consumer exists; updating it');
      await jsm.consumers.update(topology.workStream, name, config);
    }
    return js.consumers.get(topology.workStream, name);
  }

  /** Gets the session's page ready for new work, rebuilding it when the session ran elsewhere before. */
  private async prepare(): Promise<'ready' | 'parked'> {
    const { state } = await this.deps.reporter.load(this.owner.sessionId, this.abortController.signal);
    const session = this.assertOwner(state);
    // A session that is over needs no page: its steps are acked unrun and its close message ends the run.
    if (isTerminal(session)) return 'ready';
    if (session.status === 'needs_attention') return 'parked';
    this.idleTimeoutMs = session.idleTimeoutMs;
    const result = await recoverSession(this.recoveryDeps(session), this.owner, session);
    if (result.kind === 'parked') {
      await this.closeContext();
      return 'parked';
    }
    return 'ready';
  }

  private recoveryDeps(session: ExistingSession): RecoveryDeps {
    const { reporter, restorePoints, metrics, clock } = this.deps;
    return {
      reporter,
      restorePoints,
      metrics,
      clock,
      logger: this.logger,
      signal: this.abortController.signal,
      // The session's own browser options, from its stream: a resumed session's assignment carries none.
      openPage: (storageState) => this.openPage(session, storageState),
      runStep: (stepId, step, page) => this.replay(stepId, step, page),
      setCredentials: (stepId, step, page) => this.setCredentials(stepId, step, page),
      assertCanContinue: () => {
        if (this.stopping || this.abortController.signal.aborted) throw new RobotStoppingError();
        if (!this.page || this.page.isClosed() || !this.deps.browser.connected)
          throw new BrowserUnavailableError('the session page is gone');
      },
    };
  }

  private async openPage(session: ExistingSession, storageState: StorageState | null): Promise<Page> {
    const { tenantId, sessionId } = this.owner;
    const context = await this.deps.browser.newContext(session.browser, storageState, {
      tenantId,
      sessionId,
    });
    this.context = context;
    const page = await context.newPage();
    this.page = page;
    return page;
  }

  /** The session as loaded, provided this robot still owns it at its epoch; SessionLostError otherwise. */
  private assertOwner(state: SessionState): ExistingSession {
    const { robotId, epoch, sessionId } = this.owner;
    if (state.status === 'none' || state.owner?.robotId !== robotId || state.epoch !== epoch) {
      const now = state.status === 'none' ? 'none' : `${state.owner?.robotId ?? 'nobody'}@${state.epoch}`;
      throw new SessionLostError(sessionId, `the session is owned by ${now}, not ${robotId}@${epoch}`);
    }
    return state;
  }

  /** Handles one message; returns an outcome when the run must end. */
  private async handle(msg: JsMsg): Promise<RunnerOutcome | null> {
    let work: SessionWorkMessage;
    try {
      work = decodeMessage(SessionWorkMessage, msg.data);
    } catch (error) {
      this.logger.error({ err: error, seq: msg.seq }, 'undecodable session message: terminated');
      msg.term();
      return null;
    }
    if (work.sessionId !== this.owner.sessionId || work.tenantId !== this.owner.tenantId) {
      this.logger.error({ seq: msg.seq }, 'message for another session on this subject: terminated');
      msg.term();
      return null;
    }
    const stopHeartbeat = startHeartbeat(msg, this.deps.heartbeatMs);
    try {
      if (work.kind === 'close') return await this.close(msg);
      return await this.step(msg, work);
    } catch (error) {
      if (error instanceof SessionLostError) {
        this.logger.warn({ reason: error.message }, 'session lost to another robot: stopping without acks');
        return 'lost';
      }
      if (error instanceof RobotStoppingError) {
        msg.nak();
        return 'stopped';
      }
      if (error instanceof BrowserUnavailableError) {
        this.logger.error({ err: error }, 'browser unavailable: handing the session back');
        msg.nak();
        return 'failed';
      }
      if (error instanceof CommandRejectedError) {
        this.logger.error(
          { code: error.code, reason: error.message, seq: msg.seq },
          'report refused: terminated',
        );
        msg.term();
        return null;
      }
      if (error instanceof ReportFailedError) {
        this.logger.error({ err: error }, 'event store unavailable: handing the session back');
        return 'failed';
      }
      this.logger.error({ err: error, seq: msg.seq }, 'handling a session message failed');
      return 'failed';
    } finally {
      stopHeartbeat();
    }
  }

  /**
   * Handles a step or retry message. Before the step in hand, an earlier step an operator re-queued runs first (in
   * submission order). A retryable failure hands the message back to JetStream with the decider's delay; a final
   * one terminates it. Returns an outcome when the run must end (the session ended while the step was held).
   */
  private async step(msg: JsMsg, work: StepWork): Promise<RunnerOutcome | null> {
    const { reporter, metrics } = this.deps;
    const signal = this.abortController.signal;
    const log = this.logger.child({ stepId: work.stepId });
    for (;;) {
      // Read from the stream, not the cached fold: an operator may have re-queued an earlier step, or paused the
      // session, since this robot last looked; and only the stream says whether a redelivered step ran.
      const loaded = await reporter.load(this.owner.sessionId, signal);
      // Checked before any ack: a robot that lost the session (frozen past its ack wait) must not ack its successor's work.
      const session = this.assertOwner(loaded.state);
      const action = work.kind === 'step' ? work.step.action : session.steps[work.stepId]?.action;
      if (isTerminal(session)) {
        log.debug({ status: session.status }, 'session is over: step acked without running');
        msg.ack();
        if (action) metrics.stepHandled(action, 'skipped');
        return null;
      }
      const known = session.steps[work.stepId];
      if (known && isFinished(known)) {
        // Its result is the proof that it ran: a redelivery (lost ack, broker restart) must not run it again.
        log.debug({ status: known.status }, 'step already has a result: acked without running');
        msg.ack();
        metrics.stepHandled(known.action, 'skipped');
        return null;
      }
      const earlier = requeuedBefore(session, known?.seq ?? work.seq);
      const target = earlier ?? known;
      const spec =
        !earlier && work.kind === 'step' ? work.step : target ? await this.specOf(target) : undefined;
      if (!spec) {
        log.error({ kind: work.kind }, 'no spec for the step in the stream: terminated');
        msg.term();
        return null;
      }
      if (earlier) log.info({ earlier: earlier.stepId }, 'a re-queued earlier step runs first');
      const result = await this.attempt(
        msg,
        session,
        earlier?.stepId ?? work.stepId,
        spec,
        target?.seq ?? work.seq,
      );
      switch (result.kind) {
        case 'again':
          continue;
        case 'over':
          return result.outcome;
        case 'retry':
          // JetStream redelivers it after the delay; the redelivery runs the earliest runnable step again.
          msg.nak(result.delayMs);
          return null;
        case 'done':
          if (earlier) continue;
          if (result.status === 'succeeded') msg.ack();
          // The failure is final and recorded: redelivering would only fail again.
          else msg.term();
          return null;
      }
    }
  }

  /** The spec of a step as submitted, read from the stream. */
  private async specOf(step: StepState): Promise<StepSpec | undefined> {
    const specs = await this.deps.reporter.stepSpecs(
      this.owner.sessionId,
      [step],
      this.abortController.signal,
    );
    return specs.get(step.stepId);
  }

  /**
   * One attempt of one step: waits (unstarted, burning no attempt) while its origin's breaker is open, holds while
   * the session is paused, then starts, runs and reports it.
   */
  private async attempt(
    msg: JsMsg,
    session: ExistingSession,
    stepId: string,
    step: StepSpec,
    seq: number,
  ): Promise<AttemptResult> {
    const { reporter, metrics, clock, restorePoints, breakers } = this.deps;
    const signal = this.abortController.signal;
    const log = this.logger.child({ stepId, action: step.action });
    const page = this.page;
    if (!page || page.isClosed() || !this.deps.browser.connected)
      throw new BrowserUnavailableError('the session page is gone');
    const known = session.steps[stepId];

    const origin = originOf(step.action === 'navigate' ? step.url : page.url());
    const breaker = breakers.forOrigin(origin);
    if (breaker.state === 'open') {
      await reporter.reportWaiting(this.owner, { stepId, reason: 'ORIGIN_UNAVAILABLE', origin }, signal);
      log.warn({ origin }, 'target breaker open: step waits unstarted');
      this.inStep = true;
      try {
        await breaker.whenCallable(this.runSignal());
      } finally {
        this.inStep = false;
      }
      if (this.cancelled) return { kind: 'over', outcome: await this.finishCancelled(msg) };
      if (this.stopping) throw new RobotStoppingError();
    }

    let current: StepState | undefined;
    try {
      current = await reporter.startStep(this.owner, stepId, (known?.attempts ?? 0) + 1, signal);
    } catch (error) {
      if (error instanceof CommandRejectedError && error.code === 'SESSION_PAUSED')
        return this.holdWhilePaused(msg);
      throw error;
    }
    if (current && isFinished(current)) {
      log.debug({ status: current.status }, 'step already has a result: not run');
      metrics.stepHandled(step.action, 'skipped');
      return { kind: 'done', status: current.status === 'succeeded' ? 'succeeded' : 'failed' };
    }
    const attempt = Math.max(1, current?.attempts ?? (known?.attempts ?? 0) + 1);
    log.info({ attempt }, 'step started');
    const started = clock();
    const documents = watchDocuments(page);
    let outcome: StepRunOutcome | undefined;
    const secrets = this.stepSecrets(log);
    this.inStep = true;
    try {
      outcome = await this.execute(stepId, step, page, secrets);
    } catch (error) {
      if (!this.cancelled) throw error;
    } finally {
      this.inStep = false;
      documents.stop();
    }
    // Cancelled while it ran: its result is of no interest to anyone, and its browser context is gone.
    if (this.cancelled) return { kind: 'over', outcome: await this.finishCancelled(msg) };
    if (signal.aborted || !outcome) throw new RobotStoppingError();
    const durationMs = Math.max(0, clock() - started);
    const trigger =
      outcome.status !== 'succeeded'
        ? null
        : step.action === 'checkpoint'
          ? 'step'
          : documents.navigated
            ? 'document'
            : null;
    const checkpoint = trigger
      ? await this.takeRestorePoint(seq, trigger, started + (step.timeoutMs ?? DEFAULT_STEP_TIMEOUT_MS))
      : undefined;
    // Names only: each is recorded as SecretUsed in the same append as the result.
    const secretsUsed = secrets.used();
    let completion: StepCompletion;
    try {
      completion = await reporter.completeStep(
        this.owner,
        {
          stepId,
          attempt,
          durationMs,
          outcome,
          ...(checkpoint ? { checkpoint } : {}),
          ...(secretsUsed.length > 0 ? { secretsUsed } : {}),
        },
        signal,
      );
    } catch (error) {
      // Not recorded (as far as we know): nothing refers to it.
      if (checkpoint) await deleteRestorePoint(restorePoints, checkpoint.stateKey, log);
      throw error;
    }
    if (checkpoint) {
      metrics.restorePointTaken(checkpoint.trigger);
      log.debug({ stateKey: checkpoint.stateKey, trigger: checkpoint.trigger }, 'restore point recorded');
      // Recovery only ever starts from the newest restore point: the one it replaces is of no more use.
      const previous = session.checkpoint?.stateKey;
      if (previous && previous !== checkpoint.stateKey)
        await deleteRestorePoint(restorePoints, previous, log);
    }
    metrics.stepHandled(step.action, outcome.status, durationMs / 1_000);
    if (outcome.status === 'succeeded') {
      log.info({ durationMs, attempt }, 'step succeeded');
      return { kind: 'done', status: 'succeeded' };
    }
    const retryInMs = retryDelayOf(completion, stepId);
    if (retryInMs !== null) {
      log.info({ durationMs, attempt, code: outcome.error.code, retryInMs }, 'step failed: retried later');
      return { kind: 'retry', delayMs: retryInMs };
    }
    log.info({ durationMs, attempt, code: outcome.error.code }, 'step failed for good');
    return { kind: 'done', status: 'failed' };
  }

  /**
   * Holds the message of a step the paused session may not start (its in-progress signals go on) until a control
   * notice or a poll finds the session open again (look again), or over (cleaned up like a close). The session's
   * longest hold still applies: a paused session held too long expires.
   */
  private async holdWhilePaused(msg: JsMsg): Promise<AttemptResult> {
    const { reporter, clock, maxSessionDurationMs, pausePollMs } = this.deps;
    const signal = this.abortController.signal;
    this.logger.info({}, 'session paused: holding its next step');
    for (;;) {
      if (maxSessionDurationMs > 0 && clock() - this.heldSince > maxSessionDurationMs) {
        const outcome = await this.expire({ reason: 'max_duration' }, msg);
        if (outcome) return { kind: 'over', outcome };
      }
      const untilExpiry =
        maxSessionDurationMs > 0
          ? Math.max(1, this.heldSince + maxSessionDurationMs - clock() + 1)
          : Infinity;
      await this.notices.next(
        Math.min(pausePollMs ?? DEFAULT_PAUSE_POLL_MS, untilExpiry),
        this.stopController.signal,
      );
      if (this.stopping) throw new RobotStoppingError();
      const { state } = await reporter.load(this.owner.sessionId, signal);
      const session = this.assertOwner(state);
      if (isTerminal(session)) return { kind: 'over', outcome: await this.finishOver(msg, session) };
      if (session.status !== 'paused') {
        this.logger.info({ status: session.status }, 'session no longer paused: going on');
        return { kind: 'again' };
      }
    }
  }

  /** A signal that aborts when the run stops or the session is cancelled. */
  private runSignal(): AbortSignal {
    return AbortSignal.any([this.stopController.signal, this.cancelController.signal]);
  }

  /** Ends the run of a session cancelled while its step was held or running: nothing is reported. */
  private async finishCancelled(msg: JsMsg): Promise<RunnerOutcome> {
    const { state } = await this.deps.reporter.load(this.owner.sessionId, this.abortController.signal);
    const session = this.assertOwner(state);
    this.logger.info({}, 'session cancelled: the step in hand is abandoned');
    return this.finishOver(msg, session);
  }

  /** Closes the browser context, acks the message in hand and removes what the session left in NATS. */
  private async finishOver(msg: JsMsg, session: ExistingSession): Promise<RunnerOutcome> {
    const { jsm, topology, restorePoints } = this.deps;
    await this.closeContext();
    msg.ack();
    await cleanUpSession(
      { jsm, topology, restorePoints, logger: this.logger },
      this.owner.sessionId,
      session.checkpoint?.stateKey ?? null,
    );
    this.logger.info({ status: session.status }, 'session over: closed');
    return 'closed';
  }

  private execute(stepId: string, step: StepSpec, page: Page, secrets: StepSecrets): Promise<StepRunOutcome> {
    const { breakers, artifacts } = this.deps;
    // Before the step runs: a restore point taken after a failed or abandoned attempt leaves them out too.
    if (step.action === 'navigate') this.noteSecretCookies(step);
    return executeStep(
      { breakers, artifacts, logger: this.logger, secrets },
      { sessionId: this.owner.sessionId, stepId, step },
      page,
      this.runSignal(),
    );
  }

  /** Remembers the cookies a navigate step sets from secrets, so that restore points leave them out. */
  private noteSecretCookies(step: NavigateSpec): void {
    if (!step.cookies || step.cookies.length === 0) return;
    const host = new URL(step.url).hostname;
    const names = this.secretCookies.get(host) ?? new Set<string>();
    for (const cookie of step.cookies) names.add(cookie.name);
    this.secretCookies.set(host, names);
  }

  /**
   * Recovery: sets again on the rebuilt context the headers and cookies of a navigate step its restore point holds,
   * with the secrets read now, and records their use as a replay (whether it worked or not), as a replayed step's are.
   */
  private async setCredentials(stepId: string, step: NavigateSpec, page: Page): Promise<StepRunOutcome> {
    const log = this.logger.child({ stepId, action: step.action });
    const secrets = this.stepSecrets(log);
    this.noteSecretCookies(step);
    let outcome: StepRunOutcome;
    try {
      const ctx = createStepContext({
        page,
        sessionId: this.owner.sessionId,
        stepId,
        artifacts: this.deps.artifacts,
        secrets,
        timeoutMs: step.timeoutMs ?? DEFAULT_STEP_TIMEOUT_MS,
      });
      await applyCredentials(step, ctx);
      outcome = { status: 'succeeded', output: { kind: 'none' } };
    } catch (error) {
      outcome = { status: 'failed', error: toStepFailure(error, 'act').toStepError() };
    }
    const names = secrets.used();
    if (names.length > 0)
      await this.deps.reporter.recordSecretUse(this.owner, { stepId, names }, this.abortController.signal);
    return outcome;
  }

  /** The secrets of one attempt, read from the robot's provider at the moment a step uses them. */
  private stepSecrets(log: Logger): StepSecrets {
    return new StepSecrets(this.deps.secrets ?? noSecrets, log);
  }

  /**
   * A step replayed by recovery. Its result is in the stream already and is not reported again, so the secrets it
   * typed are recorded on their own (SecretUsed with `replay: true`), whether the replay worked or not.
   */
  private async replay(stepId: string, step: StepSpec, page: Page): Promise<StepRunOutcome> {
    const log = this.logger.child({ stepId, action: step.action });
    const secrets = this.stepSecrets(log);
    const outcome = await this.execute(stepId, step, page, secrets);
    const names = secrets.used();
    if (names.length > 0)
      await this.deps.reporter.recordSecretUse(this.owner, { stepId, names }, this.abortController.signal);
    return outcome;
  }

  /**
   * Stores the context's storage state and the page's URL as they are once the current document has loaded (within
   * the step's budget). Undefined when there is nothing restorable or storing failed: the step's result matters
   * more than its restore point, so it is reported either way.
   */
  private async takeRestorePoint(
    afterStepSeq: number,
    trigger: RestorePointRef['trigger'],
    deadline: number,
  ): Promise<RestorePointRef | undefined> {
    const { context, page } = this;
    if (!context || !page) return undefined;
    try {
      await page.waitForLoadState('load', { timeout: Math.max(1, deadline - this.deps.clock()) });
      const url = page.url();
      if (!isRestorableUrl(url)) return undefined;
      const storage = withoutSecretCookies(await context.storageState(), this.secretCookies);
      const stateKey = await this.deps.restorePoints.put(
        this.owner.sessionId,
        afterStepSeq,
        this.owner.epoch,
        storage,
      );
      return { stateKey, url, trigger };
    } catch (error) {
      this.logger.warn(
        { err: error, afterStepSeq, trigger },
        'taking a restore point failed: the step is reported without one',
      );
      return undefined;
    }
  }

  private async close(msg: JsMsg): Promise<RunnerOutcome> {
    const { reporter, jsm, topology, restorePoints } = this.deps;
    const signal = this.abortController.signal;
    const { state } = await reporter.load(this.owner.sessionId, signal);
    // On a cancelled session this confirms nothing new, but it still proves this robot is the owner.
    await reporter.confirmClose(this.owner, signal);
    await this.closeContext();
    msg.ack();
    const restorePointKey = state.status === 'none' ? null : (state.checkpoint?.stateKey ?? null);
    await cleanUpSession(
      { jsm, topology, restorePoints, logger: this.logger },
      this.owner.sessionId,
      restorePointKey,
    );
    this.logger.info({ status: state.status }, 'session closed');
    return 'closed';
  }

  /** The expiry now due: held past the maximum duration, or idle past the session's idle timeout; null if none. */
  private dueExpiry(): Expiry | null {
    const now = this.deps.clock();
    const max = this.deps.maxSessionDurationMs;
    if (max > 0 && now - this.heldSince > max) return { reason: 'max_duration' };
    const idleMs = Math.max(0, Math.round(now - this.lastActivity));
    if (this.idleTimeoutMs !== null && idleMs > this.idleTimeoutMs) return { reason: 'idle', idleMs };
    return null;
  }

  /**
   * Expires the session: records why, closes its browser context and removes what it left in NATS, like a close.
   * Null when the stream did not end the session (it needs an operator now): the run goes on.
   */
  private async expire(expiry: Expiry, held?: JsMsg): Promise<RunnerOutcome | null> {
    const { reporter, jsm, topology, restorePoints, clock } = this.deps;
    const signal = this.abortController.signal;
    await reporter.expireSession(this.owner, expiry, signal);
    const { state } = await reporter.load(this.owner.sessionId, signal);
    const session = this.assertOwner(state);
    if (!isTerminal(session)) {
      this.logger.warn({ status: session.status, ...expiry }, 'expiry recorded nothing: the session goes on');
      // Not due again at once: both limits count afresh.
      this.heldSince = this.lastActivity = clock();
      return null;
    }
    await this.closeContext();
    held?.ack();
    await cleanUpSession(
      { jsm, topology, restorePoints, logger: this.logger },
      this.owner.sessionId,
      session.checkpoint?.stateKey ?? null,
    );
    this.logger.info({ status: session.status, ...expiry }, 'session expired: closed');
    return 'closed';
  }

  /** True when the stream says the session is closed or cancelled (false when that cannot be read now). */
  private async sessionIsOver(): Promise<boolean> {
    try {
      const { state } = await this.deps.reporter.loadOnce(this.owner.sessionId);
      return isTerminal(state);
    } catch {
      return false;
    }
  }

  /** Ends the run of a session found finished without its close message: what it left behind goes. */
  private async closeFinished(): Promise<RunnerOutcome> {
    const { reporter, jsm, topology, restorePoints } = this.deps;
    const { state } = await reporter.load(this.owner.sessionId, this.abortController.signal);
    this.assertOwner(state);
    await this.closeContext();
    const restorePointKey = state.status === 'none' ? null : (state.checkpoint?.stateKey ?? null);
    await cleanUpSession(
      { jsm, topology, restorePoints, logger: this.logger },
      this.owner.sessionId,
      restorePointKey,
    );
    this.logger.info({ status: state.status }, 'session found finished: closed');
    return 'closed';
  }

  private async closeContext(): Promise<void> {
    const context = this.context;
    this.context = null;
    this.page = null;
    if (!context) return;
    try {
      await context.close();
    } catch (error) {
      this.logger.debug({ err: error }, 'closing the browser context failed (browser gone?)');
    }
  }
}

/** The storage state without the cookies set from secrets (by host and name; a cookie's domain may start with "."). */
function withoutSecretCookies(
  storage: StorageState,
  secretCookies: ReadonlyMap<string, ReadonlySet<string>>,
): StorageState {
  if (secretCookies.size === 0) return storage;
  const cookies = storage.cookies.filter(
    (cookie) => !secretCookies.get(cookie.domain.replace(/^\./, ''))?.has(cookie.name),
  );
  return { ...storage, cookies };
}

/** The earliest step before `seq` that an operator re-queued (it ran before and waits to run again), if any. */
function requeuedBefore(session: ExistingSession, seq: number): StepState | undefined {
  let earliest: StepState | undefined;
  for (const step of Object.values(session.steps)) {
    if (step.seq >= seq || step.status !== 'queued' || step.attempts === 0) continue;
    if (!earliest || step.seq < earliest.seq) earliest = step;
  }
  return earliest;
}

/** The delay before the step's next attempt as the decider recorded it; null when the failure is final. */
function retryDelayOf(completion: StepCompletion, stepId: string): number | null {
  for (const event of completion.events) {
    if (event.type === 'StepFailed' && event.data.stepId === stepId)
      return event.data.final ? null : (event.data.retryInMs ?? null);
  }
  // A report the store already had: the step's state says whether it is to be retried, with its first delay.
  const step = completion.step;
  return step?.status === 'retrying' ? step.retry.initialMs : null;
}

function isFinished(step: StepState): boolean {
  return step.status === 'succeeded' || step.status === 'failed';
}
