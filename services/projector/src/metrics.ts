import { Counter, Gauge, type Registry } from '@rpa/shared';
import type { DispatchKind } from './dispatcher.js';
import type { ReconciledKind } from './reconciler.js';
import type { SessionReadModelHooks } from './projections/sessionReadModel.js';
import type { CheckpointedSubscription, SubscriptionHooks } from './subscription.js';

/** The projector's Prometheus metrics, registered on the service's registry. */
export class ProjectorMetrics {
  private readonly subscriptions: CheckpointedSubscription[] = [];
  private readonly handled: Counter<'subscription' | 'type'>;
  private readonly failures: Counter<'subscription' | 'stage'>;
  private readonly poisoned: Counter<'subscription'>;
  private readonly publishes: Counter<'kind' | 'duplicate'>;
  private readonly readModelWrites: Counter<'outcome'>;
  private readonly reconciled: Counter<'kind'>;
  private readonly maxDeliveries: Counter<'outcome'>;

  constructor(registry: Registry) {
    const subscriptions = this.subscriptions;
    this.handled = new Counter({
      name: 'projector_events_projected_total',
      help: 'Events handled by each subscription, by event type.',
      labelNames: ['subscription', 'type'],
      registers: [registry],
    });
    this.failures = new Counter({
      name: 'projector_handler_failures_total',
      help: 'Failed attempts (retried with backoff) by subscription and stage: handle, flush or subscribe.',
      labelNames: ['subscription', 'stage'],
      registers: [registry],
    });
    this.poisoned = new Counter({
      name: 'projector_events_undecodable_total',
      help: 'Events that failed their schema and were skipped.',
      labelNames: ['subscription'],
      registers: [registry],
    });
    this.publishes = new Counter({
      name: 'projector_dispatch_publishes_total',
      help: 'Work messages acknowledged by JetStream; duplicate="true" when the message id was already stored.',
      labelNames: ['kind', 'duplicate'],
      registers: [registry],
    });
    this.readModelWrites = new Counter({
      name: 'projector_read_model_writes_total',
      help: 'Session document writes: written, conflict (re-read and re-applied), rejected_key, rejected_size.',
      labelNames: ['outcome'],
      registers: [registry],
    });
    this.reconciled = new Counter({
      name: 'projector_reconciled_messages_total',
      help: 'Work messages sent again by the reconciler because runnable work had no message, by kind.',
      labelNames: ['kind'],
      registers: [registry],
    });
    this.maxDeliveries = new Counter({
      name: 'projector_max_deliveries_advisories_total',
      help: 'Max-deliveries advisories handled: dead_lettered, already_final, ignored or failed.',
      labelNames: ['outcome'],
      registers: [registry],
    });
    new Gauge({
      name: 'projector_position',
      help: 'Global position of the last event each subscription handled.',
      labelNames: ['subscription'],
      registers: [registry],
      collect() {
        for (const s of subscriptions) this.set({ subscription: s.name }, s.position);
      },
    });
    new Gauge({
      name: 'projector_checkpoint_position',
      help: 'Global position each subscription last saved as its checkpoint.',
      labelNames: ['subscription'],
      registers: [registry],
      collect() {
        for (const s of subscriptions) this.set({ subscription: s.name }, s.checkpoint);
      },
    });
    new Gauge({
      name: 'projector_checkpoint_lag',
      help: 'Positions handled but not yet checkpointed (what a restart would deliver again).',
      labelNames: ['subscription'],
      registers: [registry],
      collect() {
        for (const s of subscriptions) this.set({ subscription: s.name }, s.position - s.checkpoint);
      },
    });
    new Gauge({
      name: 'projector_subscription_failing',
      help: '1 while a subscription is retrying a failure, else 0.',
      labelNames: ['subscription'],
      registers: [registry],
      collect() {
        for (const s of subscriptions) this.set({ subscription: s.name }, s.failing ? 1 : 0);
      },
    });
  }

  /** Reports a running subscription's position gauges. */
  track(subscription: CheckpointedSubscription): void {
    this.subscriptions.push(subscription);
  }

  /** Forgets a stopped subscription. */
  untrack(subscription: CheckpointedSubscription): void {
    const i = this.subscriptions.indexOf(subscription);
    if (i >= 0) this.subscriptions.splice(i, 1);
  }

  subscriptionHooks(name: string): SubscriptionHooks {
    return {
      handled: (type) => this.handled.inc({ subscription: name, type }),
      failed: (stage) => this.failures.inc({ subscription: name, stage }),
      poisoned: () => this.poisoned.inc({ subscription: name }),
    };
  }

  readModelHooks(): SessionReadModelHooks {
    return {
      written: () => this.readModelWrites.inc({ outcome: 'written' }),
      conflicted: () => this.readModelWrites.inc({ outcome: 'conflict' }),
      rejected: (reason) => this.readModelWrites.inc({ outcome: `rejected_${reason}` }),
    };
  }

  recordReconciled(kind: ReconciledKind): void {
    this.reconciled.inc({ kind });
  }

  recordMaxDeliveries(outcome: string): void {
    this.maxDeliveries.inc({ outcome });
  }

  recordPublish(kind: DispatchKind, duplicate: boolean): void {
    this.publishes.inc({ kind, duplicate: String(duplicate) });
  }
}
