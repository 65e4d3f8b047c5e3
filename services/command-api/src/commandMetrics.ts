import { Counter, Histogram, type Registry } from '@rpa/shared';
import type { SessionCommandType } from '@rpa/shared';

/** How a command ended: events appended, a duplicate (nothing new), refused by the decider or the edge, or failed. */
export type CommandOutcome = 'accepted' | 'duplicate' | 'rejected' | 'invalid' | 'failed';

/** Commands by type and outcome, and how long handling them took. */
export class CommandMetrics {
  private readonly total: Counter<'type' | 'outcome'>;
  private readonly duration: Histogram<'type' | 'outcome'>;

  constructor(registry: Registry) {
    // Several apps may share one registry (tests, or two APIs in one process): reuse what is registered.
    this.total =
      (registry.getSingleMetric('rpa_commands_total') as Counter<'type' | 'outcome'> | undefined) ??
      new Counter({
        name: 'rpa_commands_total',
        help: 'Session commands received, by type and outcome',
        labelNames: ['type', 'outcome'],
        registers: [registry],
      });
    this.duration =
      (registry.getSingleMetric('rpa_command_duration_seconds') as
        Histogram<'type' | 'outcome'> | undefined) ??
      new Histogram({
        name: 'rpa_command_duration_seconds',
        help: 'Time to load, decide and append a session command, conflict retries included',
        labelNames: ['type', 'outcome'],
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
        registers: [registry],
      });
  }

  /** Counts a command that reached the handler and records its latency. */
  observe(type: SessionCommandType, outcome: CommandOutcome, seconds: number): void {
    this.total.inc({ type, outcome });
    this.duration.observe({ type, outcome }, seconds);
  }

  /** Counts a command refused before it reached the handler (malformed, too large, unauthenticated). */
  refused(type: SessionCommandType): void {
    this.total.inc({ type, outcome: 'invalid' });
  }
}
