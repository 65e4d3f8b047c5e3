import type { Page } from 'playwright-core';
import {
  NavigateStep,
  READ_ONLY_ACTIONS,
  setsCredentials,
  type AttentionCode,
  type Logger,
  type RestorePoint,
  type SessionState,
  type StepSpec,
  type StepState,
} from '@rpa/shared';
import { RestorePointCorruptError, type RestorePointStore, type StorageState } from './restorePoints.js';
import type { RobotMetrics } from './metrics.js';
import type { Ownership, Reporter } from './reporter.js';
import type { StepRunOutcome } from './stepExecutor.js';

/** A session that exists: the state recovery plans from. */
export type ExistingSession = Exclude<SessionState, { status: 'none' }>;

/** A succeeded step that changed the page after the restore point: it runs again on the restored page. */
export interface TailStep {
  stepId: string;
  seq: number;
  step: StepSpec;
}

/** A navigate step, as submitted. */
export type NavigateSpec = Extract<StepSpec, { action: 'navigate' }>;

/**
 * A succeeded navigate step up to the restore point that set request headers or cookies from secrets for its
 * origin. A restore point holds neither (the headers live in the context's routing, and the cookies from secrets are
 * left out of it on purpose), so the restored context gets them again before anything loads.
 */
export interface OriginCredentials {
  stepId: string;
  seq: number;
  step: NavigateSpec;
}

/** What taking a session over takes. */
export type RecoveryPlan =
  | { kind: 'attention'; code: AttentionCode; reason: string; stepIds: string[] }
  | {
      kind: 'replay';
      /** The restore point to start from; null: a blank page, and the tail starts at step 1. */
      from: RestorePoint | null;
      /** Set again, in this order, on the new context before the restore point's page is reopened. */
      credentials: OriginCredentials[];
      tail: TailStep[];
      /** Steps of the tail that an operator allowed to skip. */
      skippedSteps: number;
      /** Steps cut off by a crash that must not run twice and that an operator allowed to skip: they end as failed. */
      interrupted: StepState[];
    };

/** Longest attention reason an event takes. */
const MAX_REASON = 2_000;

/**
 * True when the session has a past in some browser: a step started or finished there. Its new owner's page is blank,
 * so that past must be rebuilt before anything else runs.
 */
export function isTakeOver(state: ExistingSession): boolean {
  return Object.values(state.steps).some((step) => step.status !== 'queued');
}

/**
 * Plans a take-over from the stream alone (pure). The tail is what the restore point does not contain: the
 * succeeded steps after it that change the page, minus those an operator said to skip. A tail step that must never
 * run twice, or a step of that kind cut off mid-run, stops the recovery for an operator instead.
 * `restorePointMissing`: the newest restore point is gone (expired), so the plan starts from a blank page if that is
 * safe, and asks for an operator otherwise.
 */
export function planRecovery(
  state: ExistingSession,
  specs: ReadonlyMap<string, StepSpec>,
  options: { restorePointMissing?: boolean } = {},
): RecoveryPlan {
  const skips = new Set(state.replaySkips);
  const from = options.restorePointMissing ? null : state.checkpoint;
  const steps = inSeqOrder(state);
  const changedPage = changedPageAfter(steps, from);
  const unsafe = changedPage.filter((s) => s.replay === 'never' && !skips.has(s.stepId));
  if (unsafe.length > 0) {
    const stepIds = unsafe.map((s) => s.stepId);
    if (options.restorePointMissing && state.checkpoint) {
      return attention(
        'REPLAY_FAILED',
        `restore point ${state.checkpoint.stateKey} is gone and rebuilding the page from step 1 would run again ` +
          `steps that must not run twice: ${stepIds.join(', ')}`,
        stepIds,
      );
    }
    return attention(
      'UNSAFE_REPLAY',
      `rebuilding the page would run again steps that must not run twice: ${stepIds.join(', ')}`,
      stepIds,
    );
  }

  const cutOff = steps.filter((s) => s.status === 'running' && s.replay === 'never');
  const uncertain = cutOff.filter((s) => !skips.has(s.stepId));
  if (uncertain.length > 0) {
    const stepIds = uncertain.map((s) => s.stepId);
    return attention(
      'UNCERTAIN_STEP',
      `the previous owner stopped in the middle of steps that must not run twice; whether they took effect is ` +
        `unknown: ${stepIds.join(', ')}`,
      stepIds,
    );
  }

  const tail: TailStep[] = [];
  let skippedSteps = 0;
  for (const s of changedPage) {
    if (skips.has(s.stepId)) {
      skippedSteps += 1;
      continue;
    }
    const step = specs.get(s.stepId);
    if (!step) {
      return attention(
        'REPLAY_FAILED',
        `step ${s.stepId} has no submission in the stream; it cannot be replayed`,
        [s.stepId],
      );
    }
    tail.push({ stepId: s.stepId, seq: s.seq, step });
  }

  const credentials: OriginCredentials[] = [];
  for (const s of credentialsUpTo(steps, from)) {
    const step = specs.get(s.stepId);
    if (!step) {
      return attention(
        'REPLAY_FAILED',
        `step ${s.stepId} has no submission in the stream; the headers and cookies it set cannot be set again`,
        [s.stepId],
      );
    }
    if (step.action === 'navigate' && setsCredentials(step))
      credentials.push({ stepId: s.stepId, seq: s.seq, step });
  }
  return {
    kind: 'replay',
    from,
    credentials,
    tail,
    skippedSteps,
    interrupted: cutOff.filter((s) => skips.has(s.stepId)),
  };
}

/**
 * The steps whose specs a plan made with the same options needs, so that only their submissions are read: the tail
 * before the checks for unsafe steps, and the steps the restore point holds that set headers or cookies it does not
 * keep.
 */
export function stepsToRead(
  state: ExistingSession,
  options: { restorePointMissing?: boolean } = {},
): StepState[] {
  const skips = new Set(state.replaySkips);
  const from = options.restorePointMissing ? null : state.checkpoint;
  const steps = inSeqOrder(state);
  return [
    ...credentialsUpTo(steps, from),
    ...changedPageAfter(steps, from).filter((s) => !skips.has(s.stepId)),
  ];
}

/** Succeeded steps up to and including the restore point's that set headers or cookies; none without one. */
function credentialsUpTo(steps: StepState[], from: RestorePoint | null): StepState[] {
  if (!from) return [];
  return steps.filter((s) => s.seq <= from.afterStepSeq && s.status === 'succeeded' && s.setsCredentials);
}

/** Succeeded steps after the restore point (all, without one) that changed the page. */
function changedPageAfter(steps: StepState[], from: RestorePoint | null): StepState[] {
  const afterSeq = from?.afterStepSeq ?? 0;
  return steps.filter(
    (s) => s.seq > afterSeq && s.status === 'succeeded' && !READ_ONLY_ACTIONS.has(s.action),
  );
}

function inSeqOrder(state: ExistingSession): StepState[] {
  return Object.values(state.steps).sort((a, b) => a.seq - b.seq);
}

function attention(code: AttentionCode, reason: string, stepIds: string[]): RecoveryPlan {
  return { kind: 'attention', code, reason: truncate(reason), stepIds };
}

export interface RecoveryDeps {
  reporter: Reporter;
  restorePoints: RestorePointStore;
  metrics: RobotMetrics;
  logger: Logger;
  /** Milliseconds, for the recovery's duration. */
  clock: () => number;
  /** Aborts the reports (the robot is stopping hard). */
  signal: AbortSignal;
  /** Opens the session's browser context with its browser options (and the storage state, when given) and a page. */
  openPage(storageState: StorageState | null): Promise<Page>;
  /** Runs one step as normal work runs it: the same step code behind the same breakers. Never rejects for a step failure. */
  runStep(stepId: string, step: StepSpec, page: Page): Promise<StepRunOutcome>;
  /**
   * Sets on the page's context the headers and cookies a navigate step set for its origin, with its secrets read
   * now, without loading anything. Never rejects for a step failure (a secret that is gone): it comes back failed.
   */
  setCredentials(stepId: string, step: NavigateSpec, page: Page): Promise<StepRunOutcome>;
  /**
   * Throws when the robot is stopping or the browser is gone: a step failure then says nothing about the session,
   * and the session is handed back instead of being flagged.
   */
  assertCanContinue(): void;
}

/** How a take-over ended: the page is ready for new work, or the session waits for an operator. */
export type RecoveryResult = { kind: 'ready'; page: Page } | { kind: 'parked'; code: AttentionCode };

/**
 * Rebuilds the browser of a session this robot has just claimed, then reports it: restores the newest restore point
 * (or starts blank), replays the tail, ends steps cut off by the crash that the operator allowed to skip, and appends
 * SessionRecovered. A session nothing ever ran in just gets a blank page. Throws SessionLostError when another robot
 * has claimed the session since, RobotStoppingError when the robot stops meanwhile.
 */
export async function recoverSession(
  deps: RecoveryDeps,
  owner: Ownership,
  state: ExistingSession,
): Promise<RecoveryResult> {
  if (!isTakeOver(state)) return { kind: 'ready', page: await deps.openPage(null) };
  const { reporter, restorePoints, metrics, clock, signal } = deps;
  const log = deps.logger.child({ recovery: true });
  const started = clock();
  const finish = (result: 'recovered' | 'parked' | 'failed') =>
    metrics.recoveryFinished(result, Math.max(0, clock() - started) / 1_000);

  const park = async (plan: Extract<RecoveryPlan, { kind: 'attention' }>): Promise<RecoveryResult> => {
    await reporter.flagAttention(owner, plan, signal);
    log.warn({ code: plan.code, stepIds: plan.stepIds }, 'session needs an operator: parked');
    finish('parked');
    return { kind: 'parked', code: plan.code };
  };

  try {
    // Only the submissions of the tail and of the steps whose headers and cookies must be set again are read.
    const specs = await reporter.stepSpecs(owner.sessionId, stepsToRead(state), signal);
    let plan = planRecovery(state, specs);
    let storage: StorageState | null = null;
    if (plan.kind === 'replay' && plan.from) {
      storage = await readRestorePoint(restorePoints, plan.from.stateKey, log);
      if (!storage) {
        const blank = { restorePointMissing: true };
        const all = await reporter.stepSpecs(owner.sessionId, stepsToRead(state, blank), signal);
        plan = planRecovery(state, all, blank);
      }
    }
    if (plan.kind === 'attention') return await park(plan);

    const { from, credentials, tail, skippedSteps, interrupted } = plan;
    log.info(
      {
        fromStepSeq: from?.afterStepSeq ?? null,
        credentials: credentials.length,
        tail: tail.length,
        skippedSteps,
      },
      'recovering the session',
    );
    const page = await deps.openPage(storage);
    for (const { stepId, step } of credentials) {
      deps.assertCanContinue();
      const outcome = await deps.setCredentials(stepId, step, page);
      if (outcome.status === 'failed') {
        deps.assertCanContinue();
        return await park({
          kind: 'attention',
          code: 'REPLAY_FAILED',
          reason: truncate(
            `setting again the headers and cookies of step ${stepId} failed: ${outcome.error.code}: ` +
              outcome.error.message,
          ),
          stepIds: [stepId],
        });
      }
    }
    if (from) {
      const restore = NavigateStep.safeParse({ action: 'navigate', url: from.url });
      const outcome = restore.success
        ? await deps.runStep(`restore-${from.afterStepSeq}`, restore.data, page)
        : null;
      if (outcome?.status !== 'succeeded') {
        deps.assertCanContinue();
        const why = outcome?.status === 'failed' ? outcome.error.message : 'not an http(s) URL';
        return await park({
          kind: 'attention',
          code: 'REPLAY_FAILED',
          reason: truncate(`reopening the restore point's page failed: ${why}`),
          stepIds: [],
        });
      }
    }
    for (const { stepId, step } of tail) {
      deps.assertCanContinue();
      const outcome = await deps.runStep(stepId, step, page);
      if (outcome.status === 'failed') {
        deps.assertCanContinue();
        return await park({
          kind: 'attention',
          code: 'REPLAY_FAILED',
          reason: truncate(
            `replaying step ${stepId} failed: ${outcome.error.code}: ${outcome.error.message}`,
          ),
          stepIds: [stepId],
        });
      }
    }
    for (const step of interrupted) {
      await reporter.completeStep(
        owner,
        {
          stepId: step.stepId,
          attempt: Math.max(1, step.attempts),
          durationMs: 0,
          outcome: {
            status: 'failed',
            error: {
              code: 'INTERRUPTED',
              message: 'cut off by a robot crash; not run again because it must not run twice',
            },
          },
        },
        signal,
      );
    }
    const durationMs = Math.max(0, clock() - started);
    await reporter.recordRecovery(
      owner,
      {
        fromCheckpoint: from ? { afterStepSeq: from.afterStepSeq, stateKey: from.stateKey } : null,
        replayedSteps: tail.length,
        skippedSteps,
        durationMs,
      },
      signal,
    );
    log.info({ replayedSteps: tail.length, skippedSteps, durationMs }, 'session recovered');
    finish('recovered');
    return { kind: 'ready', page };
  } catch (error) {
    finish('failed');
    throw error;
  }
}

/** The restore point's storage state; null when it is gone or unusable (recovery then starts from step 1). */
async function readRestorePoint(
  store: RestorePointStore,
  key: string,
  log: Logger,
): Promise<StorageState | null> {
  try {
    const state = await store.get(key);
    if (!state) log.warn({ stateKey: key }, 'restore point is gone (expired?)');
    return state;
  } catch (error) {
    if (!(error instanceof RestorePointCorruptError)) throw error;
    log.warn({ err: error, stateKey: key }, 'restore point is unusable');
    return null;
  }
}

function truncate(reason: string): string {
  return reason.length > MAX_REASON ? `${reason.slice(0, MAX_REASON - 1)}…` : reason;
}
