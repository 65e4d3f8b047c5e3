import { Counter, type Registry } from '@rpa/shared';

/**
 * How a batch item ended: opened with its steps (accepted), answered again for a repeated key (duplicate), refused
 * by validation (invalid) or by the decider (rejected), failed to open (failed), or opened without its steps
 * (steps_failed).
 */
export type BatchItemOutcome = 'accepted' | 'duplicate' | 'invalid' | 'rejected' | 'failed' | 'steps_failed';

/** Batch items by outcome; the commands they issue are counted with every other command. */
export class BatchMetrics {
  private readonly items: Counter<'outcome'>;

  constructor(registry: Registry) {
    // Several apps may share one registry (tests, or two APIs in one process): reuse what is registered.
    this.items =
      (registry.getSingleMetric('rpa_batch_items_total') as Counter<'outcome'> | undefined) ??
      new Counter({
        name: 'rpa_batch_items_total',
        help: 'Items of session batches, by outcome',
        labelNames: ['outcome'],
        registers: [registry],
      });
  }

  /** Counts one item. */
  item(outcome: BatchItemOutcome): void {
    this.items.inc({ outcome });
  }
}
