import type { Consumer, JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { AssignmentMessage, decodeMessage, type Logger, type Topology } from '@rpa/shared';
import { RobotStoppingError } from './errors.js';
import { startHeartbeat, type StopHeartbeat } from './heartbeat.js';
import type { RobotMetrics } from './metrics.js';
import type { Ownership, Reporter } from './reporter.js';
import type { RunnerOutcome, SessionRunner } from './sessionRunner.js';
import { pullOne } from './pull.js';
import { sleep } from './sleep.js';

export interface AssignmentPullerDeps {
  js: JetStreamClient;
  topology: Topology;
  reporter: Reporter;
  maxSessions: number;
  /** How long one pull waits on the server; also bounds how late a stop is noticed. */
  pullExpiresMs: number;
  /** Interval of in-progress signals on held assignments. */
  heartbeatMs: number;
  /** How long a session handed back after a failure waits before it is offered again. */
  retryDelayMs: number;
  logger: Logger;
  metrics: RobotMetrics;
  /** Builds the runner of a session this robot has just claimed. */
  createRunner(owner: Ownership, assignment: AssignmentMessage): SessionRunner;
  /** Removes what a closed or cancelled session left behind (its step consumer and messages, its restore point). */
  cleanUp(sessionId: string, restorePointKey: string | null): Promise<void>;
}

/** A session held by this robot, as the fleet heartbeat reports it. */
export interface HeldSession {
  sessionId: string;
  tenantId: string;
  epoch: number;
}

interface Held {
  /** The latest delivery of the assignment: the one acked or handed back at the end. */
  msg: JsMsg;
  stopHeartbeat: StopHeartbeat;
  runner: SessionRunner | null;
  done: Promise<void>;
}

/**
 * Pulls session assignments while the robot has free capacity, claims each session in the event stream, and keeps
 * the assignment un-acked (signalling progress) for as long as the session is held: acked when it closes, handed
 * back (nak) when the robot stops or gives up, left alone when another robot has taken it over.
 */
export class AssignmentPuller {
  private readonly held = new Map<string, Held>();
  private readonly stopController = new AbortController();
  private loop: Promise<void> | null = null;
  private wakeUp: (() => void) | null = null;

  constructor(private readonly deps: AssignmentPullerDeps) {}

  /** Starts pulling in the background. */
  start(): void {
    this.loop ??= this.pullLoop();
  }

  /** Sessions held (claimed or being claimed) right now. */
  get size(): number {
    return this.held.size;
  }

  /** The sessions claimed and being run right now. */
  sessions(): HeldSession[] {
    const sessions: HeldSession[] = [];
    for (const { runner } of this.held.values()) {
      if (runner) {
        const { sessionId, tenantId, epoch } = runner.owner;
        sessions.push({ sessionId, tenantId, epoch });
      }
    }
    return sessions;
  }

  /** Stops taking new assignments; resolves when no pull is pending any more. */
  async stopPulling(): Promise<void> {
    this.stopController.abort();
    this.wakeUp?.();
    await this.loop;
  }

  /**
   * Stops pulling, lets each session finish the message in hand for up to `graceMs`, interrupts what is left, and
   * hands every held assignment back so that another robot takes it at once.
   */
  async stop(graceMs: number): Promise<void> {
    await this.stopPulling();
    const entries = [...this.held.values()];
    for (const entry of entries) entry.runner?.stop();
    const all = Promise.all(entries.map((e) => e.done));
    let timer: NodeJS.Timeout | undefined;
    const inTime = await Promise.race([
      all.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), graceMs);
      }),
    ]);
    clearTimeout(timer);
    if (!inTime) {
      this.deps.logger.warn(
        { sessions: this.held.size },
        'sessions still busy after the grace period: interrupting',
      );
      await Promise.all([...this.held.values()].map((e) => e.runner?.abort()));
      await all;
    }
  }

  private async pullLoop(): Promise<void> {
    const { js, topology, pullExpiresMs, logger, maxSessions } = this.deps;
    const signal = this.stopController.signal;
    let consumer: Consumer | null = null;
    let failures = 0;
    while (!signal.aborted) {
      if (this.held.size >= maxSessions) {
        await new Promise<void>((resolve) => (this.wakeUp = resolve));
        this.wakeUp = null;
        continue;
      }
      try {
        consumer ??= await js.consumers.get(topology.workStream, topology.assignmentsConsumer);
        const msg = await pullOne(consumer, pullExpiresMs, signal);
        failures = 0;
        if (!msg) continue;
        if (signal.aborted) {
          this.settleMessage(msg, 'nak');
          break;
        }
        this.accept(msg);
      } catch (error) {
        failures += 1;
        consumer = null;
        logger.warn({ err: error, failures }, 'pulling assignments failed');
        await sleep(Math.min(10_000, 250 * 2 ** Math.min(failures, 6)), signal);
      }
    }
  }

  private accept(msg: JsMsg): void {
    const { logger, heartbeatMs, metrics } = this.deps;
    let assignment: AssignmentMessage;
    try {
      assignment = decodeMessage(AssignmentMessage, msg.data);
    } catch (error) {
      logger.error({ err: error, seq: msg.seq }, 'undecodable assignment: terminated');
      this.settleMessage(msg, 'term');
      return;
    }
    const current = this.held.get(assignment.sessionId);
    if (current && current.msg.seq !== msg.seq) {
      // Another assignment for a session held here (a cancel's): the held one already covers the session, and its
      // close message reaches the runner on the session's own subject.
      logger.debug({ sessionId: assignment.sessionId, reason: assignment.reason }, 'session already held');
      this.settleMessage(msg, 'ack');
      return;
    }
    if (current) {
      // Redelivered while held (progress signals were lost): the newest delivery is the one to keep alive.
      current.stopHeartbeat();
      current.msg = msg;
      current.stopHeartbeat = startHeartbeat(msg, heartbeatMs);
      return;
    }
    const entry: Held = {
      msg,
      stopHeartbeat: startHeartbeat(msg, heartbeatMs),
      runner: null,
      done: Promise.resolve(),
    };
    this.held.set(assignment.sessionId, entry);
    metrics.sessionsHeld.set(this.held.size);
    entry.done = this.hold(entry, assignment).finally(() => {
      entry.stopHeartbeat();
      this.held.delete(assignment.sessionId);
      metrics.sessionsHeld.set(this.held.size);
      this.wakeUp?.();
    });
  }

  private async hold(entry: Held, assignment: AssignmentMessage): Promise<void> {
    const { reporter, logger, retryDelayMs } = this.deps;
    const log = logger.child({ sessionId: assignment.sessionId });
    try {
      const claim = await reporter.claim(assignment, this.stopController.signal);
      switch (claim.kind) {
        case 'closed':
          // Nobody holds a finished session: whoever gets its assignment removes what it left behind.
          await this.deps.cleanUp(assignment.sessionId, claim.restorePointKey);
          log.info(
            { reason: assignment.reason },
            'assignment for a finished session: cleaned up, terminated',
          );
          this.settleMessage(entry.msg, 'term');
          return;
        case 'rejected':
          log.warn({ code: claim.code, reason: claim.message }, 'claim refused: assignment terminated');
          this.settleMessage(entry.msg, 'term');
          return;
        case 'claimed':
          break;
        default:
          return assertNever(claim);
      }
      if (this.stopController.signal.aborted) {
        this.settleMessage(entry.msg, 'nak');
        return;
      }
      log.info({ epoch: claim.ownership.epoch }, 'session claimed');
      entry.runner = this.deps.createRunner(claim.ownership, assignment);
      const outcome = await entry.runner.run();
      this.settle(entry, outcome);
      log.info({ outcome }, 'session released');
    } catch (error) {
      if (error instanceof RobotStoppingError) {
        this.settleMessage(entry.msg, 'nak');
        return;
      }
      log.error({ err: error }, 'taking the session failed: handing it back');
      this.settleMessage(entry.msg, 'nak', retryDelayMs);
    }
  }

  private settle(entry: Held, outcome: RunnerOutcome): void {
    switch (outcome) {
      case 'closed':
        this.settleMessage(entry.msg, 'ack');
        return;
      case 'lost':
        // Another robot holds a newer delivery; an ack from us would be accepted by the server and cut it off.
        return;
      case 'stopped':
        // At once, without delay: the next robot takes the session over now rather than after the ack wait.
        this.settleMessage(entry.msg, 'nak');
        return;
      case 'failed':
        this.settleMessage(entry.msg, 'nak', this.deps.retryDelayMs);
        return;
      case 'parked':
        // The session waits for an operator; resuming it publishes a fresh assignment.
        this.settleMessage(entry.msg, 'term');
        return;
      default:
        return assertNever(outcome);
    }
  }

  /**
   * Acks, naks or terminates a message. On a closed connection this cannot reach the server: the message then
   * comes back after its ack wait, which is what should happen to a session whose robot lost its connection.
   */
  private settleMessage(msg: JsMsg, how: 'ack' | 'nak' | 'term', delayMs?: number): void {
    try {
      if (how === 'ack') msg.ack();
      else if (how === 'term') msg.term();
      else msg.nak(delayMs);
    } catch (error) {
      this.deps.logger.warn({ err: error, seq: msg.seq, how }, 'settling an assignment failed');
    }
  }
}

function assertNever(x: never): never {
  throw new TypeError(`unhandled case ${JSON.stringify(x)}`);
}
