import type { Consumer, JetStreamClient, JsMsg } from '@nats-io/jetstream';
import {
  AssignmentMessage,
  decodeMessage,
  isTerminal,
  PRIORITIES,
  type Logger,
  type NatsConnection,
  type SessionPriority,
  type Topology,
} from '@rpa/shared';
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
  /**
   * Time between sweeps that pull from every priority's consumer (an assignment handed back with a delay comes
   * back without any publish to wake the robot); also bounds how late a stop is noticed.
   */
  pullExpiresMs: number;
  /** For wake-ups: a core subscription to the assign subjects, so that a new assignment is pulled at once. */
  nc?: NatsConnection;
  /** The labels this robot carries; a session requiring others is handed back. Default none. */
  labels?: Readonly<Record<string, string>>;
  /** How long a session this robot cannot run (labels) waits before it is offered again. Default 3 s. */
  mismatchDelayMs?: number;
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
  /** Priorities on which another robot has just handed an assignment back. */
  private readonly handedBack = new Set<SessionPriority>();
  /** Counts wake-ups, so that one arriving while the loop is busy is not lost. */
  private pokes = 0;

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
    this.poke();
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

  private poke(): void {
    this.pokes += 1;
    this.wakeUp?.();
  }

  /** Waits for a wake-up (a session released, an assignment published, a stop) or `ms`, whichever comes first. */
  private async idle(seen: number, ms: number | null): Promise<void> {
    if (this.pokes !== seen || this.stopController.signal.aborted) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.wakeUp = resolve;
      if (ms !== null) timer = setTimeout(resolve, ms);
    });
    clearTimeout(timer);
    this.wakeUp = null;
  }

  /**
   * Serves the priorities' consumers high before normal before low. A pull must wait at least a second on the
   * server, so the consumers are not long-polled one after another: the robot asks each for its pending count in
   * order and pulls from the first non-empty one; with nothing pending it sleeps until an assignment is published
   * (core subscription on the assign subjects) or until the next sweep, which pulls from each in order so that
   * assignments handed back with a delay (counted as in flight, not pending) are taken too.
   */
  private async pullLoop(): Promise<void> {
    const { js, topology, pullExpiresMs, logger, maxSessions } = this.deps;
    const signal = this.stopController.signal;
    const consumers = new Map<SessionPriority, Consumer>();
    const consumer = async (priority: SessionPriority): Promise<Consumer> => {
      let c = consumers.get(priority);
      if (!c) {
        c = await js.consumers.get(topology.workStream, topology.assignmentsConsumerFor(priority));
        consumers.set(priority, c);
      }
      return c;
    };
    const subscription = this.deps.nc?.subscribe(topology.assignWildcard, { callback: () => this.poke() });
    const wakes = this.deps.nc?.subscribe(topology.assignWakeWildcard, {
      callback: (_error, m) => {
        const priority = m.subject.slice(m.subject.lastIndexOf('.') + 1) as SessionPriority;
        if (!PRIORITIES.includes(priority)) return;
        this.handedBack.add(priority);
        this.poke();
      },
    });
    let failures = 0;
    let nextSweep = 0;
    try {
      while (!signal.aborted) {
        const seen = this.pokes;
        if (this.held.size >= maxSessions) {
          await this.idle(seen, null);
          continue;
        }
        try {
          let msg: JsMsg | null = null;
          // An assignment another robot just handed back is there to be pulled, though no count shows it.
          for (const priority of PRIORITIES) {
            if (msg || !this.handedBack.delete(priority)) continue;
            msg = await pullOne(await consumer(priority), 1_000, signal);
          }
          for (const priority of PRIORITIES) {
            if (msg) break;
            const c = await consumer(priority);
            // Fresh, not cached: a cached count says nothing about what was published since.
            if ((await c.info()).num_pending === 0) continue;
            msg = await pullOne(c, 1_000, signal);
            if (msg) break;
          }
          if (!msg && Date.now() >= nextSweep) {
            for (const priority of PRIORITIES) {
              msg = await pullOne(await consumer(priority), 1_000, signal);
              if (msg || signal.aborted) break;
            }
            // A sweep that found work sweeps again at once: more may have come back the same way.
            nextSweep = msg ? 0 : Date.now() + pullExpiresMs;
          }
          failures = 0;
          if (msg) {
            if (signal.aborted) {
              this.settleMessage(msg, 'nak');
              break;
            }
            this.accept(msg);
            continue;
          }
          await this.idle(seen, Math.max(0, nextSweep - Date.now()));
        } catch (error) {
          failures += 1;
          consumers.clear();
          logger.warn({ err: error, failures }, 'pulling assignments failed');
          await sleep(Math.min(10_000, 250 * 2 ** Math.min(failures, 6)), signal);
        }
      }
    } finally {
      subscription?.unsubscribe();
      wakes?.unsubscribe();
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
      this.poke();
    });
  }

  private async hold(entry: Held, assignment: AssignmentMessage): Promise<void> {
    const { reporter, logger, retryDelayMs } = this.deps;
    const log = logger.child({ sessionId: assignment.sessionId });
    try {
      if (!(await this.mayClaim(entry, assignment))) return;
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

  /**
   * Checks, before claiming, that this robot may take the session: it carries every label the session requires
   * (as the assignment says, and as the stream says: the stream is the truth) — otherwise the assignment is handed
   * back with a delay, for a robot that does; and a reconciler's re-sent assignment is dropped when the session was
   * claimed meanwhile (its original assignment covers it: claiming again would take it from its owner).
   */
  private async mayClaim(entry: Held, assignment: AssignmentMessage): Promise<boolean> {
    const { reporter, logger } = this.deps;
    const labels = this.deps.labels ?? {};
    const delay = this.deps.mismatchDelayMs ?? 3_000;
    const log = logger.child({ sessionId: assignment.sessionId });
    if (assignment.requires && missingLabels(assignment.requires, labels).length > 0) {
      log.info(
        { missing: missingLabels(assignment.requires, labels) },
        'session requires labels this robot lacks',
      );
      this.settleMessage(entry.msg, 'nak', delay);
      return false;
    }
    const loaded = await reporter.load(assignment.sessionId, this.stopController.signal);
    const state = loaded.state;
    if (state.status === 'none' || isTerminal(state)) return true;
    const missing = missingLabels(state.requires, labels);
    if (missing.length > 0) {
      log.info({ missing }, 'session requires labels this robot lacks');
      this.settleMessage(entry.msg, 'nak', delay);
      return false;
    }
    if (assignment.reason === 'reconciled' && state.epoch > 0) {
      log.info({ reason: assignment.reason }, 're-sent assignment for a session claimed meanwhile: dropped');
      this.settleMessage(entry.msg, 'ack');
      return false;
    }
    return true;
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
      else {
        msg.nak(delayMs);
        // Handed back for another robot to take now: tell the idle ones which priority to pull.
        const priority = msg.subject.slice(msg.subject.lastIndexOf('.') + 1) as SessionPriority;
        if (!delayMs && PRIORITIES.includes(priority))
          this.deps.nc?.publish(this.deps.topology.assignWakeSubject(priority));
      }
    } catch (error) {
      this.deps.logger.warn({ err: error, seq: msg.seq, how }, 'settling an assignment failed');
    }
  }
}

/** The names of the required labels that `labels` does not carry with the same value. */
export function missingLabels(
  requires: Readonly<Record<string, string>>,
  labels: Readonly<Record<string, string>>,
): string[] {
  return Object.entries(requires)
    .filter(([name, value]) => labels[name] !== value)
    .map(([name]) => name);
}

function assertNever(x: never): never {
  throw new TypeError(`unhandled case ${JSON.stringify(x)}`);
}
