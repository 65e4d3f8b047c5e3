import { Counter, Gauge, Histogram, type Registry, type StepAction } from '@rpa/shared';
import type { Breaker, BreakerState } from './breakers.js';

export type StepOutcome = 'succeeded' | 'failed' | 'skipped';
/** How a take-over ended: rebuilt, parked for an operator, or broken off by an error (handed back). */
export type RecoveryResultLabel = 'recovered' | 'parked' | 'failed';

const BREAKER_STATES: readonly BreakerState[] = ['closed', 'half_open', 'open'];
const BREAKER_STATE_VALUE: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 };

/** The robot's Prometheus metrics. */
export class RobotMetrics {
  readonly steps: Counter<'action' | 'outcome'>;
  readonly stepDuration: Histogram<'action'>;
  readonly sessionsHeld: Gauge;
  readonly breakerState: Gauge<'breaker'>;
  readonly breakerStates: Gauge<'breaker' | 'state'>;
  readonly recoveries: Counter<'result'>;
  readonly recoveryDuration: Histogram<'result'>;
  readonly restorePoints: Counter<'trigger'>;

  constructor(registry: Registry) {
    this.steps = new Counter({
      name: 'rpa_robot_steps_total',
      help: 'Step messages handled, by action and outcome (skipped: the result was already in the stream)',
      labelNames: ['action', 'outcome'],
      registers: [registry],
    });
    this.stepDuration = new Histogram({
      name: 'rpa_robot_step_duration_seconds',
      help: 'Time spent running a step in the browser',
      labelNames: ['action'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: [registry],
    });
    this.sessionsHeld = new Gauge({
      name: 'rpa_robot_sessions_held',
      help: 'Sessions this robot currently owns',
      registers: [registry],
    });
    this.breakerState = new Gauge({
      name: 'rpa_robot_breaker_state',
      help: 'Circuit breaker state: 0 closed, 1 half-open, 2 open',
      labelNames: ['breaker'],
      registers: [registry],
    });
    this.breakerStates = new Gauge({
      name: 'rpa_robot_breaker_in_state',
      help: 'Circuit breaker state, one series per state: 1 for the state the breaker is in, 0 for the others',
      labelNames: ['breaker', 'state'],
      registers: [registry],
    });
    this.recoveries = new Counter({
      name: 'rpa_robot_recoveries_total',
      help: 'Sessions taken over with a past to rebuild, by result (recovered, parked for an operator, failed)',
      labelNames: ['result'],
      registers: [registry],
    });
    this.recoveryDuration = new Histogram({
      name: 'rpa_robot_recovery_duration_seconds',
      help: 'Time from taking a session over to its page being rebuilt (or the recovery stopping), by result',
      labelNames: ['result'],
      buckets: [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers: [registry],
    });
    this.restorePoints = new Counter({
      name: 'rpa_robot_restore_points_total',
      help: 'Restore points taken and recorded, by trigger (document: a new page loaded; step: a checkpoint step)',
      labelNames: ['trigger'],
      registers: [registry],
    });
  }

  recoveryFinished(result: RecoveryResultLabel, seconds: number): void {
    this.recoveries.inc({ result });
    this.recoveryDuration.observe({ result }, seconds);
  }

  restorePointTaken(trigger: 'document' | 'step'): void {
    this.restorePoints.inc({ trigger });
  }

  stepHandled(action: StepAction, outcome: StepOutcome, seconds?: number): void {
    this.steps.inc({ action, outcome });
    if (seconds !== undefined) this.stepDuration.observe({ action }, seconds);
  }

  breakerChanged(breaker: Breaker): void {
    this.breakerState.set({ breaker: breaker.name }, BREAKER_STATE_VALUE[breaker.state]);
    for (const state of BREAKER_STATES)
      this.breakerStates.set({ breaker: breaker.name, state }, state === breaker.state ? 1 : 0);
  }

  breakerForgotten(breaker: Breaker): void {
    this.breakerState.remove({ breaker: breaker.name });
    for (const state of BREAKER_STATES) this.breakerStates.remove({ breaker: breaker.name, state });
  }
}
