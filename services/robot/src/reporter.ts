import { randomUUID } from 'node:crypto';
import {
  CommandRejectedError,
  decodeSessionEvent,
  InvalidAppendError,
  isTerminal,
  SchemaError,
  sessionStreamId,
  type AttentionCode,
  type CommandResult,
  type CompleteStep,
  type EventStore,
  type ExpiryReason,
  type LoadedSession,
  type Logger,
  type ReadStreamOptions,
  type RecordRecovery,
  type SessionCommand,
  type SessionCommandHandler,
  type SessionEvent,
  type StepSpec,
  type StepState,
  type StreamPlace,
  type WaitReason,
} from '@rpa/shared';
import type { Breaker } from './breakers.js';
import { ReportFailedError, RobotStoppingError, SessionLostError } from './errors.js';
import { sleep } from './sleep.js';

/** What the decider recorded for a reported step result. */
export interface StepCompletion {
  events: SessionEvent[];
  step: StepState | undefined;
}

/** The robot's hold on a session: the epoch it claimed is on every report. */
export interface Ownership {
  sessionId: string;
  tenantId: string;
  robotId: string;
  epoch: number;
}

export type ClaimOutcome =
  | { kind: 'claimed'; ownership: Ownership }
  /** Closed or cancelled: nothing runs in it again; what it left behind (its restore point) can go. */
  | { kind: 'closed'; restorePointKey: string | null }
  | { kind: 'rejected'; code: string; message: string };

export interface RetryPolicy {
  /** Tries of one call before giving up with ReportFailedError. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 10, baseDelayMs: 200, maxDelayMs: 8_000 };

/**
 * Everything the robot tells the event store, as commands through the shared command handler, behind the
 * event-store breaker. Command ids are derived from what is reported (session, step, epoch, attempt), so a retry
 * after an uncertain append produces the same event ids and is deduplicated by the store.
 */
export class Reporter {
  constructor(
    private readonly options: {
      handler: SessionCommandHandler;
      /** Read directly only to fetch the specs of submitted steps (recovery replays them). */
      store: EventStore;
      breaker: Breaker;
      robotId: string;
      now: () => Date;
      logger: Logger;
      retry?: RetryPolicy;
    },
  ) {}

  /** The session's state as the stream has it now. */
  load(sessionId: string, signal?: AbortSignal): Promise<LoadedSession> {
    return this.withRetry(`load ${sessionId}`, () => this.options.handler.load(sessionId), signal);
  }

  /** The session's state, one try only (behind the breaker): for checks that are repeated anyway. */
  loadOnce(sessionId: string): Promise<LoadedSession> {
    return this.options.breaker.run(() => this.options.handler.load(sessionId));
  }

  /**
   * The specs of the given steps, by step id. When the state says where each was submitted, only the part of the
   * stream from the first of those submissions to the last is read, starting at the first; otherwise (or when that
   * part turns out not to hold them all) the whole stream.
   */
  async stepSpecs(
    sessionId: string,
    steps: readonly StepState[],
    signal?: AbortSignal,
  ): Promise<Map<string, StepSpec>> {
    const wanted = new Set(steps.map((s) => s.stepId));
    if (wanted.size === 0) return new Map();
    const range = submissionRange(steps);
    if (range) {
      const specs = await this.readSpecs(sessionId, wanted, range, signal);
      if (specs.size === wanted.size) return specs;
      this.options.logger.warn(
        { sessionId, found: specs.size, wanted: wanted.size },
        'step submissions were not where the state placed them; reading the whole stream',
      );
    }
    return this.readSpecs(sessionId, wanted, {}, signal);
  }

  private async readSpecs(
    sessionId: string,
    wanted: ReadonlySet<string>,
    range: ReadStreamOptions,
    signal?: AbortSignal,
  ): Promise<Map<string, StepSpec>> {
    const recorded = await this.withRetry(
      `read ${sessionId}`,
      () => this.options.store.readStream(sessionStreamId(sessionId), range),
      signal,
    );
    const specs = new Map<string, StepSpec>();
    for (const r of recorded) {
      if (r.type !== 'StepSubmitted') continue;
      const decoded = decodeSessionEvent(r);
      if (decoded?.event.type === 'StepSubmitted' && wanted.has(decoded.event.data.stepId))
        specs.set(decoded.event.data.stepId, decoded.event.data.step);
    }
    return specs;
  }

  /** The session as last folded here, without reading the stream (possibly behind it); undefined if not cached. */
  cached(sessionId: string): LoadedSession | undefined {
    return this.options.handler.peek(sessionId);
  }

  /** Takes the session over with the next epoch; a closed or cancelled session is not claimed. */
  async claim(session: { sessionId: string; tenantId: string }, signal?: AbortSignal): Promise<ClaimOutcome> {
    const { robotId } = this.options;
    const loaded = await this.load(session.sessionId, signal);
    if (isTerminal(loaded.state)) return closedOutcome(loaded);
    const nextEpoch = loaded.state.status === 'none' ? 1 : loaded.state.epoch + 1;
    try {
      const result = await this.send(
        {
          type: 'ClaimSession',
          commandId: `claim:${session.sessionId}:${robotId}:${nextEpoch}`,
          ...this.base(session),
          robotId,
        },
        signal,
      );
      const { state } = result;
      if (state.status === 'none' || state.owner?.robotId !== robotId) {
        return {
          kind: 'rejected',
          code: 'NOT_OWNER',
          message: 'the claim did not make this robot the owner',
        };
      }
      return { kind: 'claimed', ownership: { ...session, robotId, epoch: state.owner.epoch } };
    } catch (error) {
      if (!(error instanceof CommandRejectedError)) throw error;
      const again = await this.load(session.sessionId, signal);
      if (isTerminal(again.state)) return closedOutcome(again);
      return { kind: 'rejected', code: error.code, message: error.message };
    }
  }

  /** Records that this robot starts the step's attempt. */
  async startStep(
    owner: Ownership,
    stepId: string,
    attempt: number,
    signal?: AbortSignal,
  ): Promise<StepState | undefined> {
    const result = await this.report(
      owner,
      {
        type: 'StartStep',
        commandId: `start:${owner.sessionId}:${stepId}:${owner.epoch}:${attempt}`,
        ...this.base(owner),
        robotId: owner.robotId,
        epoch: owner.epoch,
        stepId,
        attempt,
      },
      signal,
    );
    return result.state.status === 'none' ? undefined : result.state.steps[stepId];
  }

  /**
   * Records the step's result; answers with what the decider made of it (a failure may be retried later or be
   * final) and the step as it is now. The events are empty for a report the store already had.
   */
  async completeStep(
    owner: Ownership,
    report: Pick<
      CompleteStep,
      'stepId' | 'attempt' | 'durationMs' | 'outcome' | 'checkpoint' | 'secretsUsed'
    >,
    signal?: AbortSignal,
  ): Promise<StepCompletion> {
    const result = await this.report(
      owner,
      {
        type: 'CompleteStep',
        commandId: `complete:${owner.sessionId}:${report.stepId}:${owner.epoch}:${report.attempt}`,
        ...this.base(owner),
        robotId: owner.robotId,
        epoch: owner.epoch,
        ...report,
      },
      signal,
    );
    return {
      events: result.events.map((r) => r.event),
      step: result.state.status === 'none' ? undefined : result.state.steps[report.stepId],
    };
  }

  /** Records that the step in hand waits, unstarted, for its target origin's breaker to let calls through. */
  async reportWaiting(
    owner: Ownership,
    wait: { stepId: string; reason: WaitReason; origin: string },
    signal?: AbortSignal,
  ): Promise<void> {
    await this.report(
      owner,
      {
        type: 'ReportWaiting',
        // Unique per wait: the decider itself records nothing when the session already waits for the same reason.
        commandId: `waiting:${owner.sessionId}:${wait.stepId}:${owner.epoch}:${randomUUID()}`,
        ...this.base(owner),
        robotId: owner.robotId,
        epoch: owner.epoch,
        ...wait,
      },
      signal,
    );
  }

  /** Records that the owner rebuilt the session's browser. */
  async recordRecovery(
    owner: Ownership,
    report: Pick<RecordRecovery, 'fromCheckpoint' | 'replayedSteps' | 'skippedSteps' | 'durationMs'>,
    signal?: AbortSignal,
  ): Promise<void> {
    await this.report(
      owner,
      {
        type: 'RecordRecovery',
        // Two recoveries by the same owner (after a browser crash, or a resume) are two facts, not a retry of one.
        commandId: `recover:${owner.sessionId}:${owner.epoch}:${randomUUID()}`,
        ...this.base(owner),
        robotId: owner.robotId,
        epoch: owner.epoch,
        ...report,
      },
      signal,
    );
  }

  /** Records the secrets typed while replaying a step during recovery (names only): its result is not reported again. */
  async recordSecretUse(
    owner: Ownership,
    use: { stepId: string; names: readonly string[] },
    signal?: AbortSignal,
  ): Promise<void> {
    await this.report(
      owner,
      {
        type: 'RecordSecretUse',
        // Each replay is a use of its own; a retried report keeps its id.
        commandId: `secret-replay:${owner.sessionId}:${use.stepId}:${owner.epoch}:${randomUUID()}`,
        ...this.base(owner),
        robotId: owner.robotId,
        epoch: owner.epoch,
        ...use,
      },
      signal,
    );
  }

  /** Stops the session for an operator. */
  async flagAttention(
    owner: Ownership,
    flag: { code: AttentionCode; reason: string; stepIds: string[] },
    signal?: AbortSignal,
  ): Promise<void> {
    await this.report(
      owner,
      {
        type: 'FlagAttention',
        // Unique per flag: the same owner may be stopped twice (resumed, then stopped again at the same epoch).
        commandId: `attention:${owner.sessionId}:${owner.epoch}:${randomUUID()}`,
        ...this.base(owner),
        robotId: owner.robotId,
        epoch: owner.epoch,
        code: flag.code,
        reason: flag.reason,
        stepIds: flag.stepIds,
      },
      signal,
    );
  }

  /** Records that the session's browser context is closed. */
  async confirmClose(owner: Ownership, signal?: AbortSignal): Promise<void> {
    await this.report(
      owner,
      {
        type: 'ConfirmClose',
        commandId: `close:${owner.sessionId}:${owner.epoch}`,
        ...this.base(owner),
        robotId: owner.robotId,
        epoch: owner.epoch,
      },
      signal,
    );
  }

  /** Records that the session expired (idle too long, or held too long) and its browser context is going. */
  async expireSession(
    owner: Ownership,
    expiry: { reason: ExpiryReason; idleMs?: number },
    signal?: AbortSignal,
  ): Promise<void> {
    await this.report(
      owner,
      {
        type: 'ExpireSession',
        // One expiry per ownership: a retry after an uncertain append is deduplicated.
        commandId: `expire:${owner.sessionId}:${owner.epoch}`,
        ...this.base(owner),
        robotId: owner.robotId,
        epoch: owner.epoch,
        reason: expiry.reason,
        ...(expiry.idleMs === undefined ? {} : { idleMs: expiry.idleMs }),
      },
      signal,
    );
  }

  private base(session: { sessionId: string; tenantId: string }) {
    return {
      sessionId: session.sessionId,
      tenantId: session.tenantId,
      at: this.options.now().toISOString(),
      actor: { kind: 'robot' as const, id: this.options.robotId },
    };
  }

  /** Sends an owner's report; STALE_EPOCH becomes SessionLostError, other refusals stay CommandRejectedError. */
  private async report(
    owner: Ownership,
    command: SessionCommand,
    signal?: AbortSignal,
  ): Promise<CommandResult> {
    try {
      return await this.send(command, signal);
    } catch (error) {
      if (error instanceof CommandRejectedError && error.code === 'STALE_EPOCH')
        throw new SessionLostError(owner.sessionId, error.message);
      throw error;
    }
  }

  private send(command: SessionCommand, signal?: AbortSignal): Promise<CommandResult> {
    return this.withRetry(
      `${command.type} ${command.sessionId}`,
      () => this.options.handler.handle(command),
      signal,
    );
  }

  /** Runs the call behind the breaker, retrying what may succeed later with capped exponential backoff. */
  private async withRetry<T>(what: string, call: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    const retry = this.options.retry ?? DEFAULT_RETRY;
    let lastError: unknown;
    for (let attempt = 1; attempt <= retry.attempts; attempt++) {
      if (signal?.aborted) throw new RobotStoppingError();
      try {
        return await this.options.breaker.run(call);
      } catch (error) {
        if (!isRetryable(error)) throw error;
        lastError = error;
        this.options.logger.warn(
          { err: error, attempt, call: what },
          'event store call failed; retrying with backoff',
        );
        if (attempt < retry.attempts) {
          await sleep(Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** (attempt - 1)), signal);
        }
      }
    }
    throw new ReportFailedError(`${what}: the event store kept failing`, { cause: lastError });
  }
}

/** The revisions from the first submission of the steps to the last, read from the first; null when one is unknown. */
function submissionRange(steps: readonly StepState[]): ReadStreamOptions | null {
  let first: StreamPlace | null = null;
  let last = -1;
  for (const { submitted } of steps) {
    if (!submitted) return null;
    if (!first || submitted.revision < first.revision) first = submitted;
    last = Math.max(last, submitted.revision);
  }
  if (!first) return null;
  return { fromRevision: first.revision, maxCount: last - first.revision + 1, hint: first };
}

function closedOutcome(loaded: LoadedSession): ClaimOutcome {
  const restorePointKey = loaded.state.status === 'none' ? null : (loaded.state.checkpoint?.stateKey ?? null);
  return { kind: 'closed', restorePointKey };
}

/** Refusals and malformed appends fail the same way every time; anything else may pass on a later try. */
function isRetryable(error: unknown): boolean {
  return !(
    error instanceof CommandRejectedError ||
    error instanceof InvalidAppendError ||
    error instanceof SchemaError
  );
}
