import type { Consumer, JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import type { BrowserContext, Page } from 'playwright-core';
import {
  CommandRejectedError,
  decodeMessage,
  DEFAULT_STEP_TIMEOUT_MS,
  isTerminal,
  SessionWorkMessage,
  type ExpiryReason,
  type Logger,
  type RestorePointRef,
  type SessionState,
  type StepSpec,
  type Topology,
  type WorkSettings,
} from '@rpa/shared';
import type { ArtifactStore } from './artifacts.js';
import type { Breakers } from './breakers.js';
import { BrowserUnavailableError, type RobotBrowser } from './browser.js';
import { isRestorableUrl, watchDocuments } from './documentBoundary.js';
import { ReportFailedError, RobotStoppingError, SessionLostError } from './errors.js';
import { startHeartbeat } from './heartbeat.js';
import type { RobotMetrics } from './metrics.js';
import { recoverSession, type ExistingSession, type RecoveryDeps } from './recovery.js';
import type { Ownership, Reporter } from './reporter.js';
import type { RestorePointStore, StorageState } from './restorePoints.js';
import { cleanUpSession, deleteRestorePoint } from './sessionCleanup.js';
import { pullOne } from './pull.js';
import { sleep } from './sleep.js';
import { executeStep, type StepRunOutcome } from './stepExecutor.js';

/**
 * How a session's run ended. closed: done for good (closed, cancelled or expired); lost: another robot owns it; stopped: handed back; failed: gave
 * up for now; parked: it waits for an operator (resuming it offers it again).
 */
export type RunnerOutcome = 'closed' | 'lost' | 'stopped' | 'failed' | 'parked';

type StepMessage = Extract<SessionWorkMessage, { kind: 'step' }>;

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
}

/** Pull failures in a row (NATS down, consumer gone) before the session is handed back. */
const MAX_PULL_FAILURES = 10;

/**
 * Runs one owned session: binds its durable step consumer, rebuilds the session's browser when another robot ran
 * it before (see recovery.ts), and consumes step and close messages one at a time, in order. A step is acked only
 * after its result is in the stream; a step whose result is already there is acked without running again. After a
 * step that loaded a new document, and after a checkpoint step, a restore point is taken and recorded with the
 * step's result.
 */
export class SessionRunner {
  private readonly stopController = new AbortController();
  private readonly abortController = new AbortController();
  private readonly logger: Logger;
  private context: BrowserContext | null = null;
  private page: Page | null = null;
  /** The session's idle timeout, from its stream; null: it never expires for idleness. */
  private idleTimeoutMs: number | null = null;
  /** Clock time of the claim, and of the last activity (claim, recovery, a step arriving or finishing). */
  private heldSince = 0;
  private lastActivity = 0;

  constructor(
    private readonly deps: SessionRunnerDeps,
    readonly owner: Ownership,
  ) {
    this.logger = deps.logger.child({ sessionId: owner.sessionId, epoch: owner.epoch });
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
      runStep: (stepId, step, page) => this.execute(stepId, step, page),
      assertCanContinue: () => {
        if (this.stopping || this.abortController.signal.aborted) throw new RobotStoppingError();
        if (!this.page || this.page.isClosed() || !this.deps.browser.connected)
          throw new BrowserUnavailableError('the session page is gone');
      },
    };
  }

  private async openPage(session: ExistingSession, storageState: StorageState | null): Promise<Page> {
    const context = await this.deps.browser.newContext(session.browser, storageState);
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
      await this.step(msg, work);
      return null;
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

  private async step(msg: JsMsg, work: StepMessage): Promise<void> {
    const { reporter, metrics, clock, restorePoints } = this.deps;
    const signal = this.abortController.signal;
    const { stepId, step } = work;
    const log = this.logger.child({ stepId, action: step.action });
    // A first delivery cannot have a result yet, so the cached fold will do (StartStep below proves it current); a
    // redelivery reads the stream, because only a result there proves that the step ran.
    const cached = msg.info.deliveryCount === 1 ? reporter.cached(this.owner.sessionId) : undefined;
    const loaded = cached ?? (await reporter.load(this.owner.sessionId, signal));
    // Checked before any ack: a robot that lost the session (frozen past its ack wait) must not ack its successor's work.
    const session = this.assertOwner(loaded.state);
    if (isTerminal(session)) {
      log.debug({ status: session.status }, 'session is over: step acked without running');
      msg.ack();
      metrics.stepHandled(step.action, 'skipped');
      return;
    }
    const known = session.steps[stepId];
    if (known && (known.status === 'succeeded' || known.status === 'failed')) {
      // Its result is the proof that it ran: a redelivery (lost ack, broker restart) must not run it again.
      log.debug({ status: known.status }, 'step already has a result: acked without running');
      msg.ack();
      metrics.stepHandled(step.action, 'skipped');
      return;
    }
    const page = this.page;
    if (!page || page.isClosed() || !this.deps.browser.connected)
      throw new BrowserUnavailableError('the session page is gone');
    const attempt = msg.info.deliveryCount;
    const current = await reporter.startStep(this.owner, stepId, attempt, signal);
    if (current && (current.status === 'succeeded' || current.status === 'failed')) {
      log.debug({ status: current.status }, 'step already has a result: acked without running');
      msg.ack();
      metrics.stepHandled(step.action, 'skipped');
      return;
    }
    log.info({ attempt }, 'step started');
    const started = clock();
    const documents = watchDocuments(page);
    let outcome: StepRunOutcome;
    try {
      outcome = await this.execute(stepId, step, page);
    } finally {
      documents.stop();
    }
    if (signal.aborted) throw new RobotStoppingError();
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
      ? await this.takeRestorePoint(
          known?.seq ?? work.seq,
          trigger,
          started + (step.timeoutMs ?? DEFAULT_STEP_TIMEOUT_MS),
        )
      : undefined;
    try {
      await reporter.completeStep(
        this.owner,
        { stepId, attempt, durationMs, outcome, ...(checkpoint ? { checkpoint } : {}) },
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
    if (outcome.status === 'succeeded') {
      msg.ack();
      log.info({ durationMs }, 'step succeeded');
    } else {
      // The failure is recorded; redelivering would only fail again.
      msg.term();
      log.info({ durationMs, code: outcome.error.code }, 'step failed');
    }
    metrics.stepHandled(step.action, outcome.status, durationMs / 1_000);
  }

  private execute(stepId: string, step: StepSpec, page: Page): Promise<StepRunOutcome> {
    const { breakers, artifacts } = this.deps;
    return executeStep(
      { breakers, artifacts, logger: this.logger },
      { sessionId: this.owner.sessionId, stepId, step },
      page,
      this.stopController.signal,
    );
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
      const storage = await context.storageState();
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
  private async expire(expiry: Expiry): Promise<RunnerOutcome | null> {
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
