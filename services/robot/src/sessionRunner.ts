import type { Consumer, JetStreamClient, JetStreamManager, JsMsg } from '@nats-io/jetstream';
import type { BrowserContext, Page } from 'playwright-core';
import {
  CommandRejectedError,
  decodeMessage,
  DEFAULT_STEP_TIMEOUT_MS,
  isNotFound,
  SessionWorkMessage,
  type BrowserOptions,
  type CompleteStep,
  type Logger,
  type Topology,
  type WorkSettings,
} from '@rpa/shared';
import type { ArtifactStore } from './artifacts.js';
import { BreakerOpenError, originOf, type Breakers } from './breakers.js';
import { BrowserUnavailableError, type RobotBrowser } from './browser.js';
import { ReportFailedError, RobotStoppingError, SessionLostError } from './errors.js';
import { startHeartbeat } from './heartbeat.js';
import { sleep } from './sleep.js';
import type { RobotMetrics } from './metrics.js';
import type { Ownership, Reporter } from './reporter.js';
import { createStepContext } from './steps/context.js';
import { StepFailure, toStepFailure } from './steps/errors.js';
import { runStep } from './steps/runStep.js';

/** How a session's run ended. closed: done for good; lost: another robot owns it; stopped: handed back; failed: gave up. */
export type RunnerOutcome = 'closed' | 'lost' | 'stopped' | 'failed';

type StepMessage = Extract<SessionWorkMessage, { kind: 'step' }>;
type Outcome = CompleteStep['outcome'];

export interface SessionRunnerDeps {
  js: JetStreamClient;
  jsm: JetStreamManager;
  topology: Topology;
  settings: WorkSettings;
  reporter: Reporter;
  browser: RobotBrowser;
  breakers: Breakers;
  artifacts: ArtifactStore;
  metrics: RobotMetrics;
  logger: Logger;
  /** How long one pull for the next message waits on the server; also bounds how late a stop is noticed. */
  pullExpiresMs: number;
  /** Interval of in-progress signals on the message being worked on. */
  heartbeatMs: number;
  /** Milliseconds, for step durations. */
  clock: () => number;
}

/** Slack past a step's own timeout before the runner stops waiting for a browser call that never returns. */
const STEP_HARD_LIMIT_GRACE_MS = 5_000;
/** Pull failures in a row (NATS down, consumer gone) before the session is handed back. */
const MAX_PULL_FAILURES = 10;
/** Times one step waits for its target's breaker to let it through before it fails. */
const MAX_BREAKER_PAUSES = 120;

/**
 * Runs one owned session: binds its durable step consumer, opens the session's own browser context, and consumes
 * step and close messages one at a time, in order. A step is acked only after its result is in the stream; a step
 * whose result is already there is acked without running again.
 */
export class SessionRunner {
  private readonly stopController = new AbortController();
  private readonly abortController = new AbortController();
  private readonly logger: Logger;
  private context: BrowserContext | null = null;
  private page: Page | null = null;

  constructor(
    private readonly deps: SessionRunnerDeps,
    readonly owner: Ownership,
    private readonly browserOptions: BrowserOptions,
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

  /** Runs until the session closes, is lost, or the runner is stopped. Never rejects. */
  async run(): Promise<RunnerOutcome> {
    try {
      const consumer = await this.bindConsumer();
      this.context = await this.deps.browser.newContext(this.browserOptions);
      this.page = await this.context.newPage();
      let failures = 0;
      while (!this.stopping) {
        let msg: JsMsg | null;
        try {
          msg = await consumer.next({ expires: this.deps.pullExpiresMs });
          failures = 0;
        } catch (error) {
          failures += 1;
          this.logger.warn({ err: error, failures }, 'pulling the next step failed');
          if (failures >= MAX_PULL_FAILURES) return 'failed';
          await sleep(Math.min(5_000, 250 * 2 ** failures), this.stopController.signal);
          continue;
        }
        if (!msg) continue;
        if (this.stopping) {
          // Arrived as we stopped: hand it back at once rather than after its ack wait.
          msg.nak();
          break;
        }
        const outcome = await this.handle(msg);
        if (outcome) return outcome;
      }
      return 'stopped';
    } catch (error) {
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
    const { reporter, metrics, clock } = this.deps;
    const signal = this.abortController.signal;
    const { stepId, step } = work;
    const log = this.logger.child({ stepId, action: step.action });
    const loaded = await reporter.load(this.owner.sessionId, signal);
    const known = loaded.state.status === 'none' ? undefined : loaded.state.steps[stepId];
    if (known && (known.status === 'succeeded' || known.status === 'failed')) {
      // Its result is the proof that it ran: a redelivery (lost ack, broker restart) must not run it again.
      log.debug({ status: known.status }, 'step already has a result: acked without running');
      msg.ack();
      metrics.stepHandled(step.action, 'skipped');
      return;
    }
    if (!this.page || this.page.isClosed() || !this.deps.browser.connected)
      throw new BrowserUnavailableError('the session page is gone');
    const attempt = msg.info.deliveryCount;
    await reporter.startStep(this.owner, stepId, attempt, signal);
    log.info({ attempt }, 'step started');
    const started = clock();
    const outcome = await this.execute(work, this.page);
    if (signal.aborted) throw new RobotStoppingError();
    const durationMs = Math.max(0, clock() - started);
    await reporter.completeStep(this.owner, { stepId, attempt, durationMs, outcome }, signal);
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

  /** Runs the step behind its target origin's breaker; an open breaker pauses the step instead of failing it. */
  private async execute(work: StepMessage, page: Page): Promise<Outcome> {
    const { step, stepId } = work;
    const timeoutMs = step.timeoutMs ?? DEFAULT_STEP_TIMEOUT_MS;
    for (let pauses = 0; pauses <= MAX_BREAKER_PAUSES; pauses++) {
      const origin = originOf(step.action === 'navigate' ? step.url : page.url());
      const breaker = this.deps.breakers.forOrigin(origin);
      try {
        const ctx = createStepContext({
          page,
          sessionId: this.owner.sessionId,
          stepId,
          artifacts: this.deps.artifacts,
          timeoutMs,
        });
        const output = await breaker.run(() =>
          withHardLimit(runStep(step, ctx), timeoutMs + STEP_HARD_LIMIT_GRACE_MS),
        );
        return { status: 'succeeded', output };
      } catch (error) {
        if (!(error instanceof BreakerOpenError)) {
          return { status: 'failed', error: toStepFailure(error, 'act').toStepError() };
        }
        if (pauses === 0) this.logger.warn({ stepId, origin }, 'target breaker open: step paused');
        await breaker.whenCallable(this.stopController.signal);
        if (this.stopping) throw new RobotStoppingError();
      }
    }
    return {
      status: 'failed',
      error: {
        code: 'NAVIGATION_FAILED',
        message: 'the target kept failing; its circuit breaker stayed open',
      },
    };
  }

  private async close(msg: JsMsg): Promise<RunnerOutcome> {
    await this.deps.reporter.confirmClose(this.owner, this.abortController.signal);
    await this.closeContext();
    msg.ack();
    await this.removeConsumer();
    this.logger.info({}, 'session closed');
    return 'closed';
  }

  /** A closed session's consumer and any leftover messages go away; nothing will ever consume them. */
  private async removeConsumer(): Promise<void> {
    const { jsm, topology } = this.deps;
    const { sessionId } = this.owner;
    try {
      await jsm.consumers.delete(topology.workStream, topology.stepsConsumer(sessionId));
    } catch (error) {
      if (!isNotFound(error)) this.logger.warn({ err: error }, 'deleting the step consumer failed');
    }
    try {
      await jsm.streams.purge(topology.workStream, { filter: topology.stepsSubject(sessionId) });
    } catch (error) {
      this.logger.warn({ err: error }, 'purging the closed session subject failed');
    }
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

/** Rejects with TIMEOUT if the work has not settled in time (a browser call that never returns). */
function withHardLimit<T>(work: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new StepFailure('TIMEOUT', `the step did not finish within ${ms} ms`)),
      ms,
    );
  });
  return Promise.race([work, limit]).finally(() => clearTimeout(timer));
}
